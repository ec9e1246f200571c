"""Odd-but-valid cases get defined values and a named reason; bad arguments raise
ValueError naming the argument."""

import math

import numpy as np
import pytest

from explorer import gradients, losses

EMPTY = np.zeros((1, 4, 4, 1), np.float32)


def _disk(size=8, radius=2.5):
    yy, xx = np.mgrid[:size, :size]
    return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2).astype(np.float32)[
        None, ..., None]


@pytest.mark.parametrize(
    "smooth, epsilon, expected, kind",
    [
        (1.0, 0.0, 1.0, "empty_perfect"),
        (1.0, 1.0, 0.5, "empty_perfect"),  # smooth / (smooth + epsilon)
        (0.0, 1e-7, 0.0, "empty_scores_zero"),
        (0.0, 0.0, math.nan, "undefined"),
    ],
)
def test_empty_truth_and_empty_prediction(smooth, epsilon, expected, kind):
    value = float(losses.dice_coefficient(EMPTY, EMPTY, smooth=smooth, epsilon=epsilon))
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(expected, abs=1e-7)
    (case,) = losses.degenerate_cases(EMPTY, EMPTY, smooth=smooth, epsilon=epsilon)
    assert case.kind == kind
    assert case.image == 0 and case.class_index == 0
    assert (math.isnan(case.value) and math.isnan(expected)) or case.value == pytest.approx(
        expected, abs=1e-7)


def test_undefined_reason_says_zero_over_zero():
    (case,) = losses.degenerate_cases(EMPTY, EMPTY, smooth=0.0, epsilon=0.0)
    assert "0/0" in case.message and "smooth = epsilon = 0" in case.message


def test_empty_truth_with_prediction_is_named():
    pred = _disk()
    (case,) = losses.degenerate_cases(np.zeros_like(pred), pred, smooth=1.0)
    assert case.kind == "empty_truth"
    # Dice = smooth / (P + smooth): every predicted pixel is a false positive
    assert case.value == pytest.approx(1.0 / (pred.sum() + 1.0), rel=1e-6)


def test_missed_object_is_named_empty_prediction():
    truth = _disk()
    (case,) = losses.degenerate_cases(truth, np.zeros_like(truth), smooth=1.0)
    assert case.kind == "empty_prediction"
    assert case.value == pytest.approx(1.0 / (truth.sum() + 1.0), rel=1e-6)


def test_ordinary_masks_have_no_degenerate_case():
    truth = _disk()
    assert losses.degenerate_cases(truth, np.clip(truth * 0.8 + 0.1, 0, 1)) == []


def test_whole_batch_hides_an_empty_image_that_per_image_reports():
    truth = np.concatenate([_disk(), np.zeros_like(_disk())])
    per_image = losses.degenerate_cases(truth, truth, smooth=0.0, epsilon=0.0, per_image=True)
    whole = losses.degenerate_cases(truth, truth, smooth=0.0, epsilon=0.0, per_image=False)
    assert [(c.image, c.kind) for c in per_image] == [(1, "undefined")]
    assert whole == []
    assert math.isnan(float(losses.dice_loss(truth, truth, smooth=0.0, per_image=True)))
    assert float(losses.dice_loss(truth, truth, smooth=0.0, per_image=False)) == pytest.approx(0.0)


def test_messages_name_images_as_the_page_does():
    truth = np.concatenate([_disk(), np.zeros_like(_disk())])
    plain, named = (losses.degenerate_cases(truth, truth, image_names=names)
                    for names in (None, ["image 1", "image 2"]))
    assert plain[0].message.startswith("image 1: scores 1")  # the index, 0-based
    assert named[0].message.startswith("image 2: scores 1") and named[0].image == 1


def test_excluded_background_that_is_zero_over_zero_does_not_poison_the_loss():
    # every pixel is class 1: class 0 is empty in truth and prediction (0/0 with smooth 0)
    truth = np.zeros((1, 4, 4, 2), np.float32)
    truth[..., 1] = 1
    assert math.isnan(float(losses.dice_loss(truth, truth, smooth=0.0)))
    assert float(losses.dice_loss(truth, truth, smooth=0.0, include_background=False)) == 0.0
    assert float(losses.dice_loss(truth, truth, smooth=0.0, class_weights=[0, 1])) == 0.0


def test_degenerate_gradients_are_finite_where_the_value_is_defined():
    truth = np.concatenate([_disk(), np.zeros_like(_disk())])
    pred = np.concatenate([_disk() * 0.9, np.zeros_like(_disk())])
    value, grad = gradients.loss_and_gradient("dice_loss", truth, pred, smooth=1.0)
    assert math.isfinite(value) and np.all(np.isfinite(grad))
    value, grad = gradients.loss_and_gradient("dice_loss", truth, pred, smooth=0.0)
    assert math.isnan(value)  # image 1 is 0/0: the value says so, the gradient stays finite
    assert np.all(np.isfinite(grad))


def test_hard_metrics_of_two_empty_masks_are_undefined():
    metrics = losses.hard_metrics(EMPTY, EMPTY)
    assert math.isnan(float(metrics["dice"][0])) and math.isnan(float(metrics["iou"][0]))
    assert int(metrics["tn"][0]) == 16 and int(metrics["tp"][0]) == 0


def test_lovasz_softmax_present_scores_zero_when_no_class_is_present():
    pred = np.full((1, 4, 4, 1), 0.3, np.float32)
    assert float(losses.lovasz_softmax(EMPTY, pred, classes="present")) == 0.0
    # "all" counts the absent class: every pixel's error 0.3 weighs in
    assert float(losses.lovasz_softmax(EMPTY, pred, classes="all")) == pytest.approx(0.3)


# ------------------------------------------------------------------------ bad arguments

TRUTH = _disk()
PRED = np.clip(TRUTH * 0.7 + 0.2, 0, 1)
FOUR = np.eye(4, dtype=np.float32)[np.arange(64).reshape(1, 8, 8) % 4]


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: losses.dice_loss(TRUTH, PRED, smooth=-1), "smooth"),
        (lambda: losses.dice_loss(TRUTH, PRED, epsilon=-1e-7), "epsilon"),
        (lambda: losses.dice_loss(TRUTH, PRED, smooth=math.inf), "smooth"),
        (lambda: losses.dice_loss(TRUTH, PRED, smooth="1"), "smooth"),
        (lambda: losses.dice_loss(FOUR, FOUR, class_weights=[1, 2]), "class_weights"),
        (lambda: losses.dice_loss(FOUR, FOUR, class_weights=[1, -1, 1, 1]), "class_weights"),
        (lambda: losses.dice_loss(FOUR, FOUR, class_weights=[0, 0, 0, 0]), "class_weights"),
        (lambda: losses.dice_loss(FOUR, FOUR, class_weights=[1, 0, 0, 0],
                                  include_background=False), "class_weights"),
        (lambda: losses.dice_loss(TRUTH, PRED[:, :4]), "same shape"),
        (lambda: losses.dice_loss(TRUTH[0, ..., 0], PRED[0, ..., 0]), "y_true"),
        (lambda: losses.dice_loss(TRUTH, PRED * 2), "y_pred"),
        (lambda: losses.dice_loss(TRUTH * 3, PRED), "y_true"),
        (lambda: losses.dice_loss(TRUTH, PRED * np.nan), "y_pred"),
        (lambda: losses.dice_loss(TRUTH, PRED, per_image="yes"), "per_image"),
        (lambda: losses.tversky_loss(TRUTH, PRED, alpha=-0.1), "alpha"),
        (lambda: losses.tversky_loss(TRUTH, PRED, gamma=0), "gamma"),
        (lambda: losses.focal_loss(TRUTH, PRED, alpha=1.5), "alpha"),
        (lambda: losses.focal_loss(FOUR, FOUR, alpha=[1, 2]), "alpha"),
        (lambda: losses.lovasz_softmax(FOUR, FOUR, classes="some"), "classes"),
        (lambda: losses.lovasz_hinge(FOUR, FOUR), "lovasz_hinge"),
        (lambda: losses.hard_metrics(TRUTH, PRED, threshold=1.5), "threshold"),
        (lambda: losses.bce_dice_loss(TRUTH, PRED, dice_weight=-1), "dice_weight"),
        (lambda: gradients.loss_and_gradient("dice", TRUTH, PRED), "loss_name"),
        (lambda: gradients.loss_and_gradient("dice_loss", TRUTH, PRED, wrt="x"), "wrt"),
        (lambda: gradients.loss_and_gradient("dice_loss", TRUTH, PRED, alpha=1), "alpha"),
        (lambda: gradients.loss_and_gradient("dice_loss", TRUTH, PRED * 2), "y_pred"),
        (lambda: losses.DiceLoss(smoth=1.0), "smoth"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_arguments_raise_value_error_naming_them(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_weights_may_leave_out_background():
    # C - 1 weights with include_background=False are the weights of classes 1..C-1
    pred = np.clip(FOUR * 0.6 + 0.1, 0, 1)
    short = float(losses.dice_loss(FOUR, pred, class_weights=[1, 2, 3], include_background=False))
    full = float(losses.dice_loss(FOUR, pred, class_weights=[9, 1, 2, 3],
                                  include_background=False))
    assert short == pytest.approx(full)


def test_single_channel_ignores_include_background():
    assert float(losses.dice_loss(TRUTH, PRED, include_background=False)) == pytest.approx(
        float(losses.dice_loss(TRUTH, PRED)))


# ------------------------------------------------------------- rejected combinations

SOFT_SQUARED = "soft_label=True .*can't be combined with squared=True.*use one of them"
SQUARED_TVERSKY = "squared=True needs alpha == beta.*alpha=2, beta=0.1"


@pytest.mark.parametrize(
    "call, message",
    [
        *[(lambda fn=fn: losses.LOSSES[fn](TRUTH, PRED, squared=True, soft_label=True),
           SOFT_SQUARED) for fn in ("dice_loss", "jaccard_loss", "tversky_loss",
                                    "generalized_dice_loss", "bce_dice_loss",
                                    "bce_log_dice_loss")],
        (lambda: losses.dice_coefficient(TRUTH, PRED, squared=True, soft_label=True),
         SOFT_SQUARED),
        (lambda: losses.per_class_dice(TRUTH, PRED, squared=True, soft_label=True),
         SOFT_SQUARED),
        (lambda: losses.degenerate_cases(EMPTY, EMPTY, squared=True, soft_label=True),
         SOFT_SQUARED),
        (lambda: losses.DiceLoss(squared=True, soft_label=True), SOFT_SQUARED),
        (lambda: gradients.loss_and_gradient("jaccard_loss", TRUTH, PRED, squared=True,
                                             soft_label=True), SOFT_SQUARED),
        (lambda: gradients.loss_value("dice_loss", TRUTH, PRED, squared=True,
                                      soft_label=True), SOFT_SQUARED),
        (lambda: losses.tversky_loss(TRUTH, PRED, alpha=2.0, beta=0.1, squared=True),
         SQUARED_TVERSKY),
        (lambda: losses.TverskyLoss(alpha=2.0, beta=0.1, squared=True), SQUARED_TVERSKY),
        (lambda: gradients.loss_and_gradient("tversky_loss", TRUTH, PRED, wrt="logits",
                                             alpha=2.0, beta=0.1, squared=True),
         SQUARED_TVERSKY),
    ],
)
def test_settings_that_leave_the_range_together_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("a", [0.0, 0.1, 0.5, 3.0])
def test_squared_tversky_with_alpha_equal_beta_stays_in_range(a):
    # one pixel g = 1, p = 1/2: I = 1/2, sum (p - g)^2 = 1/4, so TI = (1/2) / (1/2 + a/4)
    g, p = np.ones((1, 1, 1, 1)), np.full((1, 1, 1, 1), 0.5)
    value = float(losses.tversky_loss(g, p, alpha=a, beta=a, smooth=0.0, squared=True))
    assert value == pytest.approx(1 - 0.5 / (0.5 + a / 4), rel=1e-12)
    assert 0.0 <= value <= 1.0


def test_every_caller_checks_keywords_with_the_same_sentence():
    """Losses' Keras classes, gradients, code export and the conventions translator all
    go through losses.check_keywords: one wording for one mistake."""
    from explorer import codegen, conventions

    expected = "dice_loss got an unknown keyword 'gama'; accepted: "
    g = np.zeros((1, 4, 4, 1), np.float32)
    calls = [
        lambda: losses.DiceLoss(gama=2.0),
        lambda: gradients.loss_and_gradient("dice_loss", g, g, gama=2.0),
        lambda: codegen.snippet("tensorflow", loss="dice_loss", gama=2.0),
        lambda: conventions.translate(g, g, ours={"gama": 2.0}),
    ]
    for call in calls:
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value).startswith(expected), str(err.value)
        assert "smooth" in str(err.value)


def test_check_keywords_returns_the_defaults_updated():
    full = losses.check_keywords("tversky_loss", {"alpha": 0.3})
    assert full["alpha"] == 0.3 and full["beta"] == 0.5 and full["smooth"] == 1.0
    assert set(full) == set(losses.loss_keywords(losses.tversky_loss))
