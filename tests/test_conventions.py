"""The convention translator: each library's Dice loss, as ``explorer.conventions`` computes
it with our library, against that library's formula written straight from its source in
numpy float64 (and against the real ``keras.losses.Dice``; MONAI and
segmentation_models_pytorch too where they happen to be installed)."""

import math

import keras
import numpy as np
import pytest

from explorer import conventions
from tests import reference

# ------------------------------------------------------------- the libraries, by hand
# Each oracle follows its library's source line by line, channels-first [B, C, N] like the
# PyTorch ones, never through explorer: MONAI 1.6.1 DiceLoss.forward + compute_tp_fp_fn;
# segmentation_models_pytorch 0.6.0 DiceLoss.forward + soft_tversky_score; Keras 3
# losses.dice; segmentation_models 1.0.1 f_score; the seed snippets.


def _bcn(x):
    x = np.asarray(x, np.float64)
    return np.moveaxis(x, -1, 1).reshape(x.shape[0], x.shape[-1], -1)


def monai_dice_loss(y_true, y_pred, *, batch=False, smooth_nr=1e-5, smooth_dr=1e-5):
    target, inp = _bcn(y_true), _bcn(y_pred)
    axes = (0, 2) if batch else (2,)
    tp = np.sum(inp * target, axis=axes)
    fp = np.sum(inp, axis=axes) - tp
    fn = np.sum(target, axis=axes) - tp
    fp, fn = fp * 0.5, fn * 0.5  # not jaccard
    f = 1 - (2 * tp + smooth_nr) / (2 * (tp + fp + fn) + smooth_dr)
    return float(np.mean(f))


def smp_dice_loss(y_true, y_pred, *, smooth=0.0, eps=1e-7):
    target, output = _bcn(y_true), _bcn(y_pred)
    dims = (0, 2)
    output_sum, target_sum = output.sum(dims), target.sum(dims)
    difference = np.abs(output - target).sum(dims)  # vector_norm(ord=1)
    intersection = (output_sum + target_sum - difference) / 2
    fp, fn = output_sum - intersection, target_sum - intersection
    score = (intersection + smooth) / np.maximum(intersection + 0.5 * fp + 0.5 * fn + smooth, eps)
    loss = (1.0 - score) * (target.sum(dims) > 0)
    return float(loss.mean())


def keras_dice(y_true, y_pred):
    g, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    return float(1 - 2.0 * np.sum(g * p) / (np.sum(g) + np.sum(p) + 1e-7))


def sm_keras_dice_loss(y_true, y_pred, *, beta=1, smooth=1e-5):
    gt, pr = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    axes = (0, 1, 2)  # channels_last, per_image=False
    tp = np.sum(gt * pr, axis=axes)
    fp = np.sum(pr, axis=axes) - tp
    fn = np.sum(gt, axis=axes) - tp
    score = ((1 + beta ** 2) * tp + smooth) / ((1 + beta ** 2) * tp + beta ** 2 * fn + fp + smooth)
    return float(1 - np.mean(score * 1))


def seed_000_dice_loss(y_true, y_pred, epsilon=1e-6):
    g, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    intersection = np.sum(g * p, axis=(1, 2, 3))
    union = np.sum(g, axis=(1, 2, 3)) + np.sum(p, axis=(1, 2, 3))
    return float(np.mean(1.0 - (2.0 * intersection + epsilon) / (union + epsilon)))


def seed_000_multiclass_dice_loss(y_true, y_pred, epsilon=1e-6):
    g, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    per_class = []
    for i in range(g.shape[-1]):
        intersection = np.sum(g[..., i] * p[..., i], axis=(1, 2))
        union = np.sum(g[..., i], axis=(1, 2)) + np.sum(p[..., i], axis=(1, 2))
        per_class.append(np.mean(1.0 - (2.0 * intersection + epsilon) / (union + epsilon)))
    return float(np.mean(per_class))


def seed_001_dice_loss(y_true, y_pred, smooth=1.0):
    g, p = np.asarray(y_true, np.float64).reshape(-1), np.asarray(y_pred, np.float64).reshape(-1)
    return float(1 - (2.0 * np.sum(g * p) + smooth) / (np.sum(g) + np.sum(p) + smooth))


ORACLES = {
    "monai": monai_dice_loss,
    "monai_batch": lambda g, p: monai_dice_loss(g, p, batch=True),
    "smp": smp_dice_loss,
    "keras": keras_dice,
    "sm_keras": sm_keras_dice_loss,
    "seed_000": seed_000_dice_loss,
    "seed_000_multiclass": seed_000_multiclass_dice_loss,
    "seed_001": seed_001_dice_loss,
}

# ------------------------------------------------------------------------------ masks


def _binary_with_empty_image():
    """Three images: a square, a bar, and an image whose truth is empty (prediction is not)."""
    rng = np.random.default_rng(1)
    g = np.zeros((3, 8, 8, 1))
    g[0, 2:6, 2:6] = 1
    g[1, 1:3, 1:7] = 1
    p = np.clip(0.8 * g + rng.uniform(0, 0.3, g.shape), 0, 1)
    p[2] = 0.05
    return g, p


def _multiclass_absent_class():
    """Two images, four classes (0 = background), class 2 absent from both truths."""
    labels = np.zeros((2, 8, 8), int)
    labels[0, 2:5, 2:5] = 1
    labels[1, 4:8, 0:3] = 1
    labels[1, 0:2, 0:2] = 3
    g = np.eye(4)[labels]
    logits = np.random.default_rng(2).normal(size=g.shape) + 3 * g
    return g, np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


def _soft_truth():
    g, p = _multiclass_absent_class()
    return 0.9 * g + 0.1 / 4, p  # label smoothing: no class is absent any more


CASES = {
    "binary_empty_image": _binary_with_empty_image(),
    "multiclass_absent_class": _multiclass_absent_class(),
    "multiclass_soft_truth": _soft_truth(),
    "binary_all_empty": (np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 1))),
    "binary_empty_truth": (np.zeros((2, 4, 4, 1)), np.full((2, 4, 4, 1), 0.2)),
}


@pytest.fixture(scope="module")
def translated():
    return {name: {t.key: t for t in conventions.translate(g, p)} for name, (g, p) in CASES.items()}


# ------------------------------------------------------------------ values by hand


@pytest.mark.parametrize("case", CASES)
def test_every_row_matches_its_library_formula_by_hand(translated, case):
    g, p = CASES[case]
    rows = translated[case]
    expected_keys = set(ORACLES) - ({"seed_000_multiclass"} if g.shape[-1] == 1 else set())
    assert set(rows) == expected_keys
    for key, row in rows.items():
        assert row.value == pytest.approx(ORACLES[key](g, p), rel=1e-12, abs=1e-12), key


def test_the_numbers_that_tell_the_libraries_apart():
    g, p = CASES["binary_all_empty"]
    rows = {t.key: t.value for t in conventions.translate(g, p)}
    # a perfect empty prediction: Keras' epsilon-only denominator gives 0/1e-7 -> loss 1,
    # smooth makes it perfect elsewhere, smp drops the class without truth
    assert rows["keras"] == pytest.approx(1.0)
    assert rows["monai"] == rows["monai_batch"] == rows["sm_keras"] == rows["seed_001"] == 0.0
    assert rows["smp"] == 0.0
    g, p = CASES["binary_empty_truth"]  # 32 pixels at 0.2 and no truth
    rows = {t.key: t.value for t in conventions.translate(g, p)}
    assert rows["smp"] == 0.0  # whatever is predicted
    assert rows["seed_001"] == pytest.approx(1 - 1 / (32 * 0.2 + 1))
    assert rows["monai"] == pytest.approx(1 - 1e-5 / (16 * 0.2 + 1e-5))


def test_smp_absent_class_is_zero_but_still_counted():
    g, p = CASES["multiclass_absent_class"]
    rows = {t.key: t.value for t in conventions.translate(g, p)}
    # by hand: smp = mean over 4 classes with class 2 at 0; the others are whole-batch Dice
    # with the L1 intersection (equal to sum p g for a one-hot truth), smooth 0
    gb, pb = _bcn(g), _bcn(p)
    dice = 2 * (gb * pb).sum((0, 2)) / (gb.sum((0, 2)) + pb.sum((0, 2)))
    losses = 1 - dice
    losses[2] = 0.0
    assert rows["smp"] == pytest.approx(losses.sum() / 4, rel=1e-12)


def test_smp_denominator_floor_binds_for_a_tiny_soft_truth():
    # truth and prediction 1e-9 at one pixel: unclamped the score is 1e-9/1e-9 = 1;
    # smp clamps P/2 + G/2 + smooth at eps = 1e-7, so it scores 1e-9/1e-7 = 0.01
    g = np.zeros((1, 2, 2, 1))
    g[0, 0, 0, 0] = 1e-9
    rows = {t.key: t for t in conventions.translate(g, g.copy())}
    assert rows["smp"].value == pytest.approx(smp_dice_loss(g, g), rel=1e-12)
    assert rows["smp"].value == pytest.approx(0.99, rel=1e-9)
    assert rows["smp"].mapped[conventions.DENOMINATOR_FLOOR] == pytest.approx(2e-7)


@pytest.mark.parametrize("case", CASES)
def test_mapped_keywords_alone_reproduce_rows_without_extra_steps(translated, case):
    """Where a row names no extra step, its mapped settings are plain dice_loss keywords:
    the independent numpy reference with those keywords gives the same number."""
    g, p = CASES[case]
    for row in translated[case].values():
        if any(step in row.mapped for step in conventions.EXTRA_STEPS):
            continue
        assert row.value == pytest.approx(reference.dice_loss(g, p, **row.mapped),
                                          rel=1e-12, abs=1e-12), row.key


def test_pooled_rows_are_whole_tensor_dice_for_several_classes():
    g, p = CASES["multiclass_absent_class"]
    rows = {t.key: t for t in conventions.translate(g, p)}
    for key in ("keras", "seed_001", "seed_000"):
        assert rows[key].mapped[conventions.POOL_CLASSES] is True
    # one-hot truth + softmax prediction: P = G = pixel count, Keras = 1 - mean p(true class)
    n = g.shape[0] * g.shape[1] * g.shape[2]
    assert rows["keras"].value == pytest.approx(1 - np.sum(g * p) / (n + 0.5e-7), rel=1e-12)
    g1, p1 = CASES["binary_empty_image"]  # one channel: nothing to pool
    assert all(conventions.POOL_CLASSES not in t.mapped for t in conventions.translate(g1, p1))


def test_keras_row_matches_real_keras_dice():
    for name, (g, p) in CASES.items():
        row = {t.key: t for t in conventions.translate(g, p)}["keras"]
        real64 = float(keras.losses.Dice(dtype="float64")(g, p))
        real32 = float(keras.losses.Dice()(g.astype(np.float32), p.astype(np.float32)))
        assert row.value == pytest.approx(real64, rel=1e-12, abs=1e-12), name
        assert row.value == pytest.approx(real32, rel=1e-5, abs=1e-6), name


def test_monai_rows_match_real_monai():
    torch = pytest.importorskip("torch", reason="torch is optional: not in requirements")
    monai = pytest.importorskip("monai", reason="MONAI is optional: not in requirements")
    for name, (g, p) in CASES.items():
        rows = {t.key: t for t in conventions.translate(g, p)}
        tg, tp = (torch.from_numpy(np.moveaxis(x, -1, 1).copy()) for x in (g, p))
        assert rows["monai"].value == pytest.approx(
            monai.losses.DiceLoss()(tp, tg).item(), rel=1e-12, abs=1e-12), name
        assert rows["monai_batch"].value == pytest.approx(
            monai.losses.DiceLoss(batch=True)(tp, tg).item(), rel=1e-12, abs=1e-12), name


def test_smp_row_matches_real_segmentation_models_pytorch():
    torch = pytest.importorskip("torch", reason="torch is optional: not in requirements")
    smp = pytest.importorskip("segmentation_models_pytorch",
                              reason="segmentation_models_pytorch is optional")
    for name, (g, p) in CASES.items():
        row = {t.key: t for t in conventions.translate(g, p)}["smp"]
        mode = row.call.split('mode="')[1].split('"')[0]
        tg, tp = (torch.from_numpy(np.moveaxis(x, -1, 1).copy()) for x in (g, p))
        target = tg.argmax(1) if mode == "multiclass" else tg
        real = smp.losses.DiceLoss(mode=mode, from_logits=False)(tp, target).item()
        assert row.value == pytest.approx(real, rel=1e-12, abs=1e-12), name


# -------------------------------------------------------------------------- the rows


def test_ours_is_the_first_row_with_our_value():
    g, p = CASES["multiclass_absent_class"]
    ours = {"smooth": 0.5, "per_image": False, "class_weights": [0.0, 1.0, 2.0, 1.0],
            "normalize_weights": False}
    rows = conventions.translate(g, p, ours=ours)
    assert rows[0].key == "ours" and rows[0].mapped == ours
    assert rows[0].value == pytest.approx(reference.dice_loss(g, p, **ours), rel=1e-12)
    assert "smooth=0.5" in rows[0].call and "normalize_weights=False" in rows[0].call
    assert [t.key for t in rows[1:]] == [t.key for t in conventions.translate(g, p)]


def test_ours_names_the_library_it_equals():
    g, p = CASES["binary_empty_image"]
    ours = conventions.translate(g, p, ours={"smooth": 1e-5, "epsilon": 0.0})[0]
    assert "Same number as MONAI DiceLoss()" in ours.why
    # one channel, whole batch, smooth 1: exactly seed 001's flatten
    ours = conventions.translate(g, p, ours={"smooth": 1.0, "per_image": False})[0]
    assert "Same number as Seed 001 dice_loss" in ours.why
    ours = conventions.translate(g, p, ours={"smooth": 0.3})[0]
    assert "Closest: " in ours.why and "Same number" not in ours.why


def test_ours_undefined_zero_over_zero_is_nan_and_explained():
    g, p = CASES["binary_all_empty"]
    rows = conventions.translate(g, p, ours={"smooth": 0.0, "epsilon": 0.0})
    assert math.isnan(rows[0].value) and "0/0" in rows[0].why
    assert not any(math.isnan(t.value) for t in rows[1:])  # every library guards 0/0


def test_smp_is_mapped_without_its_default_activation():
    for g, p in CASES.values():
        row = {t.key: t for t in conventions.translate(g, p)}["smp"]
        assert "from_logits=False" in row.call and "from_logits=False" in row.why
        assert row.mapped["soft_label"] is True and row.mapped["empty"] == "zero"
        assert conventions.ABSENT_CLASSES_ZERO not in row.mapped  # a keyword, not an extra step
    modes = {name: {t.key: t for t in conventions.translate(g, p)}["smp"].call
             for name, (g, p) in CASES.items()}
    assert 'mode="binary"' in modes["binary_empty_image"]
    assert 'mode="multiclass"' in modes["multiclass_absent_class"]
    assert 'mode="multilabel"' in modes["multiclass_soft_truth"]  # a soft truth has no indices


# ----------------------------------------------------------------------- the why-sentences


def test_why_names_the_absent_class(translated):
    rows = translated["multiclass_absent_class"]
    assert "Class 2 is absent from the batch's truth, so smp sets its loss to 0" in rows["smp"].why
    assert "all 4 classes" in rows["smp"].why
    assert "Class 2 is absent from the truth but predicted" in rows["monai_batch"].why
    assert "Class 2 is absent" in rows["sm_keras"].why
    assert "class 3" not in rows["smp"].why  # present in image 1: not absent from the batch


def test_why_names_the_empty_image_and_the_reduction_gap(translated):
    rows = translated["binary_empty_image"]
    assert "empty in image 2" in rows["monai"].why
    assert "image 2" in rows["monai_batch"].why
    gap = rows["monai_batch"].value - rows["monai"].value
    assert f"{gap:+.3g}" in rows["monai_batch"].why
    assert "No class is absent" in rows["smp"].why


def test_why_explains_pooling_and_smoothing(translated):
    rows = translated["multiclass_absent_class"]
    assert "all 4 classes pooled" in rows["keras"].why
    assert "1 minus the mean probability given to the true class" in rows["keras"].why
    assert "class 0 holds" in rows["keras"].why
    assert "pooled" in rows["seed_000"].why and "axes [1, 2, 3]" in rows["seed_000"].why
    assert "Same formula and reduction as MONAI DiceLoss(batch=True)" in rows["sm_keras"].why
    assert f"{rows['seed_001'].value - rows['keras'].value:+.3g}" in rows["seed_001"].why


def test_why_for_empty_masks(translated):
    rows = translated["binary_all_empty"]
    assert "perfect prediction gets loss 1" in rows["keras"].why
    assert "loss 0 whatever is predicted" in rows["smp"].why
    assert "perfect score (loss 0)" in rows["seed_001"].why
    assert "Image 0 and image 1 are empty in truth and prediction" in rows["monai"].why
    assert "agree" in rows["monai_batch"].why


def test_why_for_a_soft_truth(translated):
    rows = translated["multiclass_soft_truth"]
    assert "L1 form" in rows["smp"].why and "soft_label=True" in rows["smp"].why


def test_one_image_reductions_coincide():
    g, p = CASES["binary_empty_image"]
    rows = {t.key: t for t in conventions.translate(g[:1], p[:1])}
    assert rows["monai"].value == pytest.approx(rows["monai_batch"].value, rel=1e-12)
    assert "With one image the two reductions are the same" in rows["monai_batch"].why


def test_formulas_are_latex_with_the_library_constants(translated):
    rows = translated["multiclass_absent_class"]
    assert r"10^{-5}" in rows["monai"].formula and r"\sum_{b,c}" in rows["monai"].formula
    assert r"10^{-7}" in rows["keras"].formula
    assert r"[G_c > 0]" in rows["smp"].formula
    assert r"2I + 1" in rows["seed_001"].formula


def test_float32_masks_give_float64_values():
    g, p = CASES["binary_empty_image"]
    rows32 = conventions.translate(g.astype(np.float32), p.astype(np.float32))
    for row in rows32:
        assert row.value == pytest.approx(
            ORACLES[row.key](g.astype(np.float32), p.astype(np.float32)), rel=1e-12)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("y_true, y_pred, ours, message", [
    (np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 2)), None, "same shape"),
    (np.zeros((4, 4)), np.zeros((4, 4)), None, "channels-last"),
    (np.zeros((1, 4, 4, 1)), np.full((1, 4, 4, 1), 1.5), None, "probabilities in [0, 1]"),
    (np.full((1, 2, 2, 1), "a"), np.zeros((1, 2, 2, 1)), None, "array of numbers"),
    (np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)), {"alpha": 0.3}, "unknown keyword"),
    (np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)), {"smooth": -1}, "smooth must be"),
    (np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)), [("smooth", 1)], "ours must be a dict"),
])
def test_bad_input_raises_value_error(y_true, y_pred, ours, message):
    with pytest.raises(ValueError) as err:
        conventions.translate(y_true, y_pred, ours=ours)
    assert message in str(err.value)


def test_evaluate_refuses_extra_steps_with_unsupported_keywords():
    g, p = CASES["binary_empty_image"]
    with pytest.raises(ValueError, match="class_weights"):
        conventions.evaluate(g, p, {"class_weights": [1.0], conventions.DENOMINATOR_FLOOR: 1e-7})


def test_the_old_absent_classes_step_is_the_empty_zero_keyword():
    g, p = CASES["multiclass_absent_class"]
    old = conventions.evaluate(g, p, {"smooth": 0.0, "per_image": False,
                                      conventions.ABSENT_CLASSES_ZERO: True})
    assert old == conventions.evaluate(g, p, {"smooth": 0.0, "per_image": False,
                                              "empty": "zero"})
    # the smp row without its floor (which does not bind here) is one dice_loss call
    smp = {t.key: t for t in conventions.translate(g, p)}["smp"]
    plain = {k: v for k, v in smp.mapped.items() if k != conventions.DENOMINATOR_FLOOR}
    assert smp.value == pytest.approx(reference.dice_loss(g, p, **plain), rel=1e-12)
