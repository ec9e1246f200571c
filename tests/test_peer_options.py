"""The options the peers' losses take (issue 16): ``from_logits``, ``class_weights`` and
``pos_weight`` of cross-entropy and focal, ``weight_type`` of generalized Dice, the ``empty``
conventions of the region losses, ``ignore_index``, and ``sample_weight`` through the Keras
classes.

The hand-derived numbers come from the peers' documented formulas, not their code: torch's
``BCEWithLogitsLoss(pos_weight)`` (``-[pw g log s(z) + (1 - g) log(1 - s(z))]``, mean) and
``CrossEntropyLoss(weight)`` (``sum w[y] l / sum w[y]``, ignore_index pixels left out),
MONAI's ``GeneralizedDiceLoss`` ``w_type`` (``1/G^2``, ``1/G``, 1; loss 0 when no class is
present), smp's "a class absent from the truth gets loss 0", Keras 3's ``Dice`` (loss 1 on an
empty truth) and Keras' ``Loss`` reduction of ``sample_weight``. The float64 oracle
(``tests/reference.py``) covers the rest; gradients are checked against finite differences.
"""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from explorer import gradients, losses
from tests import reference as ref

L = math.log


def arr(values, shape, dtype=np.float64):
    return np.asarray(values, dtype).reshape(shape)


def logit(p):
    p = np.asarray(p, np.float64)
    return np.log(p / (1 - p))


# ------------------------------------------------------- pos_weight (torch BCEWithLogits)

G4 = arr([1, 0, 1, 0], (1, 2, 2, 1))
P4 = arr([0.8, 0.4, 0.5, 0.1], (1, 2, 2, 1))


def test_pos_weight_multiplies_the_positive_term_1x2x2x1():
    # -[3 g log p + (1 - g) log(1 - p)], mean over the 4 pixels
    expected = (3 * -L(0.8) - L(0.6) + 3 * -L(0.5) - L(0.9)) / 4
    assert float(losses.binary_crossentropy(G4, P4, pos_weight=3.0)) == pytest.approx(expected)
    from_logits = losses.binary_crossentropy(G4, logit(P4), pos_weight=3.0, from_logits=True)
    assert float(from_logits) == pytest.approx(expected, rel=1e-12)
    assert float(losses.binary_crossentropy(G4, P4, pos_weight=1.0)) == pytest.approx(
        float(losses.binary_crossentropy(G4, P4)), rel=1e-12)


def test_pos_weight_one_per_channel():
    g = arr([[1, 0], [0, 1]], (1, 1, 2, 2))
    p = arr([[0.8, 0.3], [0.4, 0.6]], (1, 1, 2, 2))
    # element (pixel, channel): -2 log .8, -log .7, -log .6, -5 log .6; mean of the 4
    expected = (2 * -L(0.8) - L(0.7) - L(0.6) + 5 * -L(0.6)) / 4
    value = losses.binary_crossentropy(g, p, pos_weight=[2.0, 5.0])
    assert float(value) == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------- class_weights (torch CrossEntropyLoss)


def test_bce_class_weights_one_channel_is_two_class_cross_entropy():
    # w = [background 1, foreground 3]: sum w[y] l / sum w[y] = (3 l0 + l1 + 3 l2 + l3) / 8
    expected = (3 * -L(0.8) + 1 * -L(0.6) + 3 * -L(0.5) + 1 * -L(0.9)) / (3 + 1 + 3 + 1)
    value = losses.binary_crossentropy(G4, P4, class_weights=[1.0, 3.0])
    assert float(value) == pytest.approx(expected, rel=1e-12)
    # torch CrossEntropyLoss(weight=[1, 3]) on the two-class logits [0, z] is the same number
    two = np.concatenate([np.zeros_like(P4), logit(P4)], -1)
    labels = G4[..., 0].astype(int)
    log_softmax = two - np.log(np.exp(two).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_softmax, labels[..., None], -1)[..., 0]
    w = np.array([1.0, 3.0])[labels]
    assert expected == pytest.approx(float((w * nll).sum() / w.sum()), rel=1e-12)


G_TWO = np.eye(2)[np.array([[[0, 1, 1]]])]  # 1 x 1 x 3 x 2: classes 0, 1, 1
P_TWO = arr([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8]], (1, 1, 3, 2))


def test_categorical_cross_entropy_class_weights_two_classes():
    # focal with gamma = 0 is categorical CE: (1 (-log .7) + 3 (-log .6) + 3 (-log .8)) / 7
    expected = (-L(0.7) + 3 * -L(0.6) + 3 * -L(0.8)) / 7
    value = losses.focal_loss(G_TWO, P_TWO, gamma=0.0, class_weights=[1.0, 3.0])
    assert float(value) == pytest.approx(expected, rel=1e-12)
    z = np.log(P_TWO)  # softmax(log p) = p
    value = losses.focal_loss(G_TWO, z, gamma=0.0, class_weights=[1.0, 3.0], from_logits=True)
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_focal_class_weights_two_classes_gamma_2():
    terms = [0.3 ** 2 * -L(0.7), 0.4 ** 2 * -L(0.6), 0.2 ** 2 * -L(0.8)]
    expected = (terms[0] + 3 * terms[1] + 3 * terms[2]) / 7
    value = losses.focal_loss(G_TWO, P_TWO, gamma=2.0, class_weights=[1.0, 3.0])
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_bce_class_weights_several_channels_weigh_each_pixel_by_its_class():
    g, p = G_TWO[:, :, :2], P_TWO[:, :, :2]
    # pixel 0 (class 0): (-log .7 - log .7) / 2; pixel 1 (class 1): (-log .6 - log .6) / 2
    expected = (1 * -L(0.7) + 3 * -L(0.6)) / (1 + 3)
    value = losses.binary_crossentropy(g, p, class_weights=[1.0, 3.0])
    assert float(value) == pytest.approx(expected, rel=1e-12)


# -------------------------------------------------------------------------- ignore_index

G_IGN = arr([1, 255, 0, 1], (1, 2, 2, 1))
P_IGN = arr([0.9, 0.7, 0.2, 0.6], (1, 2, 2, 1))


@pytest.mark.parametrize("loss, expected", [
    # I = .9 + .6, P = .9 + .2 + .6, G = 2: the ignored pixel is in no sum
    ("dice_loss", 1 - (2 * 1.5 + 1) / (1.7 + 2 + 1)),
    ("jaccard_loss", 1 - (1.5 + 1) / (1.7 + 2 - 1.5 + 1)),
    ("binary_crossentropy", (-L(0.9) - L(0.8) - L(0.6)) / 3),  # 3 counted pixels
    ("focal_loss", (0.1 ** 2 * -L(0.9) + 0.2 ** 2 * -L(0.8) + 0.4 ** 2 * -L(0.6)) / 3),
])
def test_ignore_index_leaves_a_pixel_out_of_every_sum_and_count(loss, expected):
    assert float(losses.LOSSES[loss](G_IGN, P_IGN, ignore_index=255)) == pytest.approx(
        expected, rel=1e-12)


@pytest.mark.parametrize("loss, keywords", [
    ("lovasz_hinge", {"from_logits": False}), ("lovasz_hinge", {"per_image": False}),
    ("lovasz_softmax", {}), ("lovasz_softmax", {"classes": "all", "per_image": True}),
    ("generalized_dice_loss", {}), ("tversky_loss", {"alpha": 0.3, "beta": 0.7}),
])
def test_ignored_pixels_count_as_if_they_were_not_there(loss, keywords):
    g = arr([1, 255, 0, 1, 0, 1], (1, 1, 6, 1))
    p = arr([0.9, 0.7, 0.2, 0.6, 0.45, 0.3], (1, 1, 6, 1))
    kept = [0, 2, 3, 4, 5]
    x = logit(p) if losses.takes_logits(loss, keywords) else p
    got = losses.LOSSES[loss](g, x, ignore_index=255, **keywords)
    alone = losses.LOSSES[loss](g[:, :, kept], x[:, :, kept], **keywords)
    assert float(got) == pytest.approx(float(alone), rel=1e-12)


def test_ignore_index_with_class_weights_is_torch_cross_entropy():
    g = np.concatenate([G_TWO, np.full((1, 1, 1, 2), -1.0)], axis=2)  # a 4th pixel, ignored
    p = np.concatenate([P_TWO, arr([0.5, 0.5], (1, 1, 1, 2))], axis=2)
    expected = (-L(0.7) + 3 * -L(0.6) + 3 * -L(0.8)) / 7  # as without the 4th pixel
    value = losses.focal_loss(g, p, gamma=0.0, class_weights=[1.0, 3.0], ignore_index=-1)
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_everything_ignored_is_nan_for_cross_entropy_as_torch_and_smooth_for_dice():
    g = np.full((1, 2, 2, 1), 255.0)
    assert math.isnan(float(losses.binary_crossentropy(g, P4, ignore_index=255)))
    assert float(losses.dice_loss(g, P4, ignore_index=255)) == 0.0  # empty vs empty, smooth 1


def test_a_truth_outside_0_1_needs_its_ignore_index():
    with pytest.raises(ValueError, match=r"y_true must hold labels .* in \[0, 1\], got values"):
        losses.dice_loss(G_IGN, P_IGN)
    with pytest.raises(ValueError, match=r"\(or ignore_index = -1\)"):
        losses.dice_loss(G_IGN, P_IGN, ignore_index=-1)


def test_ignore_index_reaches_the_gradient_view():
    value, grad = gradients.loss_and_gradient("dice_loss", G_IGN, P_IGN, ignore_index=255)
    assert value == pytest.approx(1 - 4 / 4.7, rel=1e-12)
    assert grad[0, 0, 1, 0] == 0.0 and np.all(grad.reshape(-1)[[0, 2, 3]] != 0)


# ---------------------------------------------------------------- empty-class conventions

# image 0: empty truth, 0.2 predicted at one pixel; image 1: truth [1, 1, 0, 0], p [.5, .5, 0, 0]
G_EMPTY = arr([[0, 0, 0, 0], [1, 1, 0, 0]], (2, 2, 2, 1))
P_EMPTY = arr([[0.2, 0, 0, 0], [0.5, 0.5, 0, 0]], (2, 2, 2, 1))
# smooth 1. Dice: image 0 1 - 1/1.2 = 1/6, image 1 1 - 3/4 = 1/4.
# Jaccard: 1/6 and 1 - 2/3 = 1/3. Tversky(.3, .7): 1 - 1/1.06, 1 - 2/2.7.
DICE, JACCARD, TVERSKY = (1 / 6, 1 / 4), (1 / 6, 1 / 3), (1 - 1 / 1.06, 1 - 2 / 2.7)


@pytest.mark.parametrize("loss, keywords, image_losses", [
    ("dice_loss", {}, DICE), ("jaccard_loss", {}, JACCARD),
    ("tversky_loss", {"alpha": 0.3, "beta": 0.7}, TVERSKY),
])
@pytest.mark.parametrize("empty", losses.EMPTY_CONVENTIONS)
def test_the_empty_conventions_on_an_empty_image(loss, keywords, image_losses, empty):
    first, second = image_losses
    expected = {"smooth": (first + second) / 2,  # ours: smooth decides
                "zero": (0 + second) / 2,  # smp: absent class loss 0, still counted
                "one": (1 + second) / 2,  # Keras 3 Dice: an empty truth is loss 1
                "nan": math.nan,
                "skip": second}[empty]  # image 0 has no class left: out of the mean
    value = float(losses.LOSSES[loss](G_EMPTY, P_EMPTY, empty=empty, **keywords))
    assert value == pytest.approx(expected, rel=1e-12, nan_ok=True)


# one image, three classes, class 2 absent from the truth (it is predicted at 0.1 everywhere)
G_ABSENT = np.eye(3)[np.array([[[0, 1], [1, 0]]])]
P_ABSENT = arr([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1]],
               (1, 2, 2, 3))
# smooth 0, whole batch: class 0 I = 1.3, P = 1.6, G = 2; class 1 I = 1.5, P = 2, G = 2;
# class 2: I = 0, P = .4, G = 0 -> Dice 0
C0, C1 = 1 - 2.6 / 3.6, 1 - 3.0 / 4.0


@pytest.mark.parametrize("empty, expected", [
    ("smooth", (C0 + C1 + 1) / 3), ("zero", (C0 + C1 + 0) / 3), ("one", (C0 + C1 + 1) / 3),
    ("nan", math.nan), ("skip", (C0 + C1) / 2),
])
def test_the_empty_conventions_on_an_absent_class_over_the_batch(empty, expected):
    value = losses.dice_loss(G_ABSENT, P_ABSENT, smooth=0.0, per_image=False, empty=empty)
    assert float(value) == pytest.approx(expected, rel=1e-12, nan_ok=True)


def test_empty_zero_is_smp_and_a_score_of_one_in_the_coefficient():
    zero = losses.dice_coefficient(G_ABSENT, P_ABSENT, smooth=0.0, per_image=False, empty="zero")
    assert float(zero) == pytest.approx(((1 - C0) + (1 - C1) + 1) / 3, rel=1e-12)
    log_dice = losses.bce_log_dice_loss(G_ABSENT, P_ABSENT, smooth=0.0, per_image=False,
                                        empty="zero")
    bce = float(losses.binary_crossentropy(G_ABSENT, P_ABSENT))
    assert float(log_dice) == pytest.approx(bce - L(float(zero)), rel=1e-12)


@pytest.mark.parametrize("empty", losses.EMPTY_CONVENTIONS)
def test_generalized_dice_no_class_present_conventions(empty):
    s = 1e-5
    first = 1 - s / (0.2 + s)  # ours: every class weighs 1 where none is present
    second = 1 - (2 * 1 / 4 + s) / ((1 + 2) / 4 + s)  # w = 1 / 2^2
    expected = {"smooth": (first + second) / 2, "zero": second / 2,  # MONAI: loss 0 there
                "one": (1 + second) / 2, "nan": math.nan, "skip": second}[empty]
    value = float(losses.generalized_dice_loss(G_EMPTY, P_EMPTY, empty=empty))
    assert value == pytest.approx(expected, rel=1e-9, nan_ok=True)


def test_the_default_convention_is_todays_behaviour():
    for loss in ("dice_loss", "jaccard_loss", "tversky_loss", "generalized_dice_loss",
                 "bce_dice_loss", "bce_log_dice_loss"):
        assert losses.loss_keywords(losses.LOSSES[loss])["empty"] == "smooth"
        for g, p in ((G_EMPTY, P_EMPTY), (G_ABSENT, P_ABSENT)):
            assert float(losses.LOSSES[loss](g, p, empty="smooth")) == float(
                losses.LOSSES[loss](g, p))


# -------------------------------------------------------------------- weight_type (MONAI)

# one image, classes 0 0 0 0 1; smooth = epsilon = 0. G = [4, 1], I = [3.6, .8], P = [3.8, 1.2]
G_GDL = np.eye(2)[np.array([[[0, 0, 0, 0, 1]]])]
P1 = np.array([0.1, 0.1, 0.2, 0.0, 0.8])
P_GDL = np.stack([1 - P1, P1], -1).reshape(1, 1, 5, 2)


@pytest.mark.parametrize("weight_type, expected", [
    ("square", 1 - 2 * (3.6 / 16 + 0.8) / ((3.8 + 4) / 16 + (1.2 + 1))),
    ("simple", 1 - 2 * (3.6 / 4 + 0.8) / ((3.8 + 4) / 4 + (1.2 + 1))),
    ("uniform", 1 - 2 * (3.6 + 0.8) / ((3.8 + 4) + (1.2 + 1))),  # = 0.12
])
def test_generalized_dice_weight_types(weight_type, expected):
    value = losses.generalized_dice_loss(G_GDL, P_GDL, smooth=0.0, weight_type=weight_type)
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_uniform_weights_are_the_classes_pooled():
    value = losses.generalized_dice_loss(G_GDL, P_GDL, smooth=0.0, weight_type="uniform")
    assert float(value) == pytest.approx(0.12, rel=1e-12)
    pooled = losses.dice_loss(G_GDL.reshape(1, 1, 10, 1), P_GDL.reshape(1, 1, 10, 1),
                              smooth=0.0)
    assert float(value) == pytest.approx(float(pooled), rel=1e-12)


# ------------------------------------------------------------------------- from_logits


def test_bce_from_logits_is_exact_where_clipped_probabilities_are_not():
    g = arr([1, 1, 0], (1, 1, 3, 1))
    z = arr([40.0, -40.0, 0.0], (1, 1, 3, 1))
    # softplus(-z) for g = 1, softplus(z) for g = 0: log1p(e^-40), 40 + log1p(e^-40), log 2
    expected = (math.log1p(math.exp(-40)) + 40 + math.log1p(math.exp(-40)) + L(2)) / 3
    assert float(losses.binary_crossentropy(g, z, from_logits=True)) == pytest.approx(
        expected, rel=1e-14)
    clipped = float(losses.binary_crossentropy(g, 1 / (1 + np.exp(-z))))
    assert clipped == pytest.approx((-L(1 - 1e-7) - L(1e-7) + L(2)) / 3, rel=1e-6)


def test_softmax_cross_entropy_from_logits():
    g = arr([0, 1], (1, 1, 1, 2))
    z = arr([0.0, L(3.0)], (1, 1, 1, 2))  # p = [1/4, 3/4]
    assert float(losses.focal_loss(g, z, gamma=0.0, from_logits=True)) == pytest.approx(
        -L(0.75), rel=1e-14)
    far = arr([0.0, -100.0], (1, 1, 1, 2))  # p(true) = e^-100 / (1 + e^-100)
    assert float(losses.focal_loss(g, far, gamma=0.0, from_logits=True)) == pytest.approx(
        100 + math.log1p(math.exp(-100)), rel=1e-14)
    # two channels of BCE: log(1 - p_c) from the other class's logit, no clip
    assert float(losses.binary_crossentropy(g, far, from_logits=True)) == pytest.approx(
        100 + math.log1p(math.exp(-100)), rel=1e-14)


def test_region_losses_from_logits_take_sigmoid_or_softmax():
    g = arr([1, 0], (1, 1, 2, 1))
    z = np.zeros((1, 1, 2, 1))  # p = 1/2: Dice (2 * .5 + 1) / (1 + 1 + 1) = 2/3
    assert float(losses.dice_loss(g, z, from_logits=True)) == pytest.approx(1 / 3, rel=1e-14)
    z3 = np.log(P_ABSENT)
    assert float(losses.dice_loss(G_ABSENT, z3, from_logits=True, smooth=0.0,
                                  per_image=False)) == pytest.approx((C0 + C1 + 1) / 3, rel=1e-12)


def test_lovasz_hinge_from_logits_keyword():
    g = arr([1, 0, 1, 0, 1], (1, 1, 5, 1))
    p = arr([0.9, 0.7, 0.2, 0.4, 0.55], (1, 1, 5, 1))
    assert losses.loss_keywords(losses.lovasz_hinge)["from_logits"] is True
    assert losses.takes_logits("lovasz_hinge") and not losses.takes_logits("dice_loss")
    assert losses.takes_logits("dice_loss", {"from_logits": True})
    assert float(losses.lovasz_hinge(g, p, from_logits=False)) == pytest.approx(
        float(losses.lovasz_hinge(g, logit(p))), rel=1e-12)


# the losses of issue 16 (a loss added later should take both too)
ISSUE_16_LOSSES = ("dice_loss", "jaccard_loss", "tversky_loss", "generalized_dice_loss",
                   "binary_crossentropy", "bce_dice_loss", "bce_log_dice_loss", "focal_loss",
                   "lovasz_hinge", "lovasz_softmax")


@pytest.mark.parametrize("loss", ISSUE_16_LOSSES)
def test_every_loss_takes_from_logits_and_ignore_index(loss):
    keywords = losses.loss_keywords(losses.LOSSES[loss])
    assert "from_logits" in keywords and "ignore_index" in keywords
    assert keywords["ignore_index"] is None


# ----------------------------------------------------------------------- the rules


@pytest.mark.parametrize("loss, keywords, message", [
    ("dice_loss", {"from_logits": "yes"}, "from_logits must be True or False"),
    ("binary_crossentropy", {"pos_weight": -1.0}, "pos_weight must be a finite number >= 0"),
    ("binary_crossentropy", {"pos_weight": [[1.0]]}, "pos_weight must be one number >= 0 or a 1-D"),
    ("binary_crossentropy", {"pos_weight": [1.0, -2.0]}, "pos_weight must be finite and >= 0"),
    ("generalized_dice_loss", {"weight_type": "cube"},
     "weight_type must be one of 'square', 'simple', 'uniform', got 'cube'"),
    ("dice_loss", {"empty": "maybe"},
     "empty must be one of 'smooth', 'zero', 'one', 'nan', 'skip', got 'maybe'"),
    ("bce_dice_loss", {"empty": None}, "empty must be one of"),
    ("focal_loss", {"ignore_index": 0.5}, "ignore_index must be a truth value outside"),
    ("focal_loss", {"ignore_index": 1}, "ignore_index must be a truth value outside"),
    ("lovasz_hinge", {"ignore_index": True}, "ignore_index must be None or one finite number"),
    ("lovasz_softmax", {"ignore_index": float("nan")}, "ignore_index must be None or one"),
    ("focal_loss", {"class_weights": [1.0, -1.0]}, "class_weights must be finite and >= 0"),
    ("dice_loss", {"pos_weight": 2.0}, "unknown keyword 'pos_weight'"),
    ("dice_loss", {"weight_type": "simple"}, "unknown keyword 'weight_type'"),
    ("binary_crossentropy", {"empty": "zero"}, "unknown keyword 'empty'"),
])
def test_each_new_keyword_has_a_sentence_error(loss, keywords, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        losses.check_keywords(loss, keywords)
    with pytest.raises(ValueError, match=next(iter(keywords))):
        losses.LOSS_CLASSES[loss](**keywords)


@pytest.mark.parametrize("call, message", [
    (lambda: losses.binary_crossentropy(G4, P4, class_weights=[1.0, 2.0, 3.0]),
     r"class_weights must have 2 values for one channel: \[background, foreground\], got 3"),
    (lambda: losses.focal_loss(G_ABSENT, P_ABSENT, class_weights=[1.0, 2.0]),
     "class_weights must have 3 values, one per channel, got 2"),
    (lambda: losses.binary_crossentropy(G_ABSENT, P_ABSENT, pos_weight=[1.0, 2.0]),
     r"pos_weight must be one number or one per channel \(3\), got 2 values"),
])
def test_weights_that_do_not_fit_the_channels_say_so(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------- the oracle, random cases


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _data():
    rng = np.random.default_rng(16)
    out = {}
    g = (rng.random((3, 6, 7, 1)) < 0.4).astype(np.float64)
    g[1] = 0.0  # an empty image
    z = rng.normal(0, 1.5, g.shape) + 1.5 * (2 * g - 1)
    out["bin"] = (g, z)
    labels = rng.integers(0, 3, (3, 5, 6))
    labels[0][labels[0] == 2] = 1  # class 2 absent from image 0
    g3 = np.eye(3)[labels]
    out["c3"] = (g3, rng.normal(0, 1.5, g3.shape) + 2 * g3)
    labels_absent = labels.copy()
    labels_absent[labels_absent == 2] = 0  # class 2 absent from the batch
    g3a = np.eye(3)[labels_absent]
    out["c3_absent"] = (g3a, out["c3"][1])
    marked = rng.random((3, 6, 7)) < 0.15
    gi = g.copy()
    gi[marked] = 255.0
    out["bin_ignore"] = (gi, z)
    marked3 = rng.random((3, 5, 6)) < 0.15
    g3i = g3.copy()
    g3i[marked3] = -1.0
    out["c3_ignore"] = (g3i, out["c3"][1])
    return out


DATA = _data()
ORACLE_CASES = [
    ("dice_loss", "bin", {"from_logits": True}),
    ("dice_loss", "c3", {"from_logits": True, "per_image": False, "squared": True}),
    ("dice_loss", "bin_ignore", {"ignore_index": 255}),
    ("dice_loss", "c3_ignore", {"ignore_index": -1, "class_weights": [1.0, 2.0, 3.0]}),
    ("jaccard_loss", "c3_ignore", {"ignore_index": -1, "from_logits": True, "soft_label": True}),
    ("tversky_loss", "bin_ignore", {"ignore_index": 255, "alpha": 0.3, "beta": 0.7,
                                    "gamma": 1.5, "from_logits": True}),
    ("generalized_dice_loss", "c3_ignore", {"ignore_index": -1, "weight_type": "simple"}),
    ("generalized_dice_loss", "c3", {"from_logits": True, "weight_type": "uniform",
                                     "per_image": False}),
    ("binary_crossentropy", "bin", {"from_logits": True}),
    ("binary_crossentropy", "c3", {"from_logits": True}),
    ("binary_crossentropy", "bin", {"pos_weight": 2.5, "class_weights": [1.0, 4.0]}),
    ("binary_crossentropy", "c3_ignore", {"ignore_index": -1, "pos_weight": [1.0, 2.0, 0.5],
                                          "class_weights": [0.5, 1.0, 2.0]}),
    ("binary_crossentropy", "bin_ignore", {"ignore_index": 255, "from_logits": True}),
    ("bce_dice_loss", "bin_ignore", {"ignore_index": 255, "from_logits": True, "empty": "zero"}),
    ("bce_log_dice_loss", "c3_ignore", {"ignore_index": -1, "from_logits": True,
                                        "empty": "skip"}),
    ("focal_loss", "bin", {"from_logits": True, "alpha": 0.25, "class_weights": [1.0, 3.0]}),
    ("focal_loss", "c3", {"from_logits": True, "alpha": [0.2, 0.3, 0.5], "gamma": 1.5}),
    ("focal_loss", "c3_ignore", {"ignore_index": -1, "class_weights": [1.0, 2.0, 3.0]}),
    ("lovasz_hinge", "bin_ignore", {"ignore_index": 255}),
    ("lovasz_hinge", "bin_ignore", {"ignore_index": 255, "per_image": False}),
    ("lovasz_softmax", "c3_ignore", {"ignore_index": -1, "from_logits": True}),
    ("lovasz_softmax", "c3_ignore", {"ignore_index": -1, "classes": "all", "per_image": True}),
] + [
    (loss, data, {"empty": empty, "per_image": per_image, **extra})
    for loss, data, extra in [("dice_loss", "c3", {}), ("dice_loss", "c3_absent", {}),
                              ("jaccard_loss", "c3_absent", {"normalize_weights": False}),
                              ("tversky_loss", "c3_absent",
                               {"gamma": 2.0, "class_weights": [0.0, 1.0, 2.0]}),
                              ("generalized_dice_loss", "bin", {}),
                              ("bce_dice_loss", "c3_absent", {"include_background": False})]
    for empty in losses.EMPTY_CONVENTIONS for per_image in (True, False)
]


def _arguments(loss, data, keywords):
    g, z = DATA[data]
    if keywords.get("from_logits", loss == "lovasz_hinge"):
        return g, z
    if loss == "lovasz_hinge":
        return g, _sigmoid(z)
    return g, (_sigmoid(z) if z.shape[-1] == 1 else _softmax(z))


@pytest.mark.parametrize("loss, data, keywords", ORACLE_CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(ORACLE_CASES)])
def test_new_keywords_match_the_oracle(loss, data, keywords):
    g, x = _arguments(loss, data, keywords)
    expected = float(getattr(ref, loss)(g, x, **keywords))
    got64 = float(losses.LOSSES[loss](g, x, **keywords))
    assert got64 == pytest.approx(expected, rel=1e-10, abs=1e-12, nan_ok=True)
    got32 = float(losses.LOSSES[loss](g.astype(np.float32), x.astype(np.float32), **keywords))
    assert got32 == pytest.approx(expected, rel=1e-5, abs=1e-6, nan_ok=True)


def test_the_empty_cases_above_have_teeth():
    g, z = DATA["c3_absent"]
    p = _softmax(z)
    values = {e: float(losses.dice_loss(g, p, empty=e, per_image=False))
              for e in losses.EMPTY_CONVENTIONS}
    assert len({round(v, 9) for e, v in values.items() if e != "nan"}) == 4
    assert math.isnan(values["nan"])


# --------------------------------------------------------------- gradients (float64, FD)

FD_CASES = [
    ("dice_loss", "bin", {"from_logits": True}),
    ("dice_loss", "c3_ignore", {"ignore_index": -1, "from_logits": True}),
    ("dice_loss", "c3_absent", {"empty": "skip", "class_weights": [1.0, 2.0, 0.5]}),
    ("jaccard_loss", "c3_absent", {"empty": "zero", "per_image": False}),
    ("tversky_loss", "c3_absent", {"empty": "one", "alpha": 0.3, "beta": 0.7, "gamma": 2.0}),
    ("generalized_dice_loss", "c3", {"weight_type": "simple", "from_logits": True}),
    ("generalized_dice_loss", "bin", {"weight_type": "uniform", "empty": "skip"}),
    ("binary_crossentropy", "bin", {"from_logits": True, "pos_weight": 2.0}),
    ("binary_crossentropy", "c3", {"from_logits": True, "class_weights": [1.0, 2.0, 0.5]}),
    ("binary_crossentropy", "c3_ignore", {"ignore_index": -1, "pos_weight": [1.0, 3.0, 0.5]}),
    ("bce_dice_loss", "bin_ignore", {"ignore_index": 255, "from_logits": True, "empty": "zero"}),
    ("bce_log_dice_loss", "c3", {"from_logits": True, "empty": "skip"}),
    ("focal_loss", "bin", {"from_logits": True, "alpha": 0.25, "class_weights": [1.0, 3.0]}),
    ("focal_loss", "c3_ignore", {"from_logits": True, "ignore_index": -1, "gamma": 1.5,
                                 "class_weights": [1.0, 2.0, 3.0]}),
    ("lovasz_softmax", "c3", {"from_logits": True, "per_image": True}),
]


def _tape_gradient(loss, g, x, keywords):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = losses.LOSSES[loss](g, x, **keywords)
    return float(value), tape.gradient(value, x).numpy()


@pytest.mark.parametrize("loss, data, keywords", FD_CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(FD_CASES)])
def test_gradients_of_new_keywords_match_central_differences(loss, data, keywords):
    g, x = _arguments(loss, data, keywords)
    value, grad = _tape_gradient(loss, g, x, keywords)
    assert np.all(np.isfinite(grad)) and math.isfinite(value)
    rng = np.random.default_rng(3)
    h = 1e-6
    for flat in rng.choice(x.size, size=8, replace=False):
        idx = np.unravel_index(flat, x.shape)
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        fd = (float(losses.LOSSES[loss](g, up, **keywords))
              - float(losses.LOSSES[loss](g, down, **keywords))) / (2 * h)
        assert grad[idx] == pytest.approx(fd, rel=1e-5, abs=1e-8), idx


def test_lovasz_hinge_ignore_gradient_matches_central_differences():
    from tests.test_gradients import _make_lovasz_hinge_inputs

    g, p = _make_lovasz_hinge_inputs((2, 4, 5, 1), seed=4)
    g = g.copy()
    g[0, 1, 2, 0] = g[1, 3, 0, 0] = 255.0
    z = logit(p)
    value, grad = _tape_gradient("lovasz_hinge", g, z, {"ignore_index": 255})
    assert grad[0, 1, 2, 0] == 0.0 and grad[1, 3, 0, 0] == 0.0
    for idx in [(0, 0, 0, 0), (0, 2, 3, 0), (1, 1, 1, 0), (1, 3, 4, 0)]:
        up, down = z.copy(), z.copy()
        up[idx] += 1e-6
        down[idx] -= 1e-6
        fd = (float(losses.lovasz_hinge(g, up, ignore_index=255))
              - float(losses.lovasz_hinge(g, down, ignore_index=255))) / 2e-6
        assert grad[idx] == pytest.approx(fd, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("loss, data, keywords", [
    ("dice_loss", "c3_ignore", {"ignore_index": -1, "from_logits": True}),
    ("focal_loss", "bin_ignore", {"ignore_index": 255, "from_logits": True,
                                  "class_weights": [1.0, 2.0]}),
    ("generalized_dice_loss", "c3_absent", {"weight_type": "simple", "empty": "zero"}),
    ("lovasz_softmax", "c3_ignore", {"ignore_index": -1, "from_logits": True}),
])
def test_the_compiled_gradient_view_takes_the_new_keywords(loss, data, keywords):
    """loss_and_gradient (probabilities in; logits behind them where from_logits) equals
    the eager function and its tape, w.r.t. the logits."""
    g, z = DATA[data]
    p = _sigmoid(z) if z.shape[-1] == 1 else _softmax(z)
    value, grad = gradients.loss_and_gradient(loss, g, p, wrt="logits", **keywords)
    reads_logits = losses.takes_logits(loss, keywords)
    arg = gradients.probabilities_to_logits(p) if reads_logits else p
    expected, tape = _tape_gradient(loss, g, arg, keywords)
    assert value == pytest.approx(expected, rel=1e-10)
    if reads_logits and z.shape[-1] == 1:  # sigmoid logits: the same variable
        np.testing.assert_allclose(grad, tape, rtol=1e-8, atol=1e-12)
    assert gradients.loss_value(loss, g, p, **keywords) == pytest.approx(expected, rel=1e-10)


def test_a_table_of_values_checks_each_request_against_its_own_ignore_index():
    g, z = DATA["bin_ignore"]
    p = _sigmoid(z)
    both = gradients.loss_values([("dice_loss", {"ignore_index": 255}),
                                  ("binary_crossentropy", {"ignore_index": 255})], g, p)
    assert both[1] == pytest.approx(float(losses.binary_crossentropy(g, p, ignore_index=255)))
    with pytest.raises(ValueError, match=r"y_true must hold labels"):
        gradients.loss_values([("dice_loss", {"ignore_index": 255}), ("dice_loss", {})], g, p)


def test_from_logits_keeps_the_gradient_where_the_clip_kills_it():
    g = arr([1, 0], (1, 1, 2, 1))
    z = tf.constant(arr([-30.0, 0.0], (1, 1, 2, 1)))  # a confidently wrong pixel
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        clipped = losses.binary_crossentropy(g, tf.sigmoid(z))  # p = 9e-14, clipped to 1e-7
        exact = losses.binary_crossentropy(g, z, from_logits=True)
    assert tape.gradient(clipped, z).numpy()[0, 0, 0, 0] == 0.0
    # d/dz of the mean of softplus(-z): (sigmoid(z) - 1) / 2 pixels
    expected = (1 / (1 + math.exp(30)) - 1) / 2
    assert tape.gradient(exact, z).numpy()[0, 0, 0, 0] == pytest.approx(expected, rel=1e-12)
    assert float(exact) == pytest.approx((30 + math.log1p(math.exp(-30)) + L(2)) / 2, rel=1e-14)


# ------------------------------------------------------------ Keras: config, sample_weight

CLASS_CASES = [
    ("DiceLoss", {"empty": "zero", "ignore_index": 255.0, "from_logits": True}, "bin_ignore"),
    ("JaccardLoss", {"empty": "skip", "from_logits": True}, "c3"),
    ("TverskyLoss", {"empty": "one", "alpha": 0.3, "beta": 0.7}, "c3_absent"),
    ("GeneralizedDiceLoss", {"weight_type": "simple", "empty": "zero"}, "bin"),
    ("BCELoss", {"pos_weight": [2.0], "class_weights": [1.0, 3.0], "from_logits": True,
                 "ignore_index": 255.0}, "bin_ignore"),
    ("BCEDiceLoss", {"from_logits": True, "empty": "zero", "ignore_index": 255.0}, "bin_ignore"),
    ("BCELogDiceLoss", {"ignore_index": -1.0, "empty": "skip"}, "c3_ignore"),
    ("FocalLoss", {"class_weights": [1.0, 2.0, 3.0], "from_logits": True}, "c3"),
    ("LovaszHingeLoss", {"ignore_index": 255.0}, "bin_ignore"),
    ("LovaszSoftmaxLoss", {"from_logits": True, "ignore_index": -1.0, "per_image": True},
     "c3_ignore"),
]


def _class_arguments(cls_name, keywords, data):
    loss = next(name for name, cls in losses.LOSS_CLASSES.items() if cls.__name__ == cls_name)
    g, x = _arguments(loss, data, keywords)
    return loss, g.astype(np.float32), x.astype(np.float32)


@pytest.mark.parametrize("cls_name, keywords, data", CLASS_CASES, ids=[c[0] for c in CLASS_CASES])
def test_keras_config_round_trip_with_the_new_keywords(cls_name, keywords, data):
    cls = getattr(losses, cls_name)
    obj = cls(**keywords)
    config = obj.get_config()
    for key, value in keywords.items():
        assert config[key] == value
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(revived) is cls and revived.get_config() == config
    loss, g, x = _class_arguments(cls_name, keywords, data)
    expected = float(losses.LOSSES[loss](g, x, **keywords))
    assert float(revived(g, x)) == pytest.approx(expected, rel=1e-5, abs=1e-6)


PER_IMAGE_CLASSES = [
    ("DiceLoss", {}), ("JaccardLoss", {"empty": "zero"}), ("TverskyLoss", {"gamma": 2.0}),
    ("GeneralizedDiceLoss", {}), ("BCELoss", {}), ("BCEDiceLoss", {}), ("FocalLoss", {}),
    ("LovaszHingeLoss", {"from_logits": False}), ("LovaszSoftmaxLoss", {"per_image": True}),
]


@pytest.mark.parametrize("cls_name, keywords", PER_IMAGE_CLASSES,
                         ids=[c[0] for c in PER_IMAGE_CLASSES])
def test_sample_weight_on_keras_reduction(cls_name, keywords):
    g, z = DATA["bin"]
    g, p = g[:2].astype(np.float32), _sigmoid(z[:2]).astype(np.float32)
    loss = getattr(losses, cls_name)(**keywords)
    plain = float(loss(g, p))
    assert float(loss(g, p, sample_weight=np.ones(2, np.float32))) == pytest.approx(
        plain, rel=1e-6)
    name = loss.name
    first = float(losses.LOSSES[name](g[:1], p[:1], **keywords))
    # "sum_over_batch_size": sum_b s_b L_b / B, so [1, 0] is half the first image's loss
    assert float(loss(g, p, sample_weight=[1.0, 0.0])) == pytest.approx(first / 2, rel=1e-5)
    # "mean_with_sample_weight": sum_b s_b L_b / sum_b s_b, the first image alone
    weighted = getattr(losses, cls_name)(reduction="mean_with_sample_weight", **keywords)
    assert float(weighted(g, p, sample_weight=[1.0, 0.0])) == pytest.approx(first, rel=1e-5)
    assert float(weighted(g, p, sample_weight=[[2.0], [2.0]])) == pytest.approx(plain, rel=1e-5)


def test_sample_weight_with_batch_normalised_cross_entropy_weighs_each_images_share():
    g, z = DATA["bin"]
    g, p = g[:2], _sigmoid(z[:2])
    w = [1.0, 4.0]
    loss = losses.BCELoss(class_weights=w, dtype="float64")
    assert float(loss(g, p, sample_weight=[1.0, 1.0])) == pytest.approx(
        float(losses.binary_crossentropy(g, p, class_weights=w)), rel=1e-12)
    # image 0's share: B * sum_{i in 0} w_i l_i / sum_{all i} w_i, then Keras' sum / B
    pixel = -(g * np.log(p) + (1 - g) * np.log(1 - p))[..., 0]
    weights = np.where(g[..., 0] > 0, w[1], w[0])
    share = (weights[0] * pixel[0]).sum() / weights.sum()
    assert float(loss(g, p, sample_weight=[1.0, 0.0])) == pytest.approx(share, rel=1e-12)


@pytest.mark.parametrize("cls_name, keywords, message", [
    ("DiceLoss", {"per_image": False}, "dice_loss with per_image=False takes no sample_weight"),
    ("GeneralizedDiceLoss", {"per_image": False}, "per_image=False takes no sample_weight"),
    ("LovaszSoftmaxLoss", {}, "lovasz_softmax with per_image=False takes no sample_weight"),
    ("BCEDiceLoss", {"per_image": False}, "use per_image=True"),
    ("BCELogDiceLoss", {}, "bce_log_dice_loss takes no sample_weight"),
])
def test_losses_without_a_value_per_image_refuse_sample_weight(cls_name, keywords, message):
    g, z = DATA["bin"]
    g, p = g.astype(np.float32), _sigmoid(z).astype(np.float32)
    loss = getattr(losses, cls_name)(**keywords)
    assert math.isfinite(float(loss(g, p)))  # without sample_weight it is fine
    with pytest.raises(ValueError, match=message):
        loss(g, p, sample_weight=np.ones(len(g), np.float32))


def test_pixel_sample_weights_are_refused_with_a_sentence():
    g, z = DATA["bin"]
    with pytest.raises(ValueError, match=r"one weight per image, shape \[B\] or \[B, 1\]"):
        losses.DiceLoss()(g, _sigmoid(z), sample_weight=np.ones(g.shape[:-1]))


def test_keras_classes_return_one_value_per_image_and_reduce_as_before():
    g, z = DATA["bin"]
    p = _sigmoid(z)
    per_image = losses.DiceLoss(reduction=None, dtype="float64")(g, p)
    assert per_image.shape == (3,)
    assert float(np.mean(per_image)) == pytest.approx(float(losses.dice_loss(g, p)), rel=1e-12)
    whole = losses.DiceLoss(reduction=None, per_image=False, dtype="float64")(g, p)
    assert whole.shape == (1,)


def test_fit_with_sample_weight_trains():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((6, 8, 8, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.float32)
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              keras.layers.Conv2D(1, 3, padding="same")])  # logits out
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=losses.BCEDiceLoss(from_logits=True, empty="zero"))
    weights = np.array([1, 1, 1, 0, 0, 2], np.float32)
    before = model.evaluate(x, y, sample_weight=weights, batch_size=6, verbose=0)
    model.fit(x, y, sample_weight=weights, batch_size=6, epochs=5, verbose=0)
    after = model.evaluate(x, y, sample_weight=weights, batch_size=6, verbose=0)
    assert math.isfinite(after) and after < before


# ------------------------------------------------- every new keyword at random (hypothesis)

from hypothesis import given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.test_fuzz_losses import (  # noqa: E402
    FUZZ, _close, _value_tolerance, loss_keywords, mask_pairs,
)


@st.composite
def peer_cases(draw):
    """A random loss with random old and new keywords, some truth pixels marked."""
    name = draw(st.sampled_from(ISSUE_16_LOSSES))
    options = {"channels": st.just(1)} if name == "lovasz_hinge" else {}
    g, p = draw(mask_pairs(dtypes=(np.float64,), **options))
    kw = draw(loss_keywords(name, g.shape[-1]))
    accepted = losses.loss_keywords(losses.LOSSES[name])
    if "empty" in accepted:
        kw["empty"] = draw(st.sampled_from(losses.EMPTY_CONVENTIONS))
    if "weight_type" in accepted:
        kw["weight_type"] = draw(st.sampled_from(losses.WEIGHT_TYPES))
    if name in ("binary_crossentropy", "focal_loss") and draw(st.booleans()):
        count = 2 if g.shape[-1] == 1 else g.shape[-1]
        kw["class_weights"] = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]),
                                            min_size=count, max_size=count).filter(any))
    if name == "binary_crossentropy" and draw(st.booleans()):
        kw["pos_weight"] = draw(st.sampled_from([0.0, 0.5, 2.0]))
    if draw(st.booleans()):
        mark = draw(st.sampled_from([255.0, -1.0]))
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        g = g.copy()
        g[rng.random(g.shape[:-1]) < draw(st.sampled_from([0.1, 0.5, 1.0]))] = mark
        kw["ignore_index"] = mark
    note(f"{name}({kw})")
    return name, g, p, kw


def _oracle(name, g, x, kw):
    if name == "bce_dice_loss" and kw["dice_weight"] == 0:  # the Dice term left out, even 0/0
        shared = {k: kw[k] for k in ("ignore_index",) if k in kw}
        return kw["bce_weight"] * ref.binary_crossentropy(g, x, **shared)
    with np.errstate(divide="ignore"):  # -log(Dice 0) is +inf in both
        return float(getattr(ref, name)(g, x, **kw))


@settings(FUZZ, max_examples=150)
@given(peer_cases())
def test_random_new_keywords_equal_the_oracle(case):
    name, g, p, kw = case
    x = gradients.probabilities_to_logits(p) if name == "lovasz_hinge" else p
    got, want = float(losses.LOSSES[name](g, x, **kw)), _oracle(name, g, x, kw)
    rtol, atol = _value_tolerance(name, g, kw, rtol=1e-9, atol=1e-10)
    assert _close(got, want, rtol=rtol, atol=atol), (got, want)
