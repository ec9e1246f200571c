"""The Lovász step-through (``analysis.lovasz_steps``, ``analysis.small_pair``) and its
figures, checked against the Lovász extension written from the paper's definition
(Berman, Rannen Triki & Blaschko, CVPR 2018) and against the library's own losses."""

import numpy as np
import pytest
import tensorflow as tf

from explorer import analysis, charts, gradients, losses

# ------------------------------------------------------------------ numpy oracle


def jaccard_loss_of_mistakes(fg, wrong):
    """Delta_J(S) from the paper: the Jaccard loss of the mask that gets exactly the pixels
    in ``wrong`` wrong, by set operations on the flipped mask."""
    pred = fg ^ wrong
    union = np.sum(fg | pred)
    return 0.0 if union == 0 else 1 - np.sum(fg & pred) / union


def lovasz_by_definition(errors, fg):
    """Sort (Python's stable sort), Delta_J of each prefix, its differences, and the loss in
    two forms: sum relu(e_k) w_k, and the Choquet integral sum_k (m_k - m_{k+1}) Delta(S_k)."""
    errors, fg = np.ravel(errors), np.ravel(fg).astype(bool)
    n = len(errors)
    order = sorted(range(n), key=lambda i: -errors[i])
    wrong = np.zeros(n, bool)
    running = []
    for i in order:
        wrong[i] = True
        running.append(jaccard_loss_of_mistakes(fg, wrong))
    running = np.array(running)
    weights = running - np.concatenate([[0.0], running[:-1]])
    m = np.maximum(errors[order], 0)
    loss = float(np.sum(m * weights))
    choquet = float(np.sum((m - np.concatenate([m[1:], [0.0]])) * running))
    return np.array(order), running, weights, loss, choquet


def hinge_errors(truth, pred):
    p = np.clip(pred, 1e-7, 1 - 1e-7)
    z = np.log(p / (1 - p))
    return 1 - z * np.where(truth > 0.5, 1.0, -1.0)


def sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


def batch(a):
    """[H, W] or [H, W, C] -> [1, H, W, C] float64."""
    a = np.asarray(a, np.float64)
    return (a[..., None] if a.ndim == 2 else a)[None]


def random_pair(rng, size, classes=1, fg_fraction=0.4):
    """Hard truth and continuous predictions ([1, H, W, C]; softmax when classes > 1)."""
    if classes == 1:
        truth = (rng.uniform(size=(size, size)) < fg_fraction).astype(np.float64)
        return batch(truth), batch(rng.uniform(0.02, 0.98, (size, size)))
    labels = rng.integers(0, classes, (size, size))
    logits = rng.normal(0, 1.5, (size, size, classes))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return batch(np.eye(classes)[labels]), batch(probs)


# A 3 x 3 truth with foreground at pixels 1, 3, 4 (row-major), G = 3.
TRUTH_3x3 = np.array([[0, 1, 0], [1, 1, 0], [0, 0, 0]], np.float64)


# ------------------------------------------------------------ worked 3 x 3 examples


def test_softmax_3x3_by_hand():
    # errors |g - p| = [.1, .3, .2, .6, .15, 0, .35, .05, .5]: sorted, the pixels are
    # 3(fg) 8 6 1(fg) 2 4(fg) 0 7 5, so with G = 3 the running Jaccard loss is
    # 1 - 2/3, 1 - 2/4, 1 - 2/5, 1 - 1/5, 1 - 1/6, 1 - 0/6, then 1, 1, 1.
    pred = np.array([[0.1, 0.7, 0.2], [0.4, 0.85, 0.0], [0.35, 0.05, 0.5]])
    s = analysis.lovasz_steps(batch(TRUTH_3x3), batch(pred), kind="softmax")
    np.testing.assert_array_equal(s["order"], [3, 8, 6, 1, 2, 4, 0, 7, 5])
    np.testing.assert_array_equal(s["rows"], [1, 2, 2, 0, 0, 1, 0, 2, 1])
    np.testing.assert_array_equal(s["cols"], [0, 2, 0, 1, 2, 1, 0, 1, 2])
    np.testing.assert_array_equal(s["truth"], [1, 0, 0, 1, 0, 1, 0, 0, 0])
    np.testing.assert_allclose(s["running_jaccard"],
                               [1 / 3, 1 / 2, 3 / 5, 4 / 5, 5 / 6, 1, 1, 1, 1], rtol=1e-15)
    np.testing.assert_allclose(s["weights"], [1 / 3, 1 / 6, 1 / 10, 1 / 5, 1 / 30, 1 / 6, 0, 0, 0],
                               rtol=1e-13, atol=1e-15)
    # .6/3 + .5/6 + .35/10 + .3/5 + .2/30 + .15/6
    assert s["loss"] == pytest.approx(0.41, abs=1e-15)
    np.testing.assert_allclose(s["cumulative_loss"][[0, 3, 5, 8]],
                               [0.2, 0.3783333333333333, 0.41, 0.41], rtol=1e-14)
    assert s["library_loss"] == pytest.approx(0.41, abs=1e-15)
    # d|g - p|/dp = sign(p - g): fg pixels pushed up (negative gradient), bg down
    expected = np.zeros(9)
    expected[[3, 8, 6, 1, 2, 4, 0, 7]] = [-1 / 3, 1 / 6, 1 / 10, -1 / 5, 1 / 30, -1 / 6, 0, 0]
    np.testing.assert_allclose(s["gradient"], expected.reshape(3, 3), atol=1e-15)


def test_hinge_3x3_by_hand():
    # logits z; hinge errors 1 - z(2g - 1) = [-1, .5, -.25, -.5, -2, .75, 1, -1.5, 2]:
    # sorted, pixels 8 6 5 1(fg) 2 3(fg) 0 7 4(fg); with G = 3 the running Jaccard loss is
    # 1/4, 2/5, 1/2, 2/3, 5/7, 6/7, 7/8, 8/9, 1.
    z = np.array([[-2, 0.5, -1.25], [1.5, 3, -0.25], [0, -2.5, 1]])
    s = analysis.lovasz_steps(batch(TRUTH_3x3), batch(sigmoid(z)), kind="hinge")
    np.testing.assert_array_equal(s["order"], [8, 6, 5, 1, 2, 3, 0, 7, 4])
    np.testing.assert_allclose(s["errors"], [2, 1, 0.75, 0.5, -0.25, -0.5, -1, -1.5, -2],
                               atol=1e-12)
    np.testing.assert_allclose(s["running_jaccard"],
                               [1 / 4, 2 / 5, 1 / 2, 2 / 3, 5 / 7, 6 / 7, 7 / 8, 8 / 9, 1],
                               rtol=1e-15)
    np.testing.assert_allclose(
        s["weights"], [1 / 4, 3 / 20, 1 / 10, 1 / 6, 1 / 21, 1 / 7, 1 / 56, 1 / 72, 1 / 9],
        rtol=1e-13)
    # 2/4 + 1·3/20 + .75/10 + .5/6; negative errors add nothing
    assert s["loss"] == pytest.approx(97 / 120, abs=1e-12)
    np.testing.assert_allclose(s["contribution"][4:], 0)
    assert s["library_loss"] == pytest.approx(97 / 120, abs=1e-12)
    # de/dz = -(2g - 1): background pixels pushed down (+), the foreground pixel up (-)
    expected = np.zeros(9)
    expected[[8, 6, 5, 1]] = [1 / 4, 3 / 20, 1 / 10, -1 / 6]
    np.testing.assert_allclose(s["gradient"], expected.reshape(3, 3), atol=1e-12)


# ------------------------------------------------------------ against the definition


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["hinge", "softmax"])
def test_random_masks_match_the_definition(kind, seed):
    rng = np.random.default_rng(seed)
    classes = 1 if kind == "hinge" else 3
    truth, pred = random_pair(rng, 6, classes)
    channel = seed % classes
    s = analysis.lovasz_steps(truth, pred, kind=kind, channel=channel)
    g, p = truth[0, ..., channel], pred[0, ..., channel]
    errors = hinge_errors(g, p) if kind == "hinge" else np.abs(g - p)
    order, running, weights, loss, choquet = lovasz_by_definition(errors, g)
    np.testing.assert_array_equal(s["order"], order)
    np.testing.assert_allclose(s["errors"], errors.ravel()[order], rtol=1e-12)
    np.testing.assert_allclose(s["running_jaccard"], running, rtol=1e-13)
    np.testing.assert_allclose(s["weights"], weights, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(s["contribution"], np.maximum(s["errors"], 0) * weights,
                               rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(s["cumulative_loss"], np.cumsum(s["contribution"]), rtol=1e-13)
    assert s["loss"] == pytest.approx(loss, rel=1e-12)
    assert s["loss"] == pytest.approx(choquet, rel=1e-12)
    assert s["loss"] == pytest.approx(s["library_loss"], rel=1e-12)
    np.testing.assert_array_equal(s["rows"] * 6 + s["cols"], s["order"])
    np.testing.assert_array_equal(s["prob"], p.ravel()[order])


@pytest.mark.parametrize("truth_kind", ["random", "empty", "full", "soft"])
def test_weights_sum_to_one_the_loss_of_getting_every_pixel_wrong(truth_kind):
    # All pixels taken = all wrong: intersection 0, so Delta_J = 1 whatever the truth.
    rng = np.random.default_rng(3)
    g = {"random": (rng.uniform(size=(5, 7)) < 0.3) * 1.0, "empty": np.zeros((5, 7)),
         "full": np.ones((5, 7)), "soft": rng.uniform(size=(5, 7))}[truth_kind]
    s = analysis.lovasz_steps(batch(g), batch(rng.uniform(0.05, 0.95, (5, 7))), kind="softmax")
    assert s["weights"].sum() == pytest.approx(1.0, abs=1e-14)
    assert s["running_jaccard"][-1] == pytest.approx(1.0, abs=1e-14)
    assert np.all(s["weights"] >= -1e-15)  # Jaccard loss grows as mistakes are added
    if truth_kind == "empty":  # any mistake is total: the largest error is the loss
        np.testing.assert_allclose(s["weights"], np.eye(35)[0], atol=1e-15)
        assert s["loss"] == pytest.approx(s["errors"].max(), abs=1e-15)


# ------------------------------------------------------------ the library's numbers


def test_hinge_loss_is_lovasz_hinge_and_the_batch_mean_is_per_image():
    rng = np.random.default_rng(4)
    pairs = [random_pair(rng, 8, 1, fg) for fg in (0.2, 0.5, 0.0)]  # an empty truth too
    truth = np.concatenate([t for t, _ in pairs])
    pred = np.concatenate([p for _, p in pairs])
    z = gradients.probabilities_to_logits(pred)
    per_image = []
    for b in range(3):
        s = analysis.lovasz_steps(truth, pred, kind="hinge", image=b)
        library = float(losses.lovasz_hinge(truth[b:b + 1], z[b:b + 1]))
        assert s["loss"] == pytest.approx(library, rel=1e-12)
        per_image.append(s["loss"])
    assert np.mean(per_image) == pytest.approx(
        float(losses.lovasz_hinge(truth, z, per_image=True)), rel=1e-12)


def test_softmax_loss_is_the_class_term_of_lovasz_softmax():
    rng = np.random.default_rng(5)
    truth, pred = random_pair(rng, 7, 4)
    truth[..., 2] = 0  # class 2 absent from the truth: counted by "all", not by "present"
    truth[..., 0] = 1 - truth[..., 1:].sum(-1)
    terms = [analysis.lovasz_steps(truth, pred, kind="softmax", channel=c)["loss"]
             for c in range(4)]
    for c in range(4):
        one = float(losses.lovasz_softmax(truth[..., c:c + 1], pred[..., c:c + 1],
                                          classes="all"))
        assert terms[c] == pytest.approx(one, rel=1e-12)
    assert np.mean(terms) == pytest.approx(
        float(losses.lovasz_softmax(truth, pred, classes="all")), rel=1e-12)
    assert np.mean([terms[c] for c in (0, 1, 3)]) == pytest.approx(
        float(losses.lovasz_softmax(truth, pred, classes="present")), rel=1e-12)


# ------------------------------------------------------------------- gradients


def hand_gradient(s, sign):
    """d loss / d x per pixel: weight x relu'(e) x de/dx, put back in place."""
    flat = np.zeros(len(s["order"]))
    flat[s["order"]] = s["weights"] * (s["errors"] > 0) * sign.ravel()[s["order"]]
    return flat.reshape(s["shape"])


@pytest.mark.parametrize("kind", ["hinge", "softmax"])
def test_gradient_is_the_weights_put_back_and_matches_finite_differences(kind):
    rng = np.random.default_rng(6)
    truth, pred = random_pair(rng, 5, 1 if kind == "hinge" else 3)
    channel = 0 if kind == "hinge" else 1
    s = analysis.lovasz_steps(truth, pred, kind=kind, channel=channel)
    g, p = truth[0, ..., channel], pred[0, ..., channel]
    sign = -(2 * g - 1) if kind == "hinge" else np.sign(p - g)  # de/dz or de/dp
    np.testing.assert_allclose(s["gradient"], hand_gradient(s, sign), atol=1e-12)

    # central differences of the definition, in z (hinge) or p_c (softmax)
    x = np.log(p / (1 - p)) if kind == "hinge" else p.copy()

    def loss_at(x):
        errors = 1 - x * (2 * g - 1) if kind == "hinge" else np.abs(g - x)
        return lovasz_by_definition(errors, g)[3]

    h, numeric = 1e-6, np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (loss_at(up) - loss_at(down)) / (2 * h)
    np.testing.assert_allclose(s["gradient"], numeric, atol=1e-7)


def test_softmax_gradient_is_the_full_loss_gradient_times_the_class_count():
    rng = np.random.default_rng(7)
    truth, pred = random_pair(rng, 6, 3)
    _, full = gradients.loss_and_gradient("lovasz_softmax", truth, pred, classes="all")
    for c in range(3):
        s = analysis.lovasz_steps(truth, pred, kind="softmax", channel=c)
        np.testing.assert_allclose(s["gradient"], 3 * full[0, ..., c], atol=1e-14)


def test_ties_keep_pixel_order_like_the_library_and_decide_the_gradient():
    # fg pixels at p = .75 and bg pixels at p = .25 all have error exactly .25: ties
    # across truth, so which comes first changes the weights each pixel gets.
    g = np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 1, 1]], np.float64)
    p = np.where(g > 0, 0.75, 0.25)
    p[2, 3] = 0.1  # one larger error (.9) to come first
    s = analysis.lovasz_steps(batch(g), batch(p), kind="softmax")
    errors = np.abs(g - p).ravel()
    assert s["order"][0] == 11
    np.testing.assert_array_equal(s["order"][1:], np.arange(11))  # ties: pixel order
    library = tf.argsort(errors, direction="DESCENDING", stable=True).numpy()
    np.testing.assert_array_equal(s["order"], library)
    sign = np.sign(p - g)
    np.testing.assert_allclose(s["gradient"], hand_gradient(s, sign), atol=1e-15)
    # the other tie order would give different per-pixel gradients
    reverse = np.concatenate([[11], np.arange(10, -1, -1)])
    _, _, weights, _, _ = lovasz_by_definition(errors[reverse], g.ravel()[reverse])
    other = np.zeros(12)
    other[reverse] = weights * sign.ravel()[reverse]
    assert np.abs(other.reshape(3, 4) - s["gradient"]).max() > 1e-3


# ------------------------------------------------------------------ bad inputs


def test_refuses_images_over_4096_pixels_and_accepts_64x64():
    rng = np.random.default_rng(8)
    with pytest.raises(ValueError, match="at most 4096 pixels.*small_pair"):
        analysis.lovasz_steps(*random_pair(rng, 65))
    s = analysis.lovasz_steps(*random_pair(rng, 64))
    assert len(s["order"]) == 4096 and s["gradient"].shape == (64, 64)


@pytest.mark.parametrize("keywords, inputs, message", [
    ({"kind": "dice"}, "binary", "kind must be 'hinge' or 'softmax'"),
    ({"kind": "hinge"}, "three", "hinge is binary"),
    ({"kind": "softmax", "channel": 3}, "three", "channel must be an integer from 0 to 2"),
    ({"image": 1}, "binary", "image must be an integer from 0 to 0"),
    ({"image": True}, "binary", "image must be an integer"),
    ({}, "rank3", r"\[B, H, W, C\]"),
    ({}, "out_of_range", r"\[0, 1\]"),
])
def test_bad_input_says_what_is_accepted(keywords, inputs, message):
    rng = np.random.default_rng(9)
    truth, pred = random_pair(rng, 4, 3 if inputs == "three" else 1)
    if inputs == "rank3":
        truth, pred = truth[0], pred[0]
    if inputs == "out_of_range":
        pred = pred * 2
    with pytest.raises(ValueError, match=message):
        analysis.lovasz_steps(truth, pred, **keywords)


# ------------------------------------------------------------------- small_pair


def test_small_pair_block_averages_and_keeps_a_binary_truth_hard():
    rng = np.random.default_rng(10)
    truth = (rng.uniform(size=(2, 64, 64, 1)) < 0.5).astype(np.float32)
    pred = rng.uniform(size=(2, 64, 64, 1)).astype(np.float32)
    g, p = analysis.small_pair(truth, pred, side=16)
    assert g.shape == p.shape == (2, 16, 16, 1) and g.dtype == p.dtype == np.float64
    blocks = lambda a: a.astype(np.float64).reshape(2, 16, 4, 16, 4, 1).mean((2, 4))
    np.testing.assert_allclose(p, blocks(pred), rtol=1e-12)
    assert set(np.unique(g)) <= {0.0, 1.0}
    np.testing.assert_array_equal(g, (blocks(truth) > 0.5) * 1.0)  # exactly half: background
    assert (blocks(truth) == 0.5).any()  # the tie rule was exercised


def test_small_pair_multiclass_truth_takes_the_majority_class_one_hot():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 3, (1, 32, 32))
    truth = np.eye(3)[labels]
    pred = rng.dirichlet(np.ones(3), (1, 32, 32))
    g, p = analysis.small_pair(truth, pred, side=8)
    counts = truth.reshape(1, 8, 4, 8, 4, 3).sum((2, 4))
    np.testing.assert_array_equal(g, np.eye(3)[counts.argmax(-1)])  # ties: lower class
    np.testing.assert_allclose(p.sum(-1), 1, rtol=1e-12)  # still a softmax


def test_small_pair_uneven_sizes_keep_aspect_and_area_and_soft_truth():
    rng = np.random.default_rng(12)
    truth = rng.uniform(size=(1, 50, 40, 1))  # soft truth: area averages kept
    pred = rng.uniform(size=(1, 50, 40, 1))
    g, p = analysis.small_pair(truth, pred, side=16)
    assert g.shape == p.shape == (1, 16, 13, 1)  # 40 * 16 / 50 = 12.8
    for small, big in ((g, truth), (p, pred)):  # area averaging conserves the mean
        assert small.mean() == pytest.approx(big.mean(), rel=1e-12)
    assert 0 < g.min() and g.max() < 1 and not np.all(np.isin(g, [0, 1]))
    # a small image is not upsampled
    g2, p2 = analysis.small_pair(truth[:, :10, :12], pred[:, :10, :12], side=16)
    np.testing.assert_array_equal(g2, truth[:, :10, :12])
    np.testing.assert_array_equal(p2, pred[:, :10, :12])


@pytest.mark.parametrize("side", [0, 65, 2.5, True])
def test_small_pair_rejects_a_bad_side(side):
    with pytest.raises(ValueError, match="side must be an integer from 1 to 64"):
        analysis.small_pair(np.zeros((1, 8, 8, 1)), np.zeros((1, 8, 8, 1)), side=side)


# --------------------------------------------------------------------- figures


@pytest.fixture(scope="module")
def steps():
    rng = np.random.default_rng(13)
    truth, pred = random_pair(rng, 6, 1, 0.4)
    return analysis.lovasz_steps(truth, pred, kind="hinge")


def test_lovasz_figure_has_every_pixel_and_marks_the_step(steps):
    n, step = 36, 10
    fig = charts.lovasz_figure(steps, step=step, title="Lovász hinge")
    by_name = {}
    for trace in fig.data:
        by_name.setdefault(trace.name, []).append(trace)
    fg, bg = by_name["error (truth fg)"][0], by_name["error (truth bg)"][0]
    assert len(fg.x) + len(bg.x) == n
    assert len(fg.x) == int(steps["truth"].sum())
    # counted from 1, as the page's slider counts pixels taken
    np.testing.assert_array_equal(np.sort(np.concatenate([fg.x, bg.x])), np.arange(1, n + 1))
    np.testing.assert_allclose(fg.y, steps["errors"][steps["truth"] > 0.5])
    for name, key in (("weight", "weights"), ("running Jaccard", "running_jaccard"),
                      ("contribution", "contribution"), ("cumulative loss", "cumulative_loss")):
        np.testing.assert_allclose(by_name[name][0].y, steps[key])
    # taken bars (rank <= step) at full opacity, the rest faded
    opacity = np.concatenate([fg.marker.opacity, bg.marker.opacity])
    assert np.sum(opacity == 1.0) == step + 1
    markers = by_name["current step"]
    assert len(markers) == 3 and all(list(m.x) == [step + 1] for m in markers)
    assert [m.y[0] for m in markers] == pytest.approx(
        [steps["errors"][step], steps["running_jaccard"][step], steps["cumulative_loss"][step]])
    assert len(fig.layout.shapes) == 3 and all(
        s.x0 == s.x1 == step + 1 for s in fig.layout.shapes)
    # hover: pixel (row, col), error, weight, contribution of the bar under the cursor
    assert all(k in fg.hovertemplate for k in ("row", "col", "error", "weight", "contribution"))
    first = int(np.flatnonzero(steps["truth"] > 0.5)[0])
    np.testing.assert_allclose(fg.customdata[0][[0, 1, 4, 5, 6]],
                               [steps["rows"][first], steps["cols"][first],
                                steps["errors"][first], steps["weights"][first],
                                steps["contribution"][first]], rtol=1e-6)
    assert "Lovász hinge" in fig.layout.title.text
    assert f"pixels taken: {step + 1} of {n}" in fig.layout.title.text
    assert "1 = largest error" in fig.layout.xaxis3.title.text


def test_lovasz_pixels_figure_writes_ranks_and_frames_current_and_next(steps):
    step = 7
    fig = charts.lovasz_pixels_figure(steps, (6, 6), step=step)
    heat = fig.data[0]
    taken_as = np.empty(36, int)  # when each pixel is taken, counted from 1
    taken_as[steps["order"]] = np.arange(1, 37)
    np.testing.assert_array_equal(np.asarray(heat.text), taken_as.reshape(6, 6).astype(str))
    z = np.asarray(heat.z)
    assert np.sum(z >= 2) == step + 1  # taken
    fg = np.zeros(36)
    fg[steps["order"]] = steps["truth"]
    np.testing.assert_array_equal(z % 2, fg.reshape(6, 6))
    frames = {s.name: s for s in fig.layout.shapes}
    for name, k in (("current pixel", step), ("next pixel", step + 1)):
        assert (frames[name].x0 + 0.5, frames[name].y0 + 0.5) == (
            steps["cols"][k], steps["rows"][k])
    last = charts.lovasz_pixels_figure(steps, (6, 6), step=35)
    assert [s.name for s in last.layout.shapes] == ["current pixel"]  # nothing comes next


@pytest.mark.parametrize("call, message", [
    (lambda s: charts.lovasz_figure(s, step=36), "step must be an integer from 0 to 35"),
    (lambda s: charts.lovasz_figure(s, step=-1), "step must be an integer from 0 to 35"),
    (lambda s: charts.lovasz_pixels_figure(s, (6, 5), step=0), r"shape must be the \(H, W\)"),
])
def test_figures_reject_a_bad_step_or_shape(steps, call, message):
    with pytest.raises(ValueError, match=message):
        call(steps)
