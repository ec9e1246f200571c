"""What the Explore tab computes besides the losses: settings -> keywords, the table,
the substituted formula, gradient regions, class weights and the sweeps."""

import math

import numpy as np
import pytest

from explorer import analysis, losses, masks
from explorer.settings import LOSS_LABELS, Settings


def pair(size=64, shift=4, classes=2, confidence=0.9):
    truth = masks.shape_mask("circle", size, radius=0.2)
    if classes > 2:
        truth = truth + (masks.shape_mask("square", size, radius=0.1, center=(0.2, 0.2)) > 0) * 2
    pred = masks.soften(masks.shift(truth, 0, shift), classes, confidence=confidence)
    return truth, masks.to_batch(masks.one_hot(truth, classes)), masks.to_batch(pred)


def test_keywords_route_each_setting_to_the_loss_that_takes_it():
    s = Settings(smooth=0.5, epsilon=1e-6, alpha=0.3, beta=0.7, tversky_gamma=1.5,
                 focal_gamma=3.0, focal_alpha=0.25, num_classes=3, class_weights=(1, 2, 3))
    assert s.keywords("tversky_loss")["gamma"] == 1.5 and s.keywords("tversky_loss")["alpha"] == 0.3
    assert s.keywords("focal_loss") == {"gamma": 3.0, "alpha": 0.25}
    assert s.keywords("dice_loss")["class_weights"] == [1, 2, 3]
    assert s.keywords("binary_crossentropy") == {}
    assert s.keywords("generalized_dice_loss")["smooth"] == 1e-5
    assert s.loss_name("lovasz") == "lovasz_softmax"
    assert Settings().loss_name("lovasz") == "lovasz_hinge"
    assert set(s.keywords("lovasz")) == {"classes", "per_image"}


def test_settings_reject_an_unknown_loss_and_too_many_classes():
    with pytest.raises(ValueError, match="loss"):
        Settings(loss="dice")
    with pytest.raises(ValueError, match="num_classes"):
        Settings(num_classes=7)


def test_table_values_are_the_library_values():
    _, truth, pred = pair()
    rows = {r.key: r.value for r in analysis.metrics_table(truth, pred, Settings(smooth=0.1))}
    assert set(LOSS_LABELS) <= set(rows)
    assert rows["dice_coefficient"] == pytest.approx(
        float(losses.dice_coefficient(truth, pred, smooth=0.1)), abs=1e-6)
    assert rows["dice_loss"] == pytest.approx(float(losses.dice_loss(truth, pred, smooth=0.1)),
                                              abs=1e-6)
    assert rows["focal_loss"] == pytest.approx(float(losses.focal_loss(truth, pred)), abs=1e-6)
    assert rows["iou"] == pytest.approx(1 - float(losses.jaccard_loss(truth, pred, smooth=0.1)),
                                        abs=1e-6)


def test_formula_substitutes_this_masks_sums():
    truth_labels, truth, pred = pair(confidence=1.0)  # hard masks: I, P, G are pixel counts
    overlap = int(((truth_labels > 0) & (masks.shift(truth_labels, 0, 4) > 0)).sum())
    area = int((truth_labels > 0).sum())
    formula = analysis.loss_formula(truth, pred, Settings(smooth=1.0))
    (line,) = formula.substituted
    assert r"\epsilon" in formula.general
    assert f"2 \\times {overlap} + 1" in line
    assert f"{(2 * overlap + 1) / (2 * area + 1):.4f}" in line


def test_formula_says_undefined_for_zero_over_zero():
    empty = np.zeros((1, 8, 8, 1), np.float32)
    (line,) = analysis.loss_formula(empty, empty, Settings(smooth=0.0)).substituted
    assert "undefined" in line


def _shown_value(line: str) -> float:
    return float(line.rsplit("=", 1)[1])


# the loss's value from the index each substituted line ends with (one class, one image)
FROM_INDEX = {
    "dice_loss": lambda index, s: 1 - index,
    "jaccard_loss": lambda index, s: 1 - index,
    "tversky_loss": lambda index, s: (1 - index) ** (1 / s.tversky_gamma),
    "generalized_dice_loss": lambda index, s: 1 - index,
}


@pytest.mark.parametrize("loss", list(FROM_INDEX))
@pytest.mark.parametrize("extra", [{}, {"squared": True}, {"soft_label": True},
                                   {"alpha": 0.3, "beta": 0.7, "tversky_gamma": 1.5}])
def test_formula_follows_the_chosen_loss_and_gives_its_value(loss, extra):
    if extra.get("squared") and loss == "tversky_loss":
        extra = {**extra, "alpha": 0.5, "beta": 0.5}
    if "alpha" in extra and loss != "tversky_loss":
        return  # alpha/beta/gamma only reach Tversky
    _, truth, pred = pair(confidence=0.8)
    settings = Settings(loss=loss, smooth=0.5, epsilon=1e-3, **extra)
    formula = analysis.loss_formula(truth, pred, settings)
    expected = float(getattr(losses, loss)(truth, pred, **settings.keywords()))
    index = _shown_value(formula.substituted[-1])
    assert FROM_INDEX[loss](index, settings) == pytest.approx(expected, abs=2e-4)
    symbol = {"dice_loss": "Dice", "jaccard_loss": "IoU", "tversky_loss": "TI",
              "generalized_dice_loss": "GD"}[loss]
    assert rf"\mathrm{{{symbol}}}" in formula.general


@pytest.mark.parametrize("loss, extra", [
    ("binary_crossentropy", {}), ("focal_loss", {}), ("focal_loss", {"focal_alpha": 0.25}),
    ("focal_loss", {"focal_gamma": 0.0}),
])
@pytest.mark.parametrize("classes", [2, 3])
def test_cross_entropy_formulas_sum_to_the_loss(loss, extra, classes):
    _, truth, pred = pair(confidence=0.8, classes=classes)
    settings = Settings(loss=loss, num_classes=classes, **extra)
    formula = analysis.loss_formula(truth, pred, settings)
    expected = float(getattr(losses, loss)(truth, pred, **settings.keywords()))
    assert _shown_value(formula.substituted[-1]) == pytest.approx(expected, abs=1e-4)


def test_bce_plus_dice_formula_shows_both_parts():
    _, truth, pred = pair(confidence=0.8)
    settings = Settings(loss="bce_dice_loss", bce_weight=0.5, dice_weight=2.0)
    formula = analysis.loss_formula(truth, pred, settings)
    bce, dice = (_shown_value(line) for line in formula.substituted)
    expected = float(losses.bce_dice_loss(truth, pred, **settings.keywords()))
    assert 0.5 * bce + 2.0 * (1 - dice) == pytest.approx(expected, abs=1e-4)


def test_generalized_dice_note_is_true_smooth_one_would_swamp_the_weighted_sums():
    """The note says the shared smooth (about 1) would make the index read about 1 whatever
    the prediction: check it on a prediction that misses the object entirely."""
    _, truth, _ = pair()
    missed = np.zeros_like(truth)
    formula = analysis.loss_formula(truth, missed, Settings(loss="generalized_dice_loss"))
    assert "smooth = 1e-05" in formula.note
    used = float(losses.generalized_dice_loss(truth, missed, smooth=1e-5))
    swamped = float(losses.generalized_dice_loss(truth, missed, smooth=1.0))
    assert used > 0.99 and swamped < 0.01


def test_inverse_frequency_weights_mean_one_and_absent_class_gets_the_largest():
    labels = np.array([[0] * 6 + [1] * 3 + [2]])
    weights = analysis.inverse_frequency_weights(labels, 4)
    present = np.array(weights[:3])
    assert present.mean() == pytest.approx(1.0, abs=1e-3)
    assert weights[2] / weights[0] == pytest.approx(6.0, rel=1e-3)  # 6x rarer
    assert weights[3] == max(weights)


def test_gradient_regions_split_inside_boundary_outside():
    fg = np.zeros((10, 10), bool)
    fg[3:7, 3:7] = True
    grad = np.where(fg, -2.0, 0.5)
    regions = analysis.gradient_regions(grad, fg)
    assert regions["inside"] == 2.0 and regions["outside"] == 0.5
    assert 0.5 < regions["boundary"] < 2.0


def test_small_objects_are_punished_by_dice_not_by_bce():
    curves = analysis.sweep_object_size(Settings(), ["dice_loss", "binary_crossentropy"],
                                        size=48)
    dice, bce = curves["dice_loss"], curves["binary_crossentropy"]
    assert dice[0] > 0.5 > dice[-1]  # a 2 px miss ruins a 1 px object, hardly a big one
    assert bce[0] < bce[-1]  # BCE averages over the image: a small miss costs little
    assert np.all(np.isfinite(curves["dice_loss:grad"]))


def test_smooth_sweep_includes_zero_and_rises_to_zero_loss():
    _, truth, pred = pair()
    curves = analysis.sweep_smooth(truth, pred, Settings(), ["dice_loss"])
    assert curves["smooth"][0] == 0.0
    assert curves["dice_loss"][0] > curves["dice_loss"][-1]  # huge smooth -> Dice -> 1


def test_confidence_sweep_of_a_perfect_prediction_falls_with_confidence():
    truth_labels, _, _ = pair()
    curves = analysis.sweep_confidence(truth_labels, truth_labels, Settings(),
                                       ["binary_crossentropy"])
    assert np.all(np.diff(curves["binary_crossentropy"]) < 0)
    assert not math.isnan(curves["binary_crossentropy"][-1])


def test_one_compiled_call_gives_every_value_of_the_table_and_sizes_do_not_retrace():
    from explorer import gradients

    requests = [("dice_loss", {"smooth": 0.5}), ("lovasz_hinge", {}),
                ("focal_loss", {"gamma": 1.0}), ("tversky_loss", {"alpha": 0.7, "beta": 0.3})]
    for size in (32, 48, 40):
        _, truth, pred = pair(size=size)
        together = gradients.loss_values(requests, truth, pred)
        alone = [gradients.loss_value(name, truth, pred, **kw) for name, kw in requests]
        assert together == pytest.approx(alone, rel=1e-6)
        if size == 32:
            traces = gradients.trace_count()
    assert gradients.trace_count() == traces  # numbers are arguments, sizes are None dims
    with pytest.raises(ValueError, match="alpha"):
        gradients.loss_values([("dice_loss", {"alpha": 1.0})], truth, pred)


# ------------------------------------------------------------------ how numbers read


@pytest.mark.parametrize("value, spec, text", [
    (float("nan"), ".4g", "undefined (0/0)"),
    (float("inf"), ".4g", "∞"),
    (-float("inf"), ".4g", "−∞"),
    (None, ".4g", "n/a"),
    (0.123456789, ".4g", "0.1235"),
    (0.123456789, ".6f", "0.123457"),
    (np.float32(0.5), ".4f", "0.5000"),
])
def test_number_text_names_the_odd_values(value, spec, text):
    assert analysis.number_text(value, spec) == text


@pytest.mark.parametrize("value, text", [
    (0.0, "0"), (6553.6, "6553.6"), (0.001, "0.001"), (1e-5, "10^{-5}"),
    (2.5e-7, r"2.5 \times 10^{-7}"), (1.23456e8, r"1.235 \times 10^{8}"),
])
def test_latex_number_uses_powers_of_ten_outside_the_plain_range(value, text):
    assert analysis.latex_number(value) == text


# ------------------------------------------------- the stage's sentences, checked


def _numbers_in(text: str) -> list[float]:
    import re
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*\.?\d*", text)]


def test_soft_hard_note_names_where_the_difference_comes_from():
    truth_labels = masks.shape_mask("circle", 128, radius=0.2)
    pred = masks.soften(masks.shift(truth_labels, 0, 4), 2, confidence=0.9, blur_sigma=1.0)
    truth = masks.to_batch(masks.one_hot(truth_labels, 2))
    pred = masks.to_batch(pred)
    settings = Settings()
    note = analysis.soft_hard_note(truth, pred, settings)
    soft = float(losses.dice_coefficient(truth, pred, **settings.dice_keywords()))
    hard = losses.hard_metrics(truth, pred)
    g, p = truth.astype(np.float64), pred.astype(np.float64)
    import re
    shown = re.search(r"Soft Dice ([\d.]+) against hard Dice ([\d.]+)", note).groups()
    off, fp = re.search(r"p adds up to ([\d,.]+) \(hard: ([\d,]+) false-positive", note).groups()
    short, fn = re.search(r"1 − p adds up to ([\d,.]+) \(hard: ([\d,]+) missed", note).groups()
    assert float(shown[0]) == pytest.approx(soft, abs=5e-4)
    assert float(shown[1]) == pytest.approx(float(hard["dice"][0]), abs=5e-4)
    assert float(off.replace(",", "")) == pytest.approx((p * (1 - g)).sum(), abs=0.05)
    assert int(fp.replace(",", "")) == int(hard["fp"].numpy().sum())
    assert float(short.replace(",", "")) == pytest.approx(((1 - p) * g).sum(), abs=0.05)
    assert int(fn.replace(",", "")) == int(hard["fn"].numpy().sum())
    assert soft < hard["dice"][0]  # the p = 0.1 on the background is what costs soft Dice


def test_soft_hard_note_is_silent_when_they_agree():
    truth_labels = masks.shape_mask("circle", 64, radius=0.2)
    hard_pred = masks.soften(masks.shift(truth_labels, 0, 3), 2, confidence=1.0, blur_sigma=0.0)
    truth = masks.to_batch(masks.one_hot(truth_labels, 2))
    assert analysis.soft_hard_note(truth, masks.to_batch(hard_pred), Settings(smooth=0.0)) == ""


@pytest.mark.parametrize("loss", ["dice_loss", "jaccard_loss", "tversky_loss",
                                  "generalized_dice_loss"])
def test_dice_family_gradient_wrt_p_takes_two_values_as_the_note_says(loss):
    from explorer import gradients
    rng = np.random.default_rng(0)
    truth_labels = masks.shape_mask("circle", 48, radius=0.25)
    truth = masks.to_batch(masks.one_hot(truth_labels, 2))
    fg = truth_labels > 0
    settings = Settings(loss=loss, alpha=0.3, beta=0.7)
    assert analysis.piecewise_constant(settings, "probabilities")
    for _ in range(3):  # whatever the prediction
        pred = rng.random(truth.shape).astype(np.float32)
        _, grad = gradients.loss_and_gradient(loss, truth, pred, **settings.keywords())
        grad = grad[0, ..., 0]
        for region in (grad[fg], grad[~fg]):
            assert np.ptp(region) <= 1e-4 * np.abs(region).max()
        note = analysis.piecewise_note(settings, "probabilities", grad, fg)
        import re
        on = float(re.search(r"two values \(([-\d.e+]+) on the truth", note).group(1))
        assert on == pytest.approx(float(grad[fg][0]), rel=0.01)
        assert "on the truth" in note and "off it" in note


@pytest.mark.parametrize("change, wrt", [
    ({"squared": True}, "probabilities"), ({}, "logits"),
    ({"loss": "binary_crossentropy"}, "probabilities"),
])
def test_no_two_value_note_where_the_gradient_depends_on_p(change, wrt):
    from explorer import gradients
    rng = np.random.default_rng(1)
    truth_labels = masks.shape_mask("circle", 48, radius=0.25)
    truth = masks.to_batch(masks.one_hot(truth_labels, 2))
    pred = rng.random(truth.shape).astype(np.float32)
    settings = Settings(**change)
    _, grad = gradients.loss_and_gradient(settings.loss_name(), truth, pred, wrt=wrt,
                                          **settings.keywords())
    on_truth = grad[0, ..., 0][truth_labels > 0]
    assert np.ptp(on_truth) > 1e-3 * np.abs(on_truth).max()  # really not two-valued
    assert analysis.piecewise_note(settings, wrt, grad[0, ..., 0], truth_labels > 0) == ""


def test_loss_range_bounds_are_the_worst_cases():
    from explorer import gradients
    g = np.ones((1, 8, 8, 1), np.float32)
    wrong = np.zeros_like(g)  # every pixel confidently wrong
    worst_bce = gradients.loss_value("binary_crossentropy", g, wrong)
    top = _numbers_in(analysis.loss_range(Settings(loss="binary_crossentropy")))[-2]
    assert top == pytest.approx(worst_bce, abs=0.05)
    worst_lovasz = gradients.loss_value("lovasz_hinge", g, wrong)  # fed the clipped logit
    assert _numbers_in(analysis.loss_range(Settings(loss="lovasz")))[1] == pytest.approx(
        worst_lovasz, abs=0.05)
    assert "0 (perfect) to 1" in analysis.loss_range(Settings(loss="tversky_loss"))
    assert gradients.loss_value("dice_loss", g, wrong, smooth=0.0) == pytest.approx(1.0)
    both = analysis.loss_range(Settings(loss="bce_dice_loss", bce_weight=0.5))
    assert _numbers_in(both)[1] == pytest.approx(0.5 * worst_bce + 1, abs=0.05)


def test_l1_intersection_on_a_soft_truth_is_not_called_two_valued():
    from explorer import gradients
    truth_labels = masks.shape_mask("circle", 48, radius=0.25)
    truth = masks.to_batch(0.1 + 0.8 * masks.one_hot(truth_labels, 2))  # label smoothing
    pred = np.random.default_rng(2).random(truth.shape).astype(np.float32)
    settings = Settings(soft_label=True)
    _, grad = gradients.loss_and_gradient("dice_loss", truth, pred, **settings.keywords())
    assert analysis.piecewise_note(settings, "probabilities", grad[0, ..., 0],
                                   truth_labels > 0) == ""
    hard_truth = masks.to_batch(masks.one_hot(truth_labels, 2))  # binary: two values again
    _, grad = gradients.loss_and_gradient("dice_loss", hard_truth, pred, **settings.keywords())
    assert "two values" in analysis.piecewise_note(settings, "probabilities", grad[0, ..., 0],
                                                   truth_labels > 0)


def test_empty_class_conventions_as_the_notes_list_them():
    empty = np.zeros((1, 8, 8, 1), np.float32)
    key, values = analysis.empty_conventions(empty, empty, Settings(smooth=0.0))
    assert key == "dice_loss"
    assert math.isnan(values["smooth"]) and math.isnan(values["nan"])
    assert values["zero"] == 0.0 and values["one"] == 1.0
    key, values = analysis.empty_conventions(empty, empty, Settings(loss="focal_loss"))
    assert key == "dice_loss"  # focal takes no `empty`: the notes speak of Dice
    key, _ = analysis.empty_conventions(empty, empty, Settings(loss="tversky_loss"))
    assert key == "tversky_loss"


def test_logits_contrast_is_what_the_sentence_says():
    contrast = analysis.logits_contrast(-30.0)
    value, grad = contrast["probabilities"]
    assert value == pytest.approx(-math.log(1e-7), rel=1e-6) and grad == 0.0  # the clip
    value, grad = contrast["logits"]
    assert value == pytest.approx(30.0, rel=1e-9)
    assert grad == pytest.approx(-1.0, abs=1e-9)  # sigmoid(-30) - 1


def test_from_logits_changes_nothing_within_the_clip_as_the_sentence_says():
    from explorer import gradients
    _, truth, pred = pair(confidence=1.0)
    for wrt in ("probabilities", "logits"):
        plain = gradients.loss_and_gradient("binary_crossentropy", truth, pred, wrt=wrt)
        logits = gradients.loss_and_gradient("binary_crossentropy", truth, pred, wrt=wrt,
                                             **Settings(loss="binary_crossentropy",
                                                        from_logits=True).keywords())
        assert logits[0] == pytest.approx(plain[0], rel=1e-5)
        np.testing.assert_allclose(logits[1], plain[1], rtol=1e-4, atol=1e-9)
