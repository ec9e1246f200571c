"""Every scenario says only what is true of what it shows.

Each test rebuilds a scenario's masks and settings as the page does
(``scenarios.inputs``), computes with the library (``gradients``, ``analysis``) and checks
each claim of its paragraph: the values it gives, where the gradient pushes, which number
is larger, and what a "set X to Y" does. Each number written in a paragraph must be one the
test computed (``_numbers_are``), so a new number in a text fails until it is checked.
The last test clicks every scenario in the running app and reads the stage's value.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from scipy import ndimage
from skimage.morphology import skeletonize

from explorer import analysis, charts, gradients, losses, masks, metrics, predictions
from explorer.settings import LOSS_LABELS
from explorer.ui import scenarios, state
from explorer.ui.scenarios import Inputs
from tests.test_app import APP, _run

# a number as a paragraph writes it: 185, 65,536, 0.45, 99.9, 1e−7 (not the 1 of "L1")
NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?:e[−-]\d+)?")


def _numbers_are(key: str, checked: dict) -> None:
    """The numbers written in the scenario's paragraph are exactly the keys of ``checked``,
    and each computed value rounds to the number as written (or is within the tolerance
    given as ``(value, tolerance)``, for "about")."""
    text = scenarios.get(key).text
    assert set(NUMBER.findall(text)) == set(checked), key
    for token, value in checked.items():
        value, tolerance = value if isinstance(value, tuple) else (value, _half_unit(token))
        written = float(token.replace(",", "").replace("−", "-"))
        assert abs(float(value) - written) <= tolerance * (1 + 1e-9), (key, token, value)


def _half_unit(token: str) -> float:
    decimals = len(token.split(".")[1]) if "." in token and "e" not in token else 0
    return 0.5 * 10.0 ** -decimals


def _inputs(key: str, **changes) -> Inputs:
    return scenarios.inputs(scenarios.get(key), **changes)


def _value(i: Inputs, loss: str | None = None) -> float:
    return gradients.loss_value(i.settings.loss_name(loss), i.truth, i.pred,
                                **i.settings.keywords(loss))


def _table(i: Inputs) -> dict[str, float]:
    return {r.key: r.value for r in analysis.metrics_table(i.truth, i.pred, i.settings)}


def _gradient(i: Inputs, loss: str | None = None, wrt: str | None = None) -> np.ndarray:
    """The gradient map the stage draws for ``loss`` (default: the chosen one)."""
    _, grad = gradients.loss_and_gradient(i.settings.loss_name(loss), i.truth, i.pred,
                                          wrt=wrt or i.wrt, **i.settings.keywords(loss))
    return grad[0, ..., 0]


def _regions(i: Inputs) -> dict[str, np.ndarray]:
    """True/false positives and negatives of the hard prediction, as boolean maps."""
    truth, pred = i.truth_labels > 0, i.hard_pred > 0
    return {"TP": truth & pred, "FP": ~truth & pred, "FN": truth & ~pred, "TN": ~truth & ~pred}


def _one_value(values: np.ndarray) -> float:
    """The single value a region of a map takes (asserted: the spread is float noise)."""
    assert values.size
    assert np.ptp(values) <= 1e-4 * np.abs(values).max(), (values.min(), values.max())
    return float(np.median(values))


def _batch(i: Inputs, *, add_empty: bool) -> predictions.Batch:
    """The batch view's batch: the pair, the default gallery truths with the same edits,
    and (if asked) an empty image; built as ``views.batch_panel`` builds it."""
    entries = masks.load_gallery()
    names = [e["name"] for e in entries]  # a binary page offers every entry
    chosen = state.default("batch_gallery", names)
    return predictions.batch((i.truth[0], i.pred[0]),
                             {e["name"]: e["labels"] for e in entries if e["name"] in chosen},
                             i.edits, i.settings.num_classes, add_empty=add_empty)


def _reductions(i: Inputs, batch: predictions.Batch) -> tuple[float, float]:
    """The batch view's two numbers: the chosen loss per image (mean) and whole batch."""
    name = i.settings.loss_name()
    return tuple(gradients.loss_value(name, batch.truth, batch.pred,
                                      **i.settings.replace(per_image=per).keywords())
                 for per in (True, False))


# ------------------------------------------------------------------ the texts


def test_every_scenario_is_short_titled_and_asks_before_it_tells():
    for s in scenarios.SCENARIOS:
        # a sidebar button's label: at the default width 20 characters fit whole (measured:
        # "Overconfident logits" needs 118 of 129 px, a 22-character title did not fit)
        assert len(s.title) <= 20, s.title
        assert 40 <= len(s.text.split()) <= 70, s.key  # beside the stage, not a banner
        assert s.question.rstrip().endswith("?") and s.question != s.text, s.key
        # the question gives nothing away: no number at all, so none of the answer's
        assert not re.search(r"\d", s.question), s.question
        assert set(s.state) <= set(state.EXPLORE), s.key


def test_every_scenario_sets_values_its_controls_offer():
    for s in scenarios.SCENARIOS:
        values = {**state.EXPLORE, **s.state}
        assert values["stage_compare"] in (state.NONE, *LOSS_LABELS), s.key
        assert values["gradient_wrt"] in state.WRT_LABELS.values(), s.key
        assert values["gradient_scale"] in state.GRADIENT_SCALES, s.key
        assert values["loss"] in LOSS_LABELS, s.key
        assert values["stage_compare"] != values["loss"], s.key  # a second map, not the same


def test_inputs_are_the_thumbnails_masks_at_full_size():
    for s in scenarios.SCENARIOS:
        i = scenarios.inputs(s)
        size = {**state.EXPLORE, **s.state}["mask_size"]
        truth, pred = scenarios.preview(s, size)
        np.testing.assert_array_equal(i.truth_labels, truth)
        np.testing.assert_array_equal(i.hard_pred, pred)
        assert i.truth.shape == i.pred.shape == (1, size, size, 1)


def test_inputs_follow_later_changes():
    moved = _inputs("shifted", shift_x=-4, smooth=0.5, loss="jaccard_loss")
    np.testing.assert_array_equal(moved.hard_pred, masks.shift(moved.truth_labels, 0, -4))
    assert moved.settings.smooth == 0.5 and moved.settings.loss == "jaccard_loss"
    with pytest.raises(ValueError, match="scenarios are binary"):
        _inputs("shifted", num_classes=3)


# -------------------------------------------------------- each scenario's claims


def test_perfect_overlap():
    i = _inputs("perfect")
    assert set(np.unique(i.pred)) == {0.0, 1.0}  # full confidence, no blur
    np.testing.assert_array_equal(i.pred[0, ..., 0], i.truth[0, ..., 0])
    values = _table(i)
    assert values["dice_loss"] == pytest.approx(0, abs=1e-7) and values["iou"] == 1.0
    # BCE shows 0.000000 but is about 1e-7: p is clipped to [1e-7, 1 - 1e-7]
    bce = values["binary_crossentropy"]
    assert analysis.number_text(bce, ".6f") == "0.000000" and 1e-7 <= bce < 2e-7
    assert losses.PROB_CLIP == 1e-7
    # dice's ∂L/∂p still pushes p up (negative) inside, down (positive) outside
    fg = i.truth_labels > 0
    by_p = _gradient(i, wrt="probabilities")
    assert by_p[fg].max() < 0 < by_p[~fg].min()
    # through the saturated sigmoid: over a million times weaker
    by_logit = _gradient(i, wrt="logits")
    weaker = np.abs(by_p).max() / np.abs(by_logit).max()
    assert weaker > 1e6
    _numbers_are("perfect", {"0": values["dice_loss"], "1": values["iou"],
                             "0.000000": (bce, 5e-7), "1e−7": (losses.PROB_CLIP, 0)})


def test_empty_vs_empty():
    i = _inputs("empty")
    assert i.truth.sum() == 0 and i.pred.sum() == 0
    assert (i.settings.smooth, i.settings.epsilon) == (0, 0)
    assert math.isnan(_value(i))  # 0/0: undefined
    smoothed = _table(_inputs("empty", smooth=1.0))
    assert smoothed["dice_coefficient"] == 1 and smoothed["dice_loss"] == 0
    guarded = _table(_inputs("empty", smooth=0.0, epsilon=1e-7))
    assert guarded["dice_coefficient"] == 0 and guarded["dice_loss"] == 1  # the largest
    _numbers_are("empty", {"0": guarded["dice_coefficient"], "1": guarded["dice_loss"],
                           "1e−7": (1e-7, 0)})


def test_a_tiny_object_missed():
    i = _inputs("tiny_missed")
    assert i.truth_labels.sum() == 185 and i.truth_labels.size == 65_536
    assert not i.hard_pred.any()  # predicted as background
    loss = _value(i)
    batch = _batch(i, add_empty=False)
    assert len(batch.names) == 3 and batch.names[0] == "current"  # two gallery images
    per_image, whole = _reductions(i, batch)
    each = [gradients.loss_value("dice_loss", batch.truth[k:k + 1], batch.pred[k:k + 1],
                                 **i.settings.keywords()) for k in range(3)]
    assert each[0] == pytest.approx(loss, abs=1e-6)
    assert per_image == pytest.approx(np.mean(each), abs=1e-6)  # the miss weighs a third
    truth_pixels = int(batch.truth.sum())
    assert per_image > whole
    _numbers_are("tiny_missed", {"185": i.truth_labels.sum(), "65,536": i.truth_labels.size,
                                 "0.99": loss, "0.46": per_image, "40,215": truth_pixels,
                                 "0.24": whole})


def test_a_shifted_prediction_dice_vs_bce():
    i = _inputs("shifted")
    s = {**state.EXPLORE, **scenarios.get("shifted").state}
    np.testing.assert_array_equal(i.hard_pred, masks.shift(i.truth_labels, 0, 16))
    assert i.wrt == "logits" and i.settings.loss == "dice_loss"
    assert s["stage_compare"] == "binary_crossentropy"
    r = _regions(i)
    # BCE: up (negative) on the missed crescent, down on the added one, 9x weaker elsewhere
    bce = _gradient(i, "binary_crossentropy")
    missed, added = _one_value(bce[r["FN"]]), _one_value(bce[r["FP"]])
    overlap, background = _one_value(bce[r["TP"]]), _one_value(bce[r["TN"]])
    assert missed < 0 < added
    weaker = abs(missed) / abs(overlap)
    assert weaker == pytest.approx(abs(added) / abs(background), rel=1e-3)
    # Dice: one even push up over the truth disc, overlap included; one push down elsewhere,
    # the added crescent no more than the background
    dice = _gradient(i)
    fg = i.truth_labels > 0
    inside, outside = _one_value(dice[fg]), _one_value(dice[~fg])
    assert inside < 0 < outside
    assert _one_value(dice[r["FP"]]) == pytest.approx(_one_value(dice[r["TN"]]), rel=1e-4)
    # and w.r.t. p too (the stage's note under that map says why)
    assert analysis.piecewise_constant(i.settings, "probabilities")
    by_p = _gradient(i, wrt="probabilities")
    assert _one_value(by_p[fg]) < 0 < _one_value(by_p[~fg])
    _numbers_are("shifted", {"16": s["shift_x"], "9": weaker})


def test_too_big_vs_too_small():
    i = _inputs("over_under")
    r = _regions(i)
    assert r["FP"].any() and not r["FN"].any()  # false positives only
    np.testing.assert_array_equal(i.hard_pred, predictions.Edits(grow=6).hard(i.truth_labels))
    assert (i.settings.alpha, i.settings.beta) == (0.3, 0.7)
    over = _table(i)
    assert over["tversky_loss"] < over["dice_loss"]  # forgiven
    under_inputs = _inputs("over_under", grow=-6)
    r = _regions(under_inputs)
    assert r["FN"].any() and not r["FP"].any()  # false negatives only
    under = _table(under_inputs)
    assert under["tversky_loss"] > under["dice_loss"]
    _numbers_are("over_under", {
        "6": 6, "0.3": i.settings.alpha, "0.7": i.settings.beta,
        "0.07": over["tversky_loss"], "0.11": over["dice_loss"],
        "0.16": under["tversky_loss"], "0.12": under["dice_loss"]})


def test_class_imbalance():
    i = _inputs("imbalance")
    assert i.settings.loss == "binary_crossentropy" and i.wrt == "probabilities"
    assert i.truth_labels.sum() == 185 and not i.hard_pred.any()
    np.testing.assert_allclose(i.pred, 0.01, atol=1e-7)  # 'nothing here' at 99%
    values = _table(i)
    assert values["binary_crossentropy"] < values["dice_loss"]
    fg = i.truth_labels > 0
    grad = _gradient(i)
    up, down = _one_value(grad[fg]), _one_value(grad[~fg])
    assert up < 0 < down  # pushed up on the object, down elsewhere
    harder = abs(up) / down
    more = (~fg).sum() / fg.sum()
    _numbers_are("imbalance", {"185": fg.sum(), "99": harder,
                               "0.02": values["binary_crossentropy"],
                               "0.99": values["dice_loss"], "353": more})
    assert 100 * (1 - i.pred.max()) == pytest.approx(99, abs=1e-4)  # "99% confidence" too


def test_soft_labels_product_vs_l1():
    i = _inputs("soft_labels")
    smoothing = {**state.EXPLORE, **scenarios.get("soft_labels").state}["label_smoothing"]
    fg = i.truth_labels > 0
    np.testing.assert_allclose(i.truth[0, fg, 0], 0.9, atol=1e-6)
    np.testing.assert_allclose(i.truth[0, ~fg, 0], 0.1, atol=1e-6)
    np.testing.assert_allclose(i.pred, i.truth, atol=1e-6)  # exactly that
    values = _table(i)
    l1 = _value(_inputs("soft_labels", soft_label=True))
    assert values["dice_loss"] > 0.4 and l1 == pytest.approx(0, abs=1e-6)
    g, p = i.truth.astype(np.float64), i.pred.astype(np.float64)
    np.testing.assert_allclose((p + g - np.abs(p - g)) / 2, np.minimum(p, g), atol=1e-12)
    _numbers_are("soft_labels", {"0.2": smoothing, "0.9": i.truth.max(), "0.1": i.truth.min(),
                                 "0.45": values["dice_loss"], "1": values["hard_dice"],
                                 "2": 2, "0": l1})


def test_overconfident_logits():
    i = _inputs("overconfident")
    s = {**state.EXPLORE, **scenarios.get("overconfident").state}
    np.testing.assert_array_equal(i.hard_pred, masks.shift(i.truth_labels, 0, 12))
    assert i.wrt == "logits" and s["gradient_scale"] == "locked"
    assert s["stage_compare"] == "binary_crossentropy"
    p = i.pred[0, ..., 0].astype(np.float64)
    saturation = p * (1 - p)
    assert np.ptp(saturation) < 1e-6  # every pixel at 0.999 or 0.001
    r = _regions(i)
    wrong, right = r["FN"] | r["FP"], r["TP"] | r["TN"]
    dice, bce = _gradient(i), _gradient(i, "binary_crossentropy")
    # the lock: the shared scale of the stage's two maps when the scenario opens
    lock = max(charts.gradient_limit(dice), charts.gradient_limit(bce))
    assert charts.gradient_limit(dice) / lock < 0.01  # Dice's map nearly white
    g = i.truth[0, ..., 0]
    np.testing.assert_allclose(bce, (p - g) / p.size, rtol=1e-3, atol=1e-12)  # (p − g)/N
    assert np.abs(bce[wrong]).min() > np.abs(bce[right]).max()  # strongest where wrong
    calm = _inputs("overconfident", confidence=0.6)
    dice_calm = _gradient(calm)
    grows = np.abs(dice_calm[wrong]).max() / np.abs(dice[wrong]).max()
    assert 0.5 < charts.gradient_limit(dice_calm) / lock <= 1  # shows, within the lock
    _numbers_are("overconfident", {"12": s["shift_x"], "99.9": 100 * s["confidence"],
                                   "1": 1, "0.001": saturation.mean(), "0.6": 0.6,
                                   "170": (grows, 10)})


def test_an_empty_image_in_a_batch():
    i = _inputs("batch_empty")
    batch = _batch(i, add_empty=True)
    assert batch.names[0] == "current" and batch.names[-1] == "empty" and len(batch.names) == 4
    without = _batch(i, add_empty=False)
    per_image, whole = _reductions(i, batch)
    per_image_without, whole_without = _reductions(i, without)
    dice = np.asarray(losses.per_class_dice(batch.truth, batch.pred, smooth=i.settings.smooth,
                                            epsilon=i.settings.epsilon))
    perfect = dice[-1, 0]
    assert i.settings.smooth == 1 and perfect == 1  # a perfect 1
    assert per_image < per_image_without  # the mean falls
    assert whole == pytest.approx(whole_without, abs=1e-6)  # nothing added to the sums
    guarded = _inputs("batch_empty", smooth=0.0, epsilon=1e-7)
    batch = _batch(guarded, add_empty=True)
    dice = np.asarray(losses.per_class_dice(batch.truth, batch.pred, smooth=0.0,
                                            epsilon=1e-7))
    per_image_guarded, _ = _reductions(guarded, batch)
    assert dice[-1, 0] == 0 and per_image_guarded > per_image_without  # drags it up
    _numbers_are("batch_empty", {"1": perfect, "0.23": per_image_without,
                                 "0.17": per_image, "0.21": whole, "0": dice[-1, 0],
                                 "1e−7": (1e-7, 0), "0.42": per_image_guarded})


# ------------------------------------------- where Dice is blind (explorer.metrics)


def _hard(i: Inputs) -> tuple[np.ndarray, np.ndarray]:
    """The truth and the hard prediction at the threshold, as "Beyond overlap" takes them."""
    pred = predictions.hard_labels(i.pred[0], i.settings.threshold) == 1
    return i.truth_labels == 1, pred


def _dice(truth: np.ndarray, pred: np.ndarray) -> float:
    return 2 * (truth & pred).sum() / (truth.sum() + pred.sum())


def _opens_beyond(key: str) -> dict:
    s = {**state.EXPLORE, **scenarios.get(key).state}
    assert s["explore_tabs"] == state.BEYOND_TAB, key
    return s


def test_a_far_away_blob():
    s = _opens_beyond("far_blob")
    i = _inputs("far_blob")
    truth, pred = _hard(i)
    np.testing.assert_array_equal(pred, i.hard_pred > 0)  # fully confident: p is 0 or 1
    assert pred[truth].all()  # the truth, plus
    blob = pred & ~truth
    assert metrics.lesion_detection(truth, pred)["fp"] == 1  # one blob, in the far corner
    rows, cols = np.nonzero(blob)
    assert rows.min() > 0.75 * s["mask_size"] and cols.min() > 0.75 * s["mask_size"]
    radius = 0.2 * s["mask_size"]
    assert truth.sum() == pytest.approx(np.pi * radius ** 2, rel=0.01)
    dice = _dice(truth, pred)
    share = 100 * blob.sum() / pred.sum()
    hd95 = metrics.hausdorff_distance(truth, pred, percentile=95)
    edge = metrics.boundary(pred)
    assert (edge & blob).sum() / edge.sum() > 0.05  # more than 5% of the predicted boundary
    to_truth, _ = metrics.surface_distances(truth, pred)
    far = to_truth[blob[edge]]  # argwhere order: the blob's boundary points
    assert far.min() > 90  # all of it far away
    small = _inputs("far_blob", **{state.pitfall_key("far blob"): 1})
    shrunk = metrics.hausdorff_distance(*_hard(small), percentile=95)
    assert metrics.hausdorff_distance(*_hard(small)) > 90  # still there: the worst 5% left out
    _numbers_are("far_blob", {"51": radius, "116": blob.sum(), "0.99": dice, "1": share,
                              "104": hd95, "5": 100 - 95, "0": shrunk})
    assert s[state.pitfall_key("far blob")] == 6 and small.truth_labels.sum() == truth.sum()


def test_a_ragged_boundary():
    s = _opens_beyond("rough_edge")
    i = _inputs("rough_edge")
    truth, pred = _hard(i)
    size, radius, noise = s["mask_size"], 0.3 * s["mask_size"], s[state.pitfall_key("rough edge")]
    rows, cols = np.ogrid[:size, :size]
    distance = np.hypot(rows - size / 2, cols - size / 2)
    assert pred[distance < radius - noise].all() and not pred[distance >= radius + noise].any()
    assert abs(int(pred.sum()) - int(truth.sum())) < 0.02 * truth.sum()  # nearly cancel
    dice = _dice(truth, pred)
    nsd = metrics.surface_dice(truth, pred, tolerance=s["nsd_tolerance"])
    assert nsd < 0.5  # less than half
    wide = metrics.surface_dice(*_hard(_inputs("rough_edge", nsd_tolerance=5.0)), tolerance=5.0)
    _numbers_are("rough_edge", {"77": radius, "5": noise, "3": masks.RIM_STEP, "0.97": dice,
                                "1": s["nsd_tolerance"], "0.44": nsd})
    assert wide == 1 and s["nsd_tolerance"] == 1


def test_one_pixel_off():
    s = _opens_beyond("small_shift")
    i = _inputs("small_shift")
    truth, pred = _hard(i)
    np.testing.assert_array_equal(pred, masks.shift(truth, 0, 1))  # moved 1 px right
    dice = _dice(truth, pred)
    assert 0.2 < 1 - dice < 0.3  # a quarter of the score
    hd95 = metrics.hausdorff_distance(truth, pred, percentile=95)
    assert metrics.hausdorff_distance(truth, pred) <= 1  # no point more than a pixel off
    nsd = metrics.surface_dice(truth, pred, tolerance=s["nsd_tolerance"])
    big = _inputs("small_shift", truth_radius=0.2)
    big_truth, big_pred = _hard(big)
    np.testing.assert_array_equal(big_pred, masks.shift(big_truth, 0, 1))
    big_dice = _dice(big_truth, big_pred)
    assert metrics.hausdorff_distance(big_truth, big_pred, percentile=95) == hd95 == 1
    _numbers_are("small_shift", {"21": truth.sum(), "1": nsd, "0.76": dice, "0.2": 0.2,
                                 "8,245": big_truth.sum(), "0.99": big_dice})
    assert s["shift_x"] == 1 and s["nsd_tolerance"] == 1


def test_small_lesions_missed():
    s = _opens_beyond("lesions_missed")
    truth, pred = _hard(_inputs("lesions_missed"))
    found = metrics.lesion_detection(truth, pred)
    assert found["tp"] == 3 and found["fp"] == 0  # three found, nothing false
    labels, count = ndimage.label(pred, structure=np.ones((3, 3)))
    truth_labels, _ = ndimage.label(truth, structure=np.ones((3, 3)))
    for k in range(1, count + 1):  # each found exactly: a predicted lesion is a truth one
        under = np.unique(truth_labels[labels == k])
        np.testing.assert_array_equal(labels == k, truth_labels == under[0])
    assert found["fn"] / (found["tp"] + found["fn"]) == pytest.approx(0.8)  # four in five
    dice = _dice(truth, pred)
    share = 100 * (truth & ~pred).sum() / truth.sum()
    more = metrics.lesion_detection(*_hard(_inputs("lesions_missed",
                                                   **{state.pitfall_key("lesions"): 30})))
    more_dice = _dice(*_hard(_inputs("lesions_missed", **{state.pitfall_key("lesions"): 30})))
    assert more["fn"] == 30 and more["tp"] == 3
    _numbers_are("lesions_missed", {"12": found["fn"], "0.91": dice, "16": share,
                                    "0.2": found["recall"], "3": found["tp"],
                                    "15": found["tp"] + found["fn"], "1": found["precision"],
                                    "30": more["fn"], "0.09": more["recall"],
                                    "0.8": more_dice})
    assert s[state.pitfall_key("lesions")] == 12


def test_thin_branches_lost():
    s = _opens_beyond("thin_branches")
    truth, pred = _hard(_inputs("thin_branches"))
    assert pred[pred].all() and (pred <= truth).all()  # the trunk alone, inside the truth
    assert ndimage.label(pred)[1] == 1
    dice, cl = _dice(truth, pred), metrics.cl_dice(truth, pred)
    centre = skeletonize(truth)
    assert (centre & ~pred).sum() > 0.5 * centre.sum()  # branches: over half the centre line
    wide = _hard(_inputs("thin_branches", **{state.pitfall_key("thin branches"): 7}))
    wide_dice, wide_cl = _dice(*wide), metrics.cl_dice(*wide)
    assert wide[0].sum() > truth.sum() and (wide[1] == pred).all()  # more pixels missed
    _numbers_are("thin_branches", {"1": s[state.pitfall_key("thin branches")], "0.91": dice,
                                   "0.48": (cl, 0.005), "7": 7, "0.57": wide_dice})
    assert round(wide_cl, 2) == round(cl, 2) == 0.48  # stays


def test_empty_reference():
    s = _opens_beyond("empty_reference")
    i = _inputs("empty_reference")
    truth, pred = _hard(i)
    assert not truth.any() and pred.sum() == 81
    assert _dice(truth, pred) == 0
    other = _hard(_inputs("empty_reference", prediction_radius=0.1))
    assert other[1].sum() > 1000 and _dice(*other) == 0  # whatever its size
    loss = _value(i)
    assert i.settings.smooth == 1 and i.settings.loss == "dice_loss"
    assert math.isinf(metrics.hausdorff_distance(truth, pred, percentile=95))
    assert math.isinf(metrics.average_surface_distance(truth, pred))
    nsd = metrics.surface_dice(truth, pred, tolerance=s["nsd_tolerance"])
    found = metrics.lesion_detection(truth, pred)
    assert found["precision"] == 0 and math.isnan(found["recall"])
    empty = _inputs("empty_reference", prediction_source="Empty")
    perfect = _table(empty)["dice_coefficient"]
    guarded = _table(_inputs("empty_reference", prediction_source="Empty", smooth=0.0,
                             epsilon=1e-7))["dice_coefficient"]
    t, p = _hard(empty)
    assert not p.any()
    assert all(math.isnan(v) for v in (
        metrics.hausdorff_distance(t, p, percentile=95), metrics.average_surface_distance(t, p),
        metrics.surface_dice(t, p, tolerance=1.0)))
    _numbers_are("empty_reference", {"81": pred.sum(), "0": nsd, "1": perfect, "0.99": loss,
                                     "1e−7": (1e-7, 0)})
    assert guarded == 0 and found["precision"] == 0


def test_same_dice_unsure_p():
    s = _opens_beyond("calibration")
    i = _inputs("calibration")
    truth, pred = _hard(i)
    np.testing.assert_array_equal(pred, masks.shift(truth, 0, 4))
    p = i.pred[0, ..., 0]
    np.testing.assert_allclose(np.where(pred, p, 1 - p), 0.9, atol=1e-6)  # 0.9 on its side
    dice = _dice(truth, pred)
    ece = metrics.expected_calibration_error(truth, p).ece
    right = 100 * (pred == truth).mean()
    calm = _inputs("calibration", confidence=0.6)
    calm_truth, calm_pred = _hard(calm)
    assert _dice(calm_truth, calm_pred) == dice  # stays
    calm_ece = metrics.expected_calibration_error(calm_truth, calm.pred[0, ..., 0]).ece
    assert _value(calm) > 2 * _value(i)  # the stage's soft Dice loss more than doubles
    sure = _inputs("calibration", confidence=0.99)
    sure_ece = metrics.expected_calibration_error(_hard(sure)[0], sure.pred[0, ..., 0]).ece
    _numbers_are("calibration", {"4": s["shift_x"], "0.9": s["confidence"], "0.95": dice,
                                 "0.087": ece, "90": 100 * s["confidence"], "98.7": right,
                                 "0.6": 0.6, "0.39": calm_ece, "0.99": 0.99,
                                 "0.003": sure_ece})


def test_slices_vs_volume():
    s = {**state.EXPLORE, **scenarios.get("slices_volume").state}
    assert s["explore_tabs"] == state.VOLUMES_TAB and s["volume_name"] == "lesions"
    truth, pred = masks.load_volumes()[s["volume_name"]]
    volume = _dice(truth, pred)
    per_slice = np.array([_dice(t, p) if t.any() or p.any() else np.nan
                          for t, p in zip(truth, pred)])
    mean = np.nanmean(per_slice)
    assert mean < volume
    near_zero = np.flatnonzero(per_slice < 0.05)
    defined = np.flatnonzero(np.isfinite(per_slice))
    assert {defined[0], defined[1], defined[-1]} <= set(near_zero)  # the end slices
    components, count = ndimage.label(pred, structure=np.ones((3, 3, 3)))
    blob = [k for k in range(1, count + 1) if not truth[components == k].any()]
    assert len(blob) == 1  # the false-positive blob: its slices score near 0 too
    assert set(np.flatnonzero((components == blob[0]).any(axis=(1, 2)))) <= set(near_zero)
    missed = metrics.lesion_detection(truth, pred)["fn"]
    assert missed == 6 and len(near_zero) < len(defined) / 2  # the middle slices do not
    np.testing.assert_allclose(analysis.slice_dice(truth, pred)[0], per_slice)
    _numbers_are("slices_volume", {"24": len(truth), "3": s["spacing_d"], "0.86": volume,
                                   "0.55": mean, "0": 0, "5": np.isnan(per_slice).sum()})


def test_every_scenario_has_its_claims_checked():
    checked = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    tests = {"perfect": "perfect_overlap", "empty": "empty_vs_empty",
             "tiny_missed": "a_tiny_object_missed", "shifted": "a_shifted_prediction_dice_vs_bce",
             "over_under": "too_big_vs_too_small", "imbalance": "class_imbalance",
             "soft_labels": "soft_labels_product_vs_l1", "overconfident": "overconfident_logits",
             "batch_empty": "an_empty_image_in_a_batch", "far_blob": "a_far_away_blob",
             "rough_edge": "a_ragged_boundary", "small_shift": "one_pixel_off",
             "lesions_missed": "small_lesions_missed", "thin_branches": "thin_branches_lost",
             "empty_reference": "empty_reference", "calibration": "same_dice_unsure_p",
             "slices_volume": "slices_vs_volume"}
    assert set(tests) == set(scenarios.BY_KEY)
    assert set(tests.values()) <= checked


# --------------------------------------------------------------- in the page


def test_every_scenario_button_shows_the_computed_value():
    """Click each scenario's button in the sidebar: the stage's value is the chosen loss
    computed here from the scenario's inputs, to the six decimals shown."""
    at = _run(AppTest.from_file(APP, default_timeout=300))
    for scenario in scenarios.SCENARIOS:
        at.sidebar.button(key=f"scenario_button_{scenario.key}").click()
        _run(at)
        i = scenarios.inputs(scenario)
        row = next(r for r in analysis.metrics_table(i.truth, i.pred, i.settings)
                   if r.key == i.settings.loss)
        stage = at.metric[0]
        if math.isnan(row.value):  # 0/0: said in the label, the value kept short
            assert (stage.label, stage.value) == (f"{row.label}: undefined", "0/0"), scenario.key
        else:
            assert stage.label == row.label, scenario.key
        if not math.isnan(row.value):
            assert stage.value == f"{_value(i):.6f}", scenario.key
        assert any(scenario.text[:40] in m.value for m in at.markdown), scenario.key
