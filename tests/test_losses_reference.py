"""explorer.losses (TensorFlow, float32) against the float64 numpy oracle in tests/reference.py.

Every case is built from a seeded numpy RNG: binary predictions are sigmoids of random
logits, multi-class predictions are softmaxes of random logits, one-hot truth comes from
random labels. The library gets float32 arrays; the oracle gets exactly the same values
widened to float64, so the only difference left is float32 arithmetic.
"""

import numpy as np
import pytest

from explorer import losses
from tests import reference as ref

# float32 arithmetic on sums of a few hundred terms: ~1e-6 relative at worst.
RTOL = 1e-5
ATOL = 1e-6


# --------------------------------------------------------------------------------------
# input cases
# --------------------------------------------------------------------------------------
class Case:
    """One batch: float32 inputs for the library, the same values in float64 for the oracle."""

    def __init__(self, y_true, y_pred, logits=None):
        self.true32 = np.asarray(y_true, dtype=np.float32)
        self.pred32 = np.asarray(y_pred, dtype=np.float32)
        self.true64 = self.true32.astype(np.float64)
        self.pred64 = self.pred32.astype(np.float64)
        if logits is not None:
            self.logits32 = np.asarray(logits, dtype=np.float32)
            self.logits64 = self.logits32.astype(np.float64)
        self.n_classes = self.true32.shape[-1]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def binary_case(shape, seed, *, empty_images=(), soft=False):
    rng = np.random.default_rng(seed)
    if soft:
        g = rng.uniform(0.0, 1.0, size=shape)
    else:
        g = (rng.uniform(size=shape) < 0.35).astype(np.float64)
    for b in empty_images:
        g[b] = 0.0
    # logits that lean towards the truth, with noise, so scores are neither ~0 nor ~1
    logits = rng.normal(0.0, 1.5, size=shape) + 2.0 * (2.0 * g - 1.0) * rng.uniform(size=shape)
    return Case(g, _sigmoid(logits), logits)


def multiclass_case(shape, seed, *, absent=None, soft=False):
    """absent: dict {image index or "all": class} of classes removed from the truth."""
    rng = np.random.default_rng(seed)
    n_classes = shape[-1]
    labels = rng.integers(0, n_classes, size=shape[:-1])
    for where, c in (absent or {}).items():
        assert c != 0
        if where == "all":
            labels[labels == c] = 0
        else:
            labels[where][labels[where] == c] = 0
    onehot = np.eye(n_classes)[labels]
    logits = rng.normal(0.0, 1.5, size=shape) + 2.5 * onehot
    g = onehot * 0.8 + 0.2 / n_classes if soft else onehot
    return Case(g, _softmax(logits), logits)


CASES = {
    "bin-2x16x16": binary_case([2, 16, 16, 1], 0),
    "bin-2x16x16-empty-image0": binary_case([2, 16, 16, 1], 1, empty_images=(0,)),
    "bin-3x9x13-empty-image1": binary_case([3, 9, 13, 1], 2, empty_images=(1,)),
    "bin-2x8x8-all-empty": binary_case([2, 8, 8, 1], 3, empty_images=(0, 1)),
    "bin-2x16x16-soft-truth": binary_case([2, 16, 16, 1], 4, soft=True),
    "mc4-2x12x12": multiclass_case([2, 12, 12, 4], 5),
    "mc4-2x12x12-absent-classes": multiclass_case([2, 12, 12, 4], 6, absent={0: 2, "all": 3}),
    "mc4-2x12x12-label-smoothed": multiclass_case([2, 12, 12, 4], 7, soft=True),
    "vol3-2x4x6x6": multiclass_case([2, 4, 6, 6, 3], 8),
}
BINARY_CASES = [k for k in CASES if k.startswith("bin")]
HARD_BINARY_CASES = [k for k in BINARY_CASES if "soft" not in k]
MULTICLASS_CASES = [k for k in CASES if not k.startswith("bin")]

# class weights, resolved per number of classes C (sum != 1, so normalisation matters)
WEIGHTS = "weights-for-C"
WEIGHTS_NO_BG = "weights-for-classes-1..C-1"


def resolve(kwargs, n_classes):
    out = dict(kwargs)
    if out.get("class_weights") == WEIGHTS:
        out["class_weights"] = [3.0, 0.5, 1.0, 2.0][:n_classes]
    elif out.get("class_weights") == WEIGHTS_NO_BG:
        # C == 1: include_background is ignored and the one weight belongs to the channel
        out["class_weights"] = [0.5, 1.0, 2.0][: max(n_classes - 1, 1)]
    return out


def check(got, expected, rtol=RTOL, atol=ATOL):
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"shape {got.shape} != {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------
# Dice / Jaccard / Tversky: overlap keyword grid
# --------------------------------------------------------------------------------------
OVERLAP_KWARGS = {
    "defaults": {},
    "smooth0": dict(smooth=0.0),
    "smooth0-eps1e-7": dict(smooth=0.0, epsilon=1e-7),
    "smooth1e-5-eps1e-5": dict(smooth=1e-5, epsilon=1e-5),
    "smooth10": dict(smooth=10.0),
    "squared": dict(squared=True),
    "whole-batch": dict(per_image=False),
    "whole-batch-squared-smooth0": dict(per_image=False, squared=True, smooth=0.0),
    "soft-label": dict(soft_label=True),
    "soft-label-whole-batch-smooth0": dict(soft_label=True, per_image=False, smooth=0.0),
    "no-background": dict(include_background=False),
    "weights-normalized": dict(class_weights=WEIGHTS),
    "weights-unnormalized": dict(class_weights=WEIGHTS, normalize_weights=False),
    "weights-no-background": dict(class_weights=WEIGHTS_NO_BG, include_background=False),
    "weights-unnormalized-no-background-whole-batch": dict(
        class_weights=WEIGHTS_NO_BG, include_background=False, normalize_weights=False,
        per_image=False),
}
# a smaller grid for the functions that share dice_loss's reduction code path
SHORT_OVERLAP_KWARGS = {k: OVERLAP_KWARGS[k] for k in (
    "defaults", "smooth0-eps1e-7", "squared", "whole-batch", "soft-label",
    "no-background", "weights-unnormalized", "weights-no-background")}


@pytest.mark.parametrize("kw_id", list(OVERLAP_KWARGS))
@pytest.mark.parametrize("case_id", list(CASES))
def test_dice_loss_matches_oracle(case_id, kw_id):
    case = CASES[case_id]
    kw = resolve(OVERLAP_KWARGS[kw_id], case.n_classes)
    expected = ref.dice_loss(case.true64, case.pred64, **kw)
    assert np.isfinite(expected)
    check(losses.dice_loss(case.true32, case.pred32, **kw), expected)


@pytest.mark.parametrize("kw_id", list(SHORT_OVERLAP_KWARGS))
@pytest.mark.parametrize("case_id", list(CASES))
def test_dice_coefficient_matches_oracle(case_id, kw_id):
    case = CASES[case_id]
    kw = resolve(SHORT_OVERLAP_KWARGS[kw_id], case.n_classes)
    expected = ref.dice_coefficient(case.true64, case.pred64, **kw)
    check(losses.dice_coefficient(case.true32, case.pred32, **kw), expected)


@pytest.mark.parametrize("kw_id", list(SHORT_OVERLAP_KWARGS) + ["smooth0", "smooth10"])
@pytest.mark.parametrize("case_id", list(CASES))
def test_jaccard_loss_matches_oracle(case_id, kw_id):
    case = CASES[case_id]
    kw = resolve(OVERLAP_KWARGS[kw_id], case.n_classes)
    expected = ref.jaccard_loss(case.true64, case.pred64, **kw)
    assert np.isfinite(expected)
    check(losses.jaccard_loss(case.true32, case.pred32, **kw), expected)


TVERSKY_KWARGS = {
    "defaults": {},
    "a0.3-b0.7": dict(alpha=0.3, beta=0.7),
    "a0.7-b0.3-smooth0": dict(alpha=0.7, beta=0.3, smooth=0.0),
    "a1-b1": dict(alpha=1.0, beta=1.0),
    "a0-b1-whole-batch": dict(alpha=0.0, beta=1.0, per_image=False),
    "focal-gamma0.75-a0.3-b0.7": dict(alpha=0.3, beta=0.7, gamma=0.75),
    "focal-gamma4/3-eps1e-5": dict(alpha=0.3, beta=0.7, gamma=4.0 / 3.0, smooth=1e-5,
                                   epsilon=1e-5),
    # squared needs alpha == beta (check_settings); a = b > 1 keeps I + a sum (p - g)^2 >= I
    "squared-a=b=1.5-weights-unnormalized": dict(alpha=1.5, beta=1.5, squared=True,
                                                 class_weights=WEIGHTS, normalize_weights=False),
    "soft-label-no-background-gamma2": dict(alpha=0.6, beta=0.4, gamma=2.0, soft_label=True,
                                            include_background=False),
}


@pytest.mark.parametrize("kw_id", list(TVERSKY_KWARGS))
@pytest.mark.parametrize("case_id", list(CASES))
def test_tversky_loss_matches_oracle(case_id, kw_id):
    case = CASES[case_id]
    kw = resolve(TVERSKY_KWARGS[kw_id], case.n_classes)
    expected = ref.tversky_loss(case.true64, case.pred64, **kw)
    assert np.isfinite(expected)
    check(losses.tversky_loss(case.true32, case.pred32, **kw), expected)


PER_CLASS_KWARGS = {
    "defaults": {},
    "whole-batch": dict(per_image=False),
    "squared-smooth0": dict(squared=True, smooth=0.0),
    "soft-label-eps": dict(soft_label=True, smooth=0.0, epsilon=1e-6),
}


@pytest.mark.parametrize("kw_id", list(PER_CLASS_KWARGS))
@pytest.mark.parametrize("case_id", list(CASES))
def test_per_class_dice_matches_oracle(case_id, kw_id):
    case = CASES[case_id]
    kw = PER_CLASS_KWARGS[kw_id]
    expected = ref.per_class_dice(case.true64, case.pred64, **kw)
    batch, n_classes = case.true32.shape[0], case.n_classes
    assert expected.shape == ((batch, n_classes) if kw.get("per_image", True) else (n_classes,))
    check(losses.per_class_dice(case.true32, case.pred32, **kw), expected)


GDL_KWARGS = {
    "defaults": {},
    "smooth0": dict(smooth=0.0, epsilon=1e-7),
    "squared": dict(squared=True),
    "whole-batch": dict(per_image=False),
    "no-background": dict(include_background=False),
    "soft-label-whole-batch": dict(soft_label=True, per_image=False),
}


@pytest.mark.parametrize("kw_id", list(GDL_KWARGS))
@pytest.mark.parametrize("case_id", list(CASES))
def test_generalized_dice_loss_matches_oracle(case_id, kw_id):
    case = CASES[case_id]
    kw = GDL_KWARGS[kw_id]
    expected = ref.generalized_dice_loss(case.true64, case.pred64, **kw)
    assert np.isfinite(expected)
    check(losses.generalized_dice_loss(case.true32, case.pred32, **kw), expected)


# --------------------------------------------------------------------------------------
# cross-entropy family
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", list(CASES))
def test_binary_crossentropy_matches_oracle(case_id):
    case = CASES[case_id]
    expected = ref.binary_crossentropy(case.true64, case.pred64)
    check(losses.binary_crossentropy(case.true32, case.pred32), expected)


def test_binary_crossentropy_clips_saturated_probabilities():
    # p = 0 and p = 1 on the wrong side would be infinite without the 1e-7 clip.
    y_true = np.array([1.0, 0.0, 1.0, 0.0], dtype=np.float32).reshape(1, 2, 2, 1)
    y_pred = np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32).reshape(1, 2, 2, 1)
    # In float32 the upper bound 1 - 1e-7 is the representable 1 - 2**-23 (~1 - 1.19e-7),
    # so the wrong-side p = 1 costs -log(1.19e-7) ~ 15.94, not -log(1e-7) ~ 16.12 as in
    # the float64 oracle. Build the expectation with the float32 bounds (as Keras does).
    lo, hi = float(np.float32(1e-7)), float(np.float32(1 - 1e-7))
    expected = (-np.log(lo) - np.log(1 - hi) - np.log(hi) - np.log(1 - lo)) / 4
    assert np.isfinite(ref.binary_crossentropy(y_true, y_pred))
    check(losses.binary_crossentropy(y_true, y_pred), expected)


BCE_DICE_KWARGS = {
    "defaults": {},
    "weighted-whole-batch-smooth0": dict(bce_weight=0.5, dice_weight=2.0, per_image=False,
                                         smooth=0.0, epsilon=1e-7),
    "soft-label": dict(soft_label=True),  # (with squared=True too it is rejected)
}


@pytest.mark.parametrize("kw_id", list(BCE_DICE_KWARGS))
@pytest.mark.parametrize("case_id", list(CASES))
def test_bce_dice_loss_matches_oracle(case_id, kw_id):
    case = CASES[case_id]
    kw = BCE_DICE_KWARGS[kw_id]
    expected = ref.bce_dice_loss(case.true64, case.pred64, **kw)
    check(losses.bce_dice_loss(case.true32, case.pred32, **kw), expected)


BCE_LOG_DICE_KWARGS = {
    "defaults": {},
    "whole-batch-squared": dict(per_image=False, squared=True),
    "weights-no-background": dict(class_weights=WEIGHTS_NO_BG, include_background=False),
}


@pytest.mark.parametrize("kw_id", list(BCE_LOG_DICE_KWARGS))
@pytest.mark.parametrize("case_id", list(CASES))
def test_bce_log_dice_loss_matches_oracle(case_id, kw_id):
    case = CASES[case_id]
    kw = resolve(BCE_LOG_DICE_KWARGS[kw_id], case.n_classes)
    expected = ref.bce_log_dice_loss(case.true64, case.pred64, **kw)
    assert np.isfinite(expected)
    check(losses.bce_log_dice_loss(case.true32, case.pred32, **kw), expected)


FOCAL_BINARY_KWARGS = {
    "defaults": {},
    "gamma0": dict(gamma=0.0),
    "gamma1.5-alpha0.25": dict(gamma=1.5, alpha=0.25),
    "gamma2-alpha0.75": dict(gamma=2.0, alpha=0.75),
}
FOCAL_MULTICLASS_KWARGS = {
    "defaults": {},
    "gamma0": dict(gamma=0.0),
    "gamma2-alpha0.25-scalar": dict(gamma=2.0, alpha=0.25),
    "gamma1-alpha-list": dict(gamma=1.0, alpha="list"),
}


@pytest.mark.parametrize("kw_id", list(FOCAL_BINARY_KWARGS))
@pytest.mark.parametrize("case_id", BINARY_CASES)
def test_focal_loss_binary_matches_oracle(case_id, kw_id):
    case = CASES[case_id]
    kw = FOCAL_BINARY_KWARGS[kw_id]
    expected = ref.focal_loss(case.true64, case.pred64, **kw)
    check(losses.focal_loss(case.true32, case.pred32, **kw), expected)


@pytest.mark.parametrize("kw_id", list(FOCAL_MULTICLASS_KWARGS))
@pytest.mark.parametrize("case_id", MULTICLASS_CASES)
def test_focal_loss_multiclass_matches_oracle(case_id, kw_id):
    case = CASES[case_id]
    kw = dict(FOCAL_MULTICLASS_KWARGS[kw_id])
    if kw.get("alpha") == "list":
        kw["alpha"] = [0.1, 0.5, 1.0, 2.0][: case.n_classes]
    expected = ref.focal_loss(case.true64, case.pred64, **kw)
    check(losses.focal_loss(case.true32, case.pred32, **kw), expected)


@pytest.mark.parametrize("case_id", MULTICLASS_CASES)
def test_focal_loss_gamma0_is_categorical_crossentropy(case_id):
    case = CASES[case_id]
    p = np.clip(case.pred64, 1e-7, 1 - 1e-7)
    n_pixels = p.size // case.n_classes
    cce = -np.sum(case.true64 * np.log(p)) / n_pixels
    check(losses.focal_loss(case.true32, case.pred32, gamma=0.0), cce)


# --------------------------------------------------------------------------------------
# Lovász
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("per_image", [True, False], ids=["per-image", "whole-batch"])
@pytest.mark.parametrize("case_id", HARD_BINARY_CASES)
def test_lovasz_hinge_matches_oracle(case_id, per_image):
    case = CASES[case_id]
    expected = ref.lovasz_hinge(case.true64, case.logits64, per_image=per_image)
    check(losses.lovasz_hinge(case.true32, case.logits32, per_image=per_image), expected)


@pytest.mark.parametrize("per_image", [True, False], ids=["per-image", "whole-batch"])
@pytest.mark.parametrize("classes", ["present", "all"])
@pytest.mark.parametrize("case_id", list(CASES))
def test_lovasz_softmax_matches_oracle(case_id, classes, per_image):
    case = CASES[case_id]
    expected = ref.lovasz_softmax(case.true64, case.pred64, classes=classes, per_image=per_image)
    check(losses.lovasz_softmax(case.true32, case.pred32, classes=classes, per_image=per_image),
          expected)


# --------------------------------------------------------------------------------------
# hard metrics
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("per_image", [True, False], ids=["per-image", "whole-batch"])
@pytest.mark.parametrize("threshold", [0.5, 0.3])
@pytest.mark.parametrize("case_id", list(CASES))
def test_hard_metrics_match_oracle(case_id, threshold, per_image):
    case = CASES[case_id]
    expected = ref.hard_metrics(case.true64, case.pred64, threshold=threshold,
                                per_image=per_image)
    got = losses.hard_metrics(case.true32, case.pred32, threshold=threshold,
                              per_image=per_image)
    assert set(got) == {"tp", "fp", "fn", "tn", "dice", "iou"}
    for key in ("tp", "fp", "fn", "tn"):
        check(got[key], expected[key], rtol=0, atol=0)
    for key in ("dice", "iou"):
        check(got[key], expected[key])


# --------------------------------------------------------------------------------------
# relations the spec states between functions (library against itself + oracle)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", list(CASES))
def test_dice_loss_is_one_minus_dice_coefficient(case_id):
    case = CASES[case_id]
    kw = dict(smooth=0.5, squared=True, class_weights=[2.0, 1.0, 1.0, 1.0][: case.n_classes])
    loss = np.asarray(losses.dice_loss(case.true32, case.pred32, **kw))
    coef = np.asarray(losses.dice_coefficient(case.true32, case.pred32, **kw))
    check(loss, 1.0 - coef)


@pytest.mark.parametrize("case_id", list(CASES))
def test_tversky_half_half_is_dice_with_doubled_smooth(case_id):
    case = CASES[case_id]
    tv = losses.tversky_loss(case.true32, case.pred32, alpha=0.5, beta=0.5, smooth=0.3,
                             epsilon=1e-4)
    dice = ref.dice_loss(case.true64, case.pred64, smooth=0.6, epsilon=2e-4)
    check(tv, dice)


@pytest.mark.parametrize("case_id", BINARY_CASES)
def test_binary_focal_gamma0_is_binary_crossentropy(case_id):
    case = CASES[case_id]
    check(losses.focal_loss(case.true32, case.pred32, gamma=0.0),
          ref.binary_crossentropy(case.true64, case.pred64))


@pytest.mark.parametrize("case_id", list(CASES))
def test_soft_label_dice_of_truth_with_itself_is_one(case_id):
    case = CASES[case_id]
    # smooth=1 keeps all-empty classes at 1 too; the L1 intersection makes 2I == P + G exactly
    coef = losses.dice_coefficient(case.true32, case.true32, soft_label=True, per_image=False)
    check(coef, 1.0)


@pytest.mark.parametrize("case_id", list(CASES))
def test_results_are_float32_scalars(case_id):
    case = CASES[case_id]
    out = losses.dice_loss(case.true32, case.pred32)
    assert np.asarray(out).shape == ()
    assert np.asarray(out).dtype == np.float32
