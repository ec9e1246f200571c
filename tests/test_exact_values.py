"""Hand-derived values, the seed snippets and the degenerate cases.

The expected numbers here are worked out by hand in the comments (pixel counts, exact
fractions), not computed by the code under test. The seed snippets (/work/shared/seeds)
and Keras 3's own Dice are re-written as small local functions and must be reproduced by
some setting of explorer.losses.
"""

import math

import numpy as np
import pytest

from explorer import losses

RTOL = 1e-6
ATOL = 1e-7


def value(x):
    return np.asarray(x, dtype=np.float64)


def f32(rows, shape):
    return np.asarray(rows, dtype=np.float32).reshape(shape)


# --------------------------------------------------------------------------------------
# the 4x4 example
# --------------------------------------------------------------------------------------
# truth g (4 pixels):          prediction p (5 pixels):
#   0 0 0 0                      0 0 0 0
#   0 1 1 0                      0 1 1 1
#   0 1 1 0                      0 0 1 1
#   0 0 0 0                      0 0 0 0
# G = 4, P = 5, I = |g & p| = 3 (rows 1-2: (1,1), (1,2), (2,2)); FP = P - I = 2, FN = G - I = 1.
TRUTH_4X4 = f32([[0, 0, 0, 0],
                 [0, 1, 1, 0],
                 [0, 1, 1, 0],
                 [0, 0, 0, 0]], (1, 4, 4, 1))
PRED_4X4 = f32([[0, 0, 0, 0],
                [0, 1, 1, 1],
                [0, 0, 1, 1],
                [0, 0, 0, 0]], (1, 4, 4, 1))
# a soft prediction on the same truth:
#   0  0    0     0        I = 0.5 + 1 + 0.75 = 2.25     (the 0.25 lies outside the truth)
#   0  0.5  1     0.25     P = 0.5 + 1 + 0.25 + 0.75 = 2.5
#   0  0    0.75  0        P2 = 0.25 + 1 + 0.0625 + 0.5625 = 1.875,  G2 = G = 4
#   0  0    0     0
SOFT_PRED_4X4 = f32([[0, 0, 0, 0],
                     [0, 0.5, 1, 0.25],
                     [0, 0, 0.75, 0],
                     [0, 0, 0, 0]], (1, 4, 4, 1))


@pytest.mark.parametrize("smooth, expected_dice", [
    (0.0, 6 / 9),     # 2*3 / (5 + 4)
    (1.0, 7 / 10),    # (6 + 1) / (9 + 1)
    (0.5, 6.5 / 9.5),
])
def test_dice_4x4_hard_masks(smooth, expected_dice):
    coef = losses.dice_coefficient(TRUTH_4X4, PRED_4X4, smooth=smooth)
    loss = losses.dice_loss(TRUTH_4X4, PRED_4X4, smooth=smooth)
    np.testing.assert_allclose(value(coef), expected_dice, rtol=RTOL)
    np.testing.assert_allclose(value(loss), 1 - expected_dice, rtol=RTOL, atol=ATOL)


def test_dice_4x4_epsilon_only_in_denominator():
    # (2*3 + 0) / (9 + 0 + 1) = 6/10
    coef = losses.dice_coefficient(TRUTH_4X4, PRED_4X4, smooth=0.0, epsilon=1.0)
    np.testing.assert_allclose(value(coef), 0.6, rtol=RTOL)


def test_dice_4x4_soft_prediction_plain_and_squared():
    # plain: 2*2.25 / (2.5 + 4) = 4.5 / 6.5 = 9/13 ; squared: 4.5 / (1.875 + 4) = 36/47
    plain = losses.dice_coefficient(TRUTH_4X4, SOFT_PRED_4X4, smooth=0.0)
    squared = losses.dice_coefficient(TRUTH_4X4, SOFT_PRED_4X4, smooth=0.0, squared=True)
    np.testing.assert_allclose(value(plain), 9 / 13, rtol=RTOL)
    np.testing.assert_allclose(value(squared), 36 / 47, rtol=RTOL)


def test_per_class_dice_4x4_shapes_and_value():
    per_image = losses.per_class_dice(TRUTH_4X4, PRED_4X4, smooth=0.0)
    whole = losses.per_class_dice(TRUTH_4X4, PRED_4X4, smooth=0.0, per_image=False)
    np.testing.assert_allclose(value(per_image), [[2 / 3]], rtol=RTOL)
    np.testing.assert_allclose(value(whole), [2 / 3], rtol=RTOL)


@pytest.mark.parametrize("smooth, expected_jaccard", [
    (0.0, 3 / 6),   # I / (P + G - I) = 3 / (5 + 4 - 3)
    (1.0, 4 / 7),   # (3 + 1) / (6 + 1)
])
def test_jaccard_4x4(smooth, expected_jaccard):
    loss = losses.jaccard_loss(TRUTH_4X4, PRED_4X4, smooth=smooth)
    np.testing.assert_allclose(value(loss), 1 - expected_jaccard, rtol=RTOL)


@pytest.mark.parametrize("alpha, beta, gamma, expected_loss", [
    # TI = I / (I + a*FP + b*FN) = 3 / (3 + 0.3*2 + 0.7*1) = 3/4.3 = 30/43 -> loss 13/43
    (0.3, 0.7, 1.0, 13 / 43),
    # a=0.7, b=0.3: 3 / (3 + 1.4 + 0.3) = 30/47 -> loss 17/47
    (0.7, 0.3, 1.0, 17 / 47),
    # focal Tversky, gamma=2: (13/43) ** (1/2)
    (0.3, 0.7, 2.0, math.sqrt(13 / 43)),
    # a=b=1 is Jaccard: 1 - 3/6
    (1.0, 1.0, 1.0, 0.5),
    # a=b=1/2 is Dice: 1 - 6/9
    (0.5, 0.5, 1.0, 1 / 3),
])
def test_tversky_4x4(alpha, beta, gamma, expected_loss):
    loss = losses.tversky_loss(TRUTH_4X4, PRED_4X4, alpha=alpha, beta=beta, gamma=gamma,
                               smooth=0.0)
    np.testing.assert_allclose(value(loss), expected_loss, rtol=RTOL)


def test_soft_label_intersection_on_a_soft_truth():
    # g = [0.5, 1, 0, 0.25], p = [0.5, 0.75, 0.25, 0.25]; P = G = 1.75
    # product I = 0.25 + 0.75 + 0 + 0.0625 = 1.0625 -> dice = 2.125 / 3.5 = 17/28
    # L1 form I = sum min(p, g) = 0.5 + 0.75 + 0 + 0.25 = 1.5 -> dice = 3 / 3.5 = 6/7
    g = f32([0.5, 1, 0, 0.25], (1, 1, 4, 1))
    p = f32([0.5, 0.75, 0.25, 0.25], (1, 1, 4, 1))
    product = losses.dice_coefficient(g, p, smooth=0.0)
    l1 = losses.dice_coefficient(g, p, smooth=0.0, soft_label=True)
    np.testing.assert_allclose(value(product), 17 / 28, rtol=RTOL)
    np.testing.assert_allclose(value(l1), 6 / 7, rtol=RTOL)
    # the soft truth against itself: perfect only with the L1 form
    self_l1 = losses.dice_coefficient(g, g, smooth=0.0, soft_label=True)
    self_product = losses.dice_coefficient(g, g, smooth=0.0)
    np.testing.assert_allclose(value(self_l1), 1.0, rtol=RTOL)
    # product: 2 * (0.25 + 1 + 0.0625) / 3.5 = 2.625 / 3.5 = 3/4
    np.testing.assert_allclose(value(self_product), 0.75, rtol=RTOL)


# --------------------------------------------------------------------------------------
# class reduction by hand: two images, two classes
# --------------------------------------------------------------------------------------
# 1 x 1 x 4 x 2 one-hot, labels [0, 0, 0, 1], prediction one-hot of [0, 0, 1, 1]:
#   class 0: G = 3, P = 2, I = 2 -> dice0 = 4/5 ;  class 1: G = 1, P = 2, I = 1 -> dice1 = 2/3
TRUTH_2C = f32([[1, 0], [1, 0], [1, 0], [0, 1]], (1, 1, 4, 2))
PRED_2C = f32([[1, 0], [1, 0], [0, 1], [0, 1]], (1, 1, 4, 2))


@pytest.mark.parametrize("kwargs, expected_loss", [
    ({}, ((1 - 4 / 5) + (1 - 2 / 3)) / 2),                              # 1/5, 1/3 -> 4/15
    (dict(include_background=False), 1 / 3),                              # class 1 only
    (dict(class_weights=[1.0, 3.0]), (1 * (1 / 5) + 3 * (1 / 3)) / 4),     # 6/5 / 4 = 3/10
    (dict(class_weights=[1.0, 3.0], normalize_weights=False), 1 / 5 + 1),  # 6/5
    (dict(class_weights=[2.0], include_background=False), 1 / 3),         # 2*(1/3) / 2
    (dict(class_weights=[2.0], include_background=False, normalize_weights=False), 2 / 3),
], ids=["mean-over-classes", "no-background", "weights-normalized", "weights-unnormalized",
        "weights-no-background", "weights-no-background-unnormalized"])
def test_dice_class_reduction_by_hand(kwargs, expected_loss):
    loss = losses.dice_loss(TRUTH_2C, PRED_2C, smooth=0.0, **kwargs)
    np.testing.assert_allclose(value(loss), expected_loss, rtol=RTOL)


# 1 x 2 x 2 x 3: every pixel is class 1
THREE_CLASS_TRUTH = np.zeros((1, 2, 2, 3), dtype=np.float32)
THREE_CLASS_TRUTH[..., 1] = 1.0


def test_dropped_background_nan_does_not_leak():
    # p = [0, 2/3, 1/3] at every pixel; class 0 is empty in truth and prediction -> 0/0
    # class 1: I = P = 8/3, G = 4 -> dice = (16/3) / (20/3) = 4/5 ; class 2: 0 / (4/3) = 0
    # without background: mean(1/5, 1) = 3/5 ; weight 0 on class 0 gives the same
    p = np.zeros((1, 2, 2, 3), dtype=np.float32)
    p[..., 1], p[..., 2] = 2 / 3, 1 / 3
    no_bg = losses.dice_loss(THREE_CLASS_TRUTH, p, smooth=0.0, include_background=False)
    zero_w = losses.dice_loss(THREE_CLASS_TRUTH, p, smooth=0.0, class_weights=[0.0, 1.0, 1.0])
    np.testing.assert_allclose(value(no_bg), 0.6, rtol=RTOL)
    np.testing.assert_allclose(value(zero_w), 0.6, rtol=RTOL)


def test_full_length_weights_without_background_ignore_the_first_weight():
    # p = 1/3 everywhere, smooth 1: class 1: I = P = 4/3, G = 4 -> (11/3)/(19/3) = 11/19
    #   class 2: (0 + 1) / (4/3 + 1) = 3/7 ; losses 8/19 and 4/7
    # weights [5, 1, 2], class 0 dropped: (1 * 8/19 + 2 * 4/7) / 3 = 208/399
    p = np.full((1, 2, 2, 3), 1 / 3, dtype=np.float32)
    short = losses.dice_loss(THREE_CLASS_TRUTH, p, class_weights=[1.0, 2.0],
                             include_background=False)
    full = losses.dice_loss(THREE_CLASS_TRUTH, p, class_weights=[5.0, 1.0, 2.0],
                            include_background=False)
    np.testing.assert_allclose(value(short), 208 / 399, rtol=RTOL)
    np.testing.assert_allclose(value(full), 208 / 399, rtol=RTOL)


def test_generalized_dice_two_classes_by_hand():
    # w0 = 1/3^2 = 1/9, w1 = 1/1^2 = 1
    # GD = 2 (w0*2 + w1*1) / (w0*(2+3) + w1*(2+1)) = 2 * (11/9) / (32/9) = 22/32 = 11/16
    loss = losses.generalized_dice_loss(TRUTH_2C, PRED_2C, smooth=0.0)
    np.testing.assert_allclose(value(loss), 5 / 16, rtol=RTOL)


def test_generalized_dice_absent_class_gets_largest_present_weight():
    # labels [0, 0, 0, 1], 3 classes (class 2 absent); prediction one-hot of [0, 0, 1, 2]
    #   class 0: G=3, P=2, I=2, w=1/9 ; class 1: G=1, P=1, I=0, w=1 ; class 2: G=0, P=1, I=0,
    #   w = max(1/9, 1) = 1.
    # GD = 2*(2/9) / ((2+3)/9 + (1+1) + (1+0)) = (4/9) / (32/9) = 1/8 -> loss 7/8
    g = f32([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]], (1, 1, 4, 3))
    p = f32([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], (1, 1, 4, 3))
    loss = losses.generalized_dice_loss(g, p, smooth=0.0)
    np.testing.assert_allclose(value(loss), 7 / 8, rtol=RTOL)


def test_generalized_dice_no_class_present_uses_unit_weights():
    # binary, empty truth, p = [0.5, 0.25]: all weights 1 -> GD = (0 + s) / (0.75 + s)
    g = f32([0, 0], (1, 1, 2, 1))
    p = f32([0.5, 0.25], (1, 1, 2, 1))
    loss = losses.generalized_dice_loss(g, p, smooth=0.25)
    np.testing.assert_allclose(value(loss), 1 - 0.25 / 1.0, rtol=RTOL)


def test_per_image_and_whole_batch_differ_with_an_empty_image():
    # image 0: truth empty, prediction one pixel 1 -> dice (smooth 0) = 0 / 1 = 0
    # image 1: truth = prediction = two pixels   -> dice = 4/4 = 1
    # per image: mean(1 - 0, 1 - 1) = 0.5 ; whole batch: I=2, P=3, G=2 -> 1 - 4/5 = 0.2
    g = f32([[0, 0], [1, 1]], (2, 1, 2, 1))
    p = f32([[1, 0], [1, 1]], (2, 1, 2, 1))
    np.testing.assert_allclose(value(losses.dice_loss(g, p, smooth=0.0)), 0.5, rtol=RTOL)
    np.testing.assert_allclose(value(losses.dice_loss(g, p, smooth=0.0, per_image=False)), 0.2,
                               rtol=RTOL)


# --------------------------------------------------------------------------------------
# cross-entropy family
# --------------------------------------------------------------------------------------
# two pixels: g = [1, 0], p = [0.8, 0.4]
G_2PX = f32([1, 0], (1, 1, 2, 1))
P_2PX = f32([0.8, 0.4], (1, 1, 2, 1))


def test_bce_two_pixels():
    # -(log 0.8 + log(1 - 0.4)) / 2 = -log(0.48) / 2
    bce = losses.binary_crossentropy(G_2PX, P_2PX)
    np.testing.assert_allclose(value(bce), -math.log(0.48) / 2, rtol=RTOL)


def test_bce_dice_and_bce_log_dice_two_pixels():
    # dice (smooth 1): (2*0.8 + 1) / (1.2 + 1 + 1) = 2.6 / 3.2 = 13/16
    bce = -math.log(0.48) / 2
    both = losses.bce_dice_loss(G_2PX, P_2PX, bce_weight=2.0, dice_weight=0.5)
    log_variant = losses.bce_log_dice_loss(G_2PX, P_2PX)
    np.testing.assert_allclose(value(both), 2 * bce + 0.5 * (3 / 16), rtol=RTOL)
    np.testing.assert_allclose(value(log_variant), bce - math.log(13 / 16), rtol=RTOL)


@pytest.mark.parametrize("gamma, alpha, expected", [
    # -(1 * 0.2^2 * log 0.8 + 1 * 0.4^2 * log 0.6) / 2
    (2.0, None, -(0.04 * math.log(0.8) + 0.16 * math.log(0.6)) / 2),
    # alpha=0.25: positive term * 0.25, negative term * 0.75
    (2.0, 0.25, -(0.25 * 0.04 * math.log(0.8) + 0.75 * 0.16 * math.log(0.6)) / 2),
    # gamma=0, no alpha: plain BCE
    (0.0, None, -math.log(0.48) / 2),
], ids=["gamma2", "gamma2-alpha0.25", "gamma0-is-bce"])
def test_binary_focal_two_pixels(gamma, alpha, expected):
    loss = losses.focal_loss(G_2PX, P_2PX, gamma=gamma, alpha=alpha)
    np.testing.assert_allclose(value(loss), expected, rtol=RTOL)


def test_categorical_focal_two_pixels():
    # pixel 0: class 0, p0 = 0.5 ; pixel 1: class 1, p1 = 0.75
    # gamma 2, alpha [1, 2]: -(1 * 0.25 * log 0.5 + 2 * 0.0625 * log 0.75) / 2
    g = f32([[1, 0], [0, 1]], (1, 1, 2, 2))
    p = f32([[0.5, 0.5], [0.25, 0.75]], (1, 1, 2, 2))
    loss = losses.focal_loss(g, p, gamma=2.0, alpha=[1.0, 2.0])
    expected = -(0.25 * math.log(0.5) + 2 * 0.0625 * math.log(0.75)) / 2
    np.testing.assert_allclose(value(loss), expected, rtol=RTOL)


# --------------------------------------------------------------------------------------
# Lovász
# --------------------------------------------------------------------------------------
def test_lovasz_hinge_2x2_by_hand():
    # pixels (row-major): g = [1, 0, 1, 0], logits = [2, 1, -0.5, -1.5]
    # signs = [1, -1, 1, -1]; errors = 1 - logit*sign = [-1, 2, 1.5, -0.5]
    # sorted desc: 2 (g0), 1.5 (g1), -0.5 (g0), -1 (g1) -> gs = [0, 1, 0, 1], n = 2
    # inter = 2 - cumsum(gs) = [2, 1, 1, 0]; union = 2 + cumsum(1 - gs) = [3, 3, 4, 4]
    # jac = 1 - inter/union = [1/3, 2/3, 3/4, 1]; grad = [1/3, 1/3, 1/12, 1/4]
    # loss = 2 * 1/3 + 1.5 * 1/3 + 0 + 0 = 7/6
    g = f32([[1, 0], [1, 0]], (1, 2, 2, 1))
    logits = f32([[2, 1], [-0.5, -1.5]], (1, 2, 2, 1))
    for per_image in (True, False):
        loss = losses.lovasz_hinge(g, logits, per_image=per_image)
        np.testing.assert_allclose(value(loss), 7 / 6, rtol=RTOL)


def test_lovasz_hinge_per_image_vs_whole_batch_by_hand():
    # image 0: g = [1, 0], logits = [1, -1]: errors [0, 0] -> loss 0
    # image 1: g = [1, 0], logits = [-1, 1]: errors [2, 2] (tie) -> 2 * (sum of grad = 1) = 2
    # per image: mean(0, 2) = 1
    # whole batch: errors [0, 0, 2, 2], gs sorted by error: the two 2's (g1, g0) then 0's
    #   order (g1, g0, g1, g0): n=2, inter=[1,1,0,0], union=[2,3,3,4], jac=[1/2,2/3,1,1]
    #   grad=[1/2, 1/6, 1/3, 0] -> 2*(1/2 + 1/6) = 4/3 (the tie order does not matter:
    #   (g0, g1, ...) gives inter=[2,1,..], union=[3,3,..], jac=[1/3, 2/3, ..], same sum 2*2/3)
    g = f32([[1, 0], [1, 0]], (2, 1, 2, 1))
    logits = f32([[1, -1], [-1, 1]], (2, 1, 2, 1))
    np.testing.assert_allclose(value(losses.lovasz_hinge(g, logits, per_image=True)), 1.0,
                               rtol=RTOL)
    np.testing.assert_allclose(value(losses.lovasz_hinge(g, logits, per_image=False)), 4 / 3,
                               rtol=RTOL)


# three pixels, three classes, truth labels [0, 1, 1] (class 2 absent):
#   pixel 0: p = [0.75,   0.125,  0.125]
#   pixel 1: p = [0.375,  0.5,    0.125]
#   pixel 2: p = [0.0625, 0.8125, 0.125]
# class 0: fg = [1,0,0], errors = [0.25, 0.375, 0.0625]; sorted fg = [0,1,0], n = 1
#   inter = [1,0,0], union = [2,2,3], jac = [1/2,1,1], grad = [1/2,1/2,0]
#   loss0 = 0.375/2 + 0.25/2 = 5/16
# class 1: fg = [0,1,1], errors = [0.125, 0.5, 0.1875]; sorted fg = [1,1,0], n = 2
#   inter = [1,0,0], union = [2,2,3], jac = [1/2,1,1], grad = [1/2,1/2,0]
#   loss1 = 0.5/2 + 0.1875/2 = 11/32
# class 2: fg = 0 everywhere: inter = 0, jac = 1 everywhere, grad = [1,0,0] -> loss2 = max p = 1/8
LOVASZ_G = f32([[1, 0, 0], [0, 1, 0], [0, 1, 0]], (1, 1, 3, 3))
LOVASZ_P = f32([[0.75, 0.125, 0.125], [0.375, 0.5, 0.125], [0.0625, 0.8125, 0.125]], (1, 1, 3, 3))


@pytest.mark.parametrize("classes, expected", [
    ("present", (5 / 16 + 11 / 32) / 2),          # 21/64
    ("all", (5 / 16 + 11 / 32 + 1 / 8) / 3),       # 25/96
])
@pytest.mark.parametrize("per_image", [True, False], ids=["per-image", "whole-batch"])
def test_lovasz_softmax_three_pixels_by_hand(classes, expected, per_image):
    loss = losses.lovasz_softmax(LOVASZ_G, LOVASZ_P, classes=classes, per_image=per_image)
    np.testing.assert_allclose(value(loss), expected, rtol=RTOL)


def test_lovasz_softmax_no_class_present_is_zero():
    g = np.zeros((1, 1, 3, 1), dtype=np.float32)
    p = f32([0.5, 0.25, 0.125], (1, 1, 3, 1))
    np.testing.assert_allclose(value(losses.lovasz_softmax(g, p, classes="present")), 0.0,
                               atol=0)
    # "all": the empty class counts with loss = max p = 0.5
    np.testing.assert_allclose(value(losses.lovasz_softmax(g, p, classes="all")), 0.5,
                               rtol=RTOL)


# --------------------------------------------------------------------------------------
# hard metrics
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold, counts, dice, iou", [
    # p >= 0.5 picks (1,1)=0.5, (1,2)=1, (2,2)=0.75: all inside the truth -> TP 3, FP 0, FN 1
    (0.5, (3, 0, 1, 12), 6 / 7, 3 / 4),
    # p >= 0.25 adds (1,3)=0.25 outside the truth -> TP 3, FP 1, FN 1, TN 11
    (0.25, (3, 1, 1, 11), 6 / 8, 3 / 5),
    # p >= 0.9 keeps only (1,2) -> TP 1, FP 0, FN 3, TN 12
    (0.9, (1, 0, 3, 12), 2 / 5, 1 / 4),
])
def test_hard_metrics_binary_4x4(threshold, counts, dice, iou):
    m = losses.hard_metrics(TRUTH_4X4, SOFT_PRED_4X4, threshold=threshold)
    tp, fp, fn, tn = counts
    for key, expected in (("tp", tp), ("fp", fp), ("fn", fn), ("tn", tn)):
        np.testing.assert_array_equal(value(m[key]), [expected], err_msg=key)
    np.testing.assert_allclose(value(m["dice"]), [dice], rtol=RTOL)
    np.testing.assert_allclose(value(m["iou"]), [iou], rtol=RTOL)
    per_image = losses.hard_metrics(TRUTH_4X4, SOFT_PRED_4X4, threshold=threshold,
                                    per_image=True)
    assert value(per_image["tp"]).shape == (1, 1)


def test_hard_metrics_multiclass_argmax_with_an_absent_class():
    # truth labels [0, 1, 1]; argmax of p: pixel0 -> 0, pixel1 -> 0 (0.5 > 0.375), pixel2 -> 1
    # class 0: TP 1 (px0), FP 1 (px1), FN 0, TN 1 -> dice 2/3, iou 1/2
    # class 1: TP 1 (px2), FP 0, FN 1 (px1), TN 1 -> dice 2/3, iou 1/2
    # class 2: never true, never predicted: TP=FP=FN=0, TN 3 -> dice, iou NaN
    p = f32([[0.75, 0.125, 0.125], [0.5, 0.375, 0.125], [0.0625, 0.8125, 0.125]], (1, 1, 3, 3))
    m = losses.hard_metrics(LOVASZ_G, p)
    np.testing.assert_array_equal(value(m["tp"]), [1, 1, 0])
    np.testing.assert_array_equal(value(m["fp"]), [1, 0, 0])
    np.testing.assert_array_equal(value(m["fn"]), [0, 1, 0])
    np.testing.assert_array_equal(value(m["tn"]), [1, 1, 3])
    np.testing.assert_allclose(value(m["dice"]), [2 / 3, 2 / 3, np.nan], rtol=RTOL)
    np.testing.assert_allclose(value(m["iou"]), [1 / 2, 1 / 2, np.nan], rtol=RTOL)


# --------------------------------------------------------------------------------------
# degenerate cases: empty truth and empty prediction
# --------------------------------------------------------------------------------------
EMPTY = np.zeros((1, 4, 4, 1), dtype=np.float32)


@pytest.mark.parametrize("smooth, epsilon, expected_dice", [
    (1.0, 0.0, 1.0),      # (0 + 1) / (0 + 1): empty vs empty is perfect
    (1e-6, 0.0, 1.0),     # any smooth > 0 gives 1
    (0.0, 1e-7, 0.0),     # 0 / 1e-7: a perfect empty prediction is punished
    (0.0, 0.0, np.nan),   # 0 / 0: undefined, on purpose
], ids=["smooth1", "smooth1e-6", "smooth0-eps1e-7", "smooth0-eps0-nan"])
def test_empty_truth_and_empty_prediction(smooth, epsilon, expected_dice):
    coef = value(losses.dice_coefficient(EMPTY, EMPTY, smooth=smooth, epsilon=epsilon))
    loss = value(losses.dice_loss(EMPTY, EMPTY, smooth=smooth, epsilon=epsilon))
    per_class = value(losses.per_class_dice(EMPTY, EMPTY, smooth=smooth, epsilon=epsilon))
    if np.isnan(expected_dice):
        assert np.isnan(coef) and np.isnan(loss) and np.isnan(per_class).all()
    else:
        np.testing.assert_allclose(coef, expected_dice, rtol=RTOL, atol=0)
        np.testing.assert_allclose(loss, 1.0 - expected_dice, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(per_class, [[expected_dice]], rtol=RTOL, atol=0)


@pytest.mark.parametrize("smooth, epsilon, expected_jaccard", [
    (1.0, 0.0, 1.0), (0.0, 1e-7, 0.0), (0.0, 0.0, np.nan)],
    ids=["smooth1", "smooth0-eps1e-7", "smooth0-eps0-nan"])
def test_empty_truth_and_empty_prediction_jaccard(smooth, epsilon, expected_jaccard):
    loss = value(losses.jaccard_loss(EMPTY, EMPTY, smooth=smooth, epsilon=epsilon))
    if np.isnan(expected_jaccard):
        assert np.isnan(loss)
    else:
        np.testing.assert_allclose(loss, 1.0 - expected_jaccard, rtol=RTOL, atol=ATOL)


def test_empty_truth_with_nonempty_prediction_scores_by_smooth():
    # truth empty, prediction P = 2 (two pixels at 1): dice = (0 + s) / (2 + s)
    p = EMPTY.copy()
    p[0, 0, 0, 0] = p[0, 1, 1, 0] = 1.0
    np.testing.assert_allclose(value(losses.dice_coefficient(EMPTY, p, smooth=1.0)), 1 / 3,
                               rtol=RTOL)
    np.testing.assert_allclose(value(losses.dice_coefficient(EMPTY, p, smooth=0.0)), 0.0,
                               atol=0)


def test_perfect_prediction_with_smooth0_is_exactly_one():
    coef = losses.dice_coefficient(TRUTH_4X4, TRUTH_4X4, smooth=0.0)
    np.testing.assert_allclose(value(coef), 1.0, rtol=RTOL)


# --------------------------------------------------------------------------------------
# the seed snippets and Keras, re-written locally; each must equal a setting of ours
# --------------------------------------------------------------------------------------
def _binary_batch(seed, shape=(3, 8, 8, 1), empty_image=None):
    rng = np.random.default_rng(seed)
    g = (rng.uniform(size=shape) < 0.4).astype(np.float32)
    if empty_image is not None:
        g[empty_image] = 0.0
    p = (1.0 / (1.0 + np.exp(-rng.normal(0, 2, size=shape)))).astype(np.float32)
    return g, p


def _onehot_batch(seed, shape=(2, 8, 8, 3)):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    g = np.eye(shape[-1], dtype=np.float32)[labels]
    logits = rng.normal(0, 1.5, size=shape) + 2.0 * g
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return g, (e / e.sum(-1, keepdims=True)).astype(np.float32)


def seed000_dice_loss(y_true, y_pred, eps=1e-6):
    """Seed 000, example 1: sums over all non-batch axes; eps added top and bottom."""
    g = y_true.astype(np.float64)
    p = y_pred.astype(np.float64)
    axes = tuple(range(1, g.ndim))
    overlap = np.sum(g * p, axis=axes)
    total = np.sum(g, axis=axes) + np.sum(p, axis=axes)
    return np.mean(1.0 - (2.0 * overlap + eps) / (total + eps))


def seed000_per_class_losses(y_true, y_pred, eps=1e-6):
    """Seeds 000 examples 2/3: per class, per image dice over H, W; mean over the batch."""
    g = y_true.astype(np.float64)
    p = y_pred.astype(np.float64)
    out = []
    for c in range(g.shape[-1]):
        overlap = np.sum(g[..., c] * p[..., c], axis=(1, 2))
        total = np.sum(g[..., c], axis=(1, 2)) + np.sum(p[..., c], axis=(1, 2))
        out.append(np.mean(1.0 - (2.0 * overlap + eps) / (total + eps)))
    return np.array(out)


def seed001_dice_loss(y_true, y_pred):
    """Seed 001: flatten everything, smooth = 1 on top and bottom."""
    g = y_true.astype(np.float64).ravel()
    p = y_pred.astype(np.float64).ravel()
    return 1.0 - (2.0 * np.sum(g * p) + 1.0) / (np.sum(g) + np.sum(p) + 1.0)


@pytest.mark.parametrize("empty_image", [None, 1], ids=["all-nonempty", "with-empty-image"])
def test_seed000_dice_loss_is_smooth1e6_per_image(empty_image):
    g, p = _binary_batch(10, empty_image=empty_image)
    ours = losses.dice_loss(g, p, smooth=1e-6, epsilon=0.0, per_image=True)
    np.testing.assert_allclose(value(ours), seed000_dice_loss(g, p), rtol=1e-5, atol=1e-6)


def test_seed000_weighted_variant_is_unnormalized_weights():
    g, p = _onehot_batch(11)
    weights = np.array([0.2, 1.5, 3.0])
    seed = np.sum(weights * seed000_per_class_losses(g, p))  # sum_c w_c mean_b(1 - dice)
    ours = losses.dice_loss(g, p, smooth=1e-6, epsilon=0.0, class_weights=list(weights),
                            normalize_weights=False)
    np.testing.assert_allclose(value(ours), seed, rtol=1e-5, atol=1e-6)


def test_seed000_multiclass_mean_is_the_default_reduction():
    g, p = _onehot_batch(12)
    seed = np.mean(seed000_per_class_losses(g, p))
    ours = losses.dice_loss(g, p, smooth=1e-6, epsilon=0.0)
    np.testing.assert_allclose(value(ours), seed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("empty_image", [None, 0], ids=["all-nonempty", "with-empty-image"])
def test_seed001_flattened_dice_is_whole_batch_smooth1(empty_image):
    g, p = _binary_batch(13, empty_image=empty_image)
    ours = losses.dice_loss(g, p, smooth=1.0, per_image=False)
    np.testing.assert_allclose(value(ours), seed001_dice_loss(g, p), rtol=1e-5, atol=1e-6)


def test_seed001_bce_dice_loss_matches_keras_bce_plus_flattened_dice():
    import keras
    import tensorflow as tf

    g, p = _binary_batch(14)
    # keras.losses.binary_crossentropy averages over the last axis ([B, H, W] left);
    # as a Keras loss the result is then averaged again -> mean over all elements
    keras_bce = float(tf.reduce_mean(keras.losses.binary_crossentropy(g, p)))
    seed = keras_bce + seed001_dice_loss(g, p)
    ours = losses.bce_dice_loss(g, p, smooth=1.0, per_image=False)
    np.testing.assert_allclose(value(ours), seed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("empty_image", [None, 2], ids=["all-nonempty", "with-empty-image"])
def test_keras3_dice_is_smooth0_eps1e7_whole_batch(empty_image):
    import keras

    g, p = _binary_batch(15, empty_image=empty_image)
    keras_value = float(keras.losses.Dice()(g, p))
    ours = losses.dice_loss(g, p, smooth=0.0, epsilon=1e-7, per_image=False)
    np.testing.assert_allclose(value(ours), keras_value, rtol=1e-5, atol=1e-6)


def test_keras3_dice_on_empty_masks_is_one():
    import keras

    keras_value = float(keras.losses.Dice()(EMPTY, EMPTY))
    ours = losses.dice_loss(EMPTY, EMPTY, smooth=0.0, epsilon=1e-7, per_image=False)
    assert keras_value == 1.0
    np.testing.assert_allclose(value(ours), 1.0, atol=0)
