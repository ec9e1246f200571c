"""Property-based fuzz tests (hypothesis) of the loss library and the mask pipeline.

Random masks (B 1-4, H/W 1-12, C 1-4, float64 and float32, with exact 0 and 1, empty
and all-ones truths, soft truths) and random settings go through ``explorer.losses``,
``explorer.gradients`` and ``explorer.masks``; the properties are the contract in
DESIGN.md: ranges, symmetries, perfect predictions, batch-order invariance, the numpy
oracle in ``tests/reference.py``, finite gradients, and "NaN iff degenerate_cases says
undefined".

Reproducible in CI: every test runs under ``FUZZ`` below, which sets ``derandomize=True``
(the examples are a fixed function of the test's source, the same on every run and
machine) and ``database=None`` (nothing is replayed from, or written to, a local
``.hypothesis`` folder). Mask values come from a numpy generator seeded by a drawn
integer, so a failure prints every drawn choice and replays exactly.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from PIL import Image

from explorer import gradients, losses, masks
from tests import reference

FUZZ = settings(
    derandomize=True,  # CI: the same examples on every run (see the module docstring)
    database=None,
    deadline=None,  # TensorFlow's first call of a shape/setting is slow; that is not a bug
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)

DTYPES = (np.float64, np.float32)
CLIP = losses.PROB_CLIP
BCE_CAP = -math.log(CLIP)  # no clipped log term exceeds -log(1e-7)
DICE_FAMILY = ("dice_loss", "jaccard_loss", "tversky_loss")


# ------------------------------------------------------------------------ masks


def _unit_values(rng, shape, kind):
    """Numbers in [0, 1] of one flavour (float64; cast later)."""
    if kind == "zeros":
        return np.zeros(shape)
    if kind == "ones":
        return np.ones(shape)
    if kind == "hard":
        return (rng.random(shape) < rng.random()).astype(np.float64)
    if kind == "grid":  # eighths: soft, and exact in float32
        return rng.integers(0, 9, shape) / 8
    # "soft": exact 0 and 1 mixed with tiny, near-1 and uniform values
    tiny = 10.0 ** rng.uniform(-12, -1, shape)
    pick = rng.integers(0, 5, shape)
    return np.select([pick == 0, pick == 1, pick == 2, pick == 3],
                     [0.0, 1.0, tiny, 1 - tiny], rng.random(shape))


def _one_hot(rng, shape, constant=False):
    *spatial, channels = shape
    if constant:  # one class everywhere: the others are empty
        labels = np.full(spatial, rng.integers(channels))
    else:
        labels = rng.integers(0, channels, spatial) * (rng.random(spatial) < rng.random())
    return np.eye(channels)[labels]


def _softmax(rng, shape):
    """Softmax rows; a large temperature range gives exact 0s and 1s too."""
    logits = rng.normal(size=shape) * 10.0 ** rng.uniform(-1, 3)
    logits -= logits.max(-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(-1, keepdims=True)


def _truth(rng, shape, kind):
    binary = shape[-1] == 1
    if kind in ("zeros", "ones", "soft", "grid") or (binary and kind == "hard"):
        return _unit_values(rng, shape, kind)
    if kind == "constant":  # one class everywhere (binary: all ones)
        return np.ones(shape) if binary else _one_hot(rng, shape, constant=True)
    hard = _unit_values(rng, shape, "hard") if binary else _one_hot(rng, shape)
    if kind == "hard":
        return hard
    smoothing = rng.uniform(0, 0.5)  # "smoothed": label smoothing of a hard truth
    return hard * (1 - smoothing) + smoothing / max(shape[-1], 2)


def _prediction(rng, truth, kind):
    shape = truth.shape
    if kind == "truth":
        return truth.copy()
    if kind == "softmax":
        return _softmax(rng, shape) if shape[-1] > 1 else _unit_values(rng, shape, "soft")
    if kind == "hard" and shape[-1] > 1:
        return _one_hot(rng, shape)
    return _unit_values(rng, shape, kind)


TRUTH_KINDS = ("zeros", "ones", "hard", "soft", "grid", "constant", "smoothed")
PRED_KINDS = ("zeros", "ones", "hard", "soft", "grid", "softmax", "truth")


@st.composite
def mask_pairs(draw, channels=st.integers(1, 4), truth_kinds=TRUTH_KINDS,
               pred_kinds=PRED_KINDS, dtypes=DTYPES):
    """(y_true, y_pred): [B, H, W, C] arrays in [0, 1] of one dtype."""
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 12)),
             draw(channels))
    dtype = draw(st.sampled_from(dtypes))
    truth_kind, pred_kind = draw(st.sampled_from(truth_kinds)), draw(st.sampled_from(pred_kinds))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    truth = _truth(rng, shape, truth_kind)
    if draw(st.booleans()) and shape[0] > 1:  # an empty image inside a batch
        truth[rng.integers(shape[0])] = 0
    pred = _prediction(rng, truth, pred_kind)
    note(f"shape={shape} dtype={np.dtype(dtype).name} truth={truth_kind} pred={pred_kind}")
    return truth.astype(dtype), pred.astype(dtype)


# --------------------------------------------------------------------- settings

# 0, or at least 1e-7: smaller values would round to 0 in a float32 computation
NONNEGATIVE = st.one_of(st.just(0.0), st.sampled_from([1e-7, 1e-6, 1e-5, 1.0]),
                        st.floats(1e-7, 10.0))
TVERSKY_AB = st.one_of(st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]), st.floats(1e-3, 2.0))
TERM_WEIGHT = st.one_of(st.just(0.0), st.floats(1e-3, 5.0))  # no subnormals (flushed to 0)
SWITCHES = ("per_image", "normalize_weights", "include_background")
# squared and soft_label: either, neither, not both (check_settings rejects the pair)
SQUARED_SOFT_LABEL = st.sampled_from([(False, False), (True, False), (False, True)])


@st.composite
def class_weights(draw, channels, include_background):
    """None, or valid weights: C values (or C - 1 when class 0 is dropped), a kept one > 0."""
    if draw(st.booleans()):
        return None
    dropped = not include_background and channels > 1
    count = channels - 1 if dropped and draw(st.booleans()) else channels
    # 0, or at least 1e-3: a positive weight that rounds to 0 in float32 (or a subnormal,
    # which TensorFlow flushes to 0) would be a different setting
    weights = draw(st.lists(st.one_of(st.sampled_from([0.0, 0.25, 1.0, 3.0]),
                                      st.floats(1e-3, 10.0)), min_size=count, max_size=count))
    kept = weights[1:] if dropped and count == channels else weights
    if not any(w > 0 for w in kept):
        weights[-1] = 1.0
    return weights


@st.composite
def dice_keywords(draw, channels, *, weights=True):
    kw = {"smooth": draw(NONNEGATIVE), "epsilon": draw(NONNEGATIVE)}
    kw.update({name: draw(st.booleans()) for name in SWITCHES})
    kw["squared"], kw["soft_label"] = draw(SQUARED_SOFT_LABEL)
    if weights:
        kw["class_weights"] = draw(class_weights(channels, kw["include_background"]))
    return kw


@st.composite
def loss_keywords(draw, name, channels):
    """Random valid keywords for ``losses.LOSSES[name]`` with C = ``channels``."""
    if name in ("dice_loss", "jaccard_loss", "bce_log_dice_loss"):
        return draw(dice_keywords(channels))
    if name == "tversky_loss":
        kw = draw(dice_keywords(channels))
        alpha = draw(TVERSKY_AB)
        beta = alpha if kw["squared"] else draw(TVERSKY_AB)  # squared needs alpha == beta
        return {**kw, "alpha": alpha, "beta": beta,
                "gamma": draw(st.one_of(st.sampled_from([1.0, 0.5, 2.0, 4 / 3]),
                                        st.floats(0.25, 4.0)))}
    if name == "generalized_dice_loss":
        kw = draw(dice_keywords(channels, weights=False))
        del kw["normalize_weights"]
        return kw
    if name == "bce_dice_loss":
        return {**draw(dice_keywords(channels)), "bce_weight": draw(TERM_WEIGHT),
                "dice_weight": draw(TERM_WEIGHT)}
    if name == "focal_loss":
        alphas = [st.none(), st.floats(0.0, 1.0, allow_subnormal=False)]
        if channels > 1:
            per_class = st.floats(0.0, 2.0, allow_subnormal=False)
            alphas.append(st.lists(per_class, min_size=channels, max_size=channels)
                          .filter(lambda a: any(v > 0 for v in a)))
        gamma = st.one_of(st.sampled_from([0.0, 2.0]), st.floats(0.0, 5.0, allow_subnormal=False))
        return {"gamma": draw(gamma), "alpha": draw(st.one_of(*alphas))}
    if name == "lovasz_hinge":
        return {"per_image": draw(st.booleans())}
    if name == "lovasz_softmax":
        return {"per_image": draw(st.booleans()),
                "classes": draw(st.sampled_from(losses.LOVASZ_CLASSES))}
    if name == "boundary_loss":
        return {"include_background": draw(st.booleans())}
    if name == "boundary_dice_loss":
        return {**draw(dice_keywords(channels)), "boundary_weight": draw(TERM_WEIGHT)}
    steps = st.integers(0, 4)  # soft-skeleton iterations
    if name == "cl_dice_loss":
        return {"iterations": draw(steps), "smooth": draw(NONNEGATIVE),
                **{key: draw(st.booleans()) for key in ("per_image", "include_background")}}
    if name == "cl_dice_dice_loss":
        return {**draw(dice_keywords(channels)), "cl_dice_weight": draw(TERM_WEIGHT),
                "iterations": draw(steps)}
    assert name == "binary_crossentropy", name
    return {}


@st.composite
def loss_cases(draw, names=tuple(losses.LOSSES), **mask_options):
    """(name, y_true, y_pred, keywords) for a random loss of the registry."""
    name = draw(st.sampled_from(names))
    if name == "lovasz_hinge":
        mask_options = {**mask_options, "channels": st.just(1)}
    g, p = draw(mask_pairs(**mask_options))
    kw = draw(loss_keywords(name, g.shape[-1]))
    note(f"{name}({kw})")
    return name, g, p, kw


# ------------------------------------------------------------------ helpers


def _call(name, g, p, kw):
    """The loss by its eager function; Lovász hinge gets the logits of ``p``."""
    arg = gradients.probabilities_to_logits(p) if name in losses.TAKES_LOGITS else p
    return float(losses.LOSSES[name](g, arg, **kw))


def _full_weights(kw, channels):
    """Weight of every original class index (1 when no class_weights)."""
    w = kw.get("class_weights")
    if w is None:
        return np.ones(channels)
    w = np.asarray(w, np.float64)
    return np.concatenate([[0.0], w]) if w.size == channels - 1 else w


def _undefined(g, p, kw):
    """(image, class) pairs that degenerate_cases calls "undefined" (0/0)."""
    keys = ("smooth", "epsilon", "squared", "per_image", "include_background", "soft_label")
    cases = losses.degenerate_cases(g, p, **{k: kw[k] for k in keys if k in kw})
    return [(d.image, d.class_index) for d in cases if d.kind == "undefined"]


def _nan_rule(name, g, p, kw):
    """(must, may): whether the loss must be NaN, from degenerate_cases' "undefined"
    (0/0) cases alone, and whether it may be. They differ only for Tversky with alpha or
    beta 0, where recall (precision) of an empty truth (prediction) is a further 0/0."""
    if name in ("binary_crossentropy", "focal_loss", "lovasz_hinge", "lovasz_softmax"):
        return False, False
    if name == "bce_dice_loss" and kw["dice_weight"] == 0:
        return False, False  # weight 0 leaves the Dice term out, as a class weight 0 does
    if name == "boundary_loss":
        return False, False  # a mean of distances times p: never 0/0
    if name == "cl_dice_loss":  # smooth 0: a soft skeleton summing to 0 is 0/0
        return False, kw["smooth"] == 0
    if name in ("boundary_dice_loss", "cl_dice_dice_loss"):  # the Dice term's rule, and
        must, may = _nan_rule("dice_loss", g, p, kw)  # clDice's own 0/0 at smooth 0
        return must, may or (name == "cl_dice_dice_loss" and kw["cl_dice_weight"] > 0
                             and kw["smooth"] == 0)
    undefined = _undefined(g, p, kw)
    if name == "generalized_dice_loss":  # one ratio per row: 0/0 only if every kept class is
        kept = g.shape[-1] - (0 if kw["include_background"] or g.shape[-1] == 1 else 1)
        rows = [image for image, _ in undefined]
        must = any(rows.count(image) == kept for image in set(rows))
        return must, must
    weights = _full_weights(kw, g.shape[-1])
    must = any(weights[c] > 0 for _, c in undefined)
    if name == "tversky_loss" and kw["alpha"] * kw["beta"] == 0:
        return must, kw["smooth"] == kw["epsilon"] == 0
    return must, must


def _check_nan_rule(name, g, p, kw, value):
    must, may = _nan_rule(name, g, p, kw)
    assert (not must or math.isnan(value)) and (may or not math.isnan(value)), (
        value, _undefined(g, p, kw))


def _upper_bound(name, g, kw):
    """Largest value the contract allows (inf: unbounded above)."""
    if name in DICE_FAMILY:
        if kw["normalize_weights"]:
            return 1.0
        w = _full_weights(kw, g.shape[-1])
        return float(w[1:].sum() if not kw["include_background"] and g.shape[-1] > 1
                     else w.sum())
    if name in ("generalized_dice_loss", "lovasz_softmax"):
        return 1.0
    if name == "binary_crossentropy":
        return BCE_CAP
    if name == "bce_dice_loss":
        return kw["bce_weight"] * BCE_CAP + kw["dice_weight"] * _upper_bound("dice_loss", g, kw)
    if name == "cl_dice_loss":
        return 1.0
    if name == "cl_dice_dice_loss":
        return _upper_bound("dice_loss", g, kw) + kw["cl_dice_weight"]
    return math.inf


def _lower_bound(name, g, kw):
    """Smallest value the contract allows."""
    if name == "bce_log_dice_loss" and not kw["normalize_weights"]:
        return -math.log(_upper_bound("dice_loss", g, kw))  # the Dice sum can reach sum w
    if name in ("boundary_loss", "boundary_dice_loss"):  # phi_G < 0 inside the truth
        return -math.inf
    return 0.0


def _tolerance(dtype):
    """Rounding slack: TensorFlow's float64 log/sums are good to ~1e-10 relative, not 1 ulp."""
    return 1e-5 if dtype == np.float32 else 1e-9


def _value_tolerance(name, g, kw, *, rtol, atol):
    """(rtol, atol) for two computations of one value that differ only by rounding."""
    if name == "tversky_loss" and kw["gamma"] > 1:
        atol = atol ** (1 / kw["gamma"])  # x ** (1/gamma) stretches a rounding d to d ** (1/gamma)
    if name in DICE_FAMILY:
        atol *= max(1.0, _upper_bound(name, g, kw))  # unnormalized class weights add up
    if name in ("boundary_dice_loss", "cl_dice_dice_loss"):
        atol *= max(1.0, _upper_bound("dice_loss", g, kw))
    return rtol, atol


def _close(a, b, *, rtol, atol):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + rtol * abs(b)


# ------------------------------------------------------------ range and NaN link


@settings(FUZZ, max_examples=250)
@given(loss_cases())
def test_every_loss_in_its_range_and_nan_only_for_the_documented_0_over_0(case):
    name, g, p, kw = case
    value = _call(name, g, p, kw)
    _check_nan_rule(name, g, p, kw, value)
    if math.isnan(value):
        return
    tol = _tolerance(g.dtype)
    scale = _upper_bound(name, g, kw) if name in DICE_FAMILY else 1.0  # unnormalized weights
    assert value >= _lower_bound(name, g, kw) - tol * max(1.0, scale)
    if name == "bce_log_dice_loss" and math.isinf(value):  # -log(0): Dice is exactly 0
        assert float(losses.dice_coefficient(g, p, **kw)) == 0.0
        return
    assert math.isfinite(value)
    assert value <= _upper_bound(name, g, kw) * (1 + tol) + tol


@settings(FUZZ, max_examples=120)
@given(mask_pairs(), st.data())
def test_scores_in_unit_interval(pair, data):
    g, p = pair
    kw = data.draw(dice_keywords(g.shape[-1]))
    tol = _tolerance(g.dtype)
    per_class_kw = {k: kw[k] for k in ("smooth", "epsilon", "squared", "per_image", "soft_label")}
    scores = losses.per_class_dice(g, p, **per_class_kw).numpy()
    defined = scores[~np.isnan(scores)]
    assert np.all((defined >= -tol) & (defined <= 1 + tol))
    # NaN exactly at the (image, class) pairs degenerate_cases names "undefined"
    undefined = {(b if kw["per_image"] else None, c)
                 for b, c in _undefined(g, p, {**per_class_kw, "include_background": True})}
    nan_at = {(b if kw["per_image"] else None, c)
              for b, c in zip(*np.nonzero(np.isnan(np.atleast_2d(scores))))}
    assert nan_at == undefined
    if kw["normalize_weights"]:
        coefficient = float(losses.dice_coefficient(g, p, **kw))
        assert math.isnan(coefficient) or -tol <= coefficient <= 1 + tol


@settings(FUZZ, max_examples=80)
@given(mask_pairs(), st.booleans())
def test_hard_metrics_in_range_and_symmetric(pair, per_image):
    g, p = pair
    m = losses.hard_metrics(g, p, per_image=per_image)
    swapped = losses.hard_metrics(p, g, per_image=per_image)
    pixels = np.prod(g.shape[1:-1]) * (1 if per_image else g.shape[0])
    counts = [m[k].numpy() for k in ("tp", "fp", "fn", "tn")]
    assert np.all(sum(counts) == pixels) and all(np.all(c >= 0) for c in counts)
    dice, iou = m["dice"].numpy(), m["iou"].numpy()
    empty = (counts[0] + counts[1] + counts[2]) == 0  # nothing in either mask: 0/0
    assert np.array_equal(np.isnan(dice), empty) and np.array_equal(np.isnan(iou), empty)
    assert np.all((dice[~empty] >= 0) & (dice[~empty] <= 1) & (iou[~empty] <= dice[~empty]))
    np.testing.assert_array_equal(swapped["dice"].numpy(), dice)
    np.testing.assert_array_equal(swapped["iou"].numpy(), iou)
    np.testing.assert_array_equal(swapped["fp"].numpy(), m["fn"].numpy())
    want = reference.hard_metrics(g, p, per_image=per_image)
    for key in want:
        np.testing.assert_array_equal(m[key].numpy().astype(np.float64), want[key], err_msg=key)


# ------------------------------------------------------------------- symmetry


@settings(FUZZ, max_examples=100)
@given(st.sampled_from(DICE_FAMILY), mask_pairs(), st.data())
def test_dice_jaccard_and_symmetric_tversky_are_symmetric_in_truth_and_prediction(
        name, pair, data):
    g, p = pair
    kw = data.draw(dice_keywords(g.shape[-1]))
    if name == "tversky_loss":
        kw["alpha"] = kw["beta"] = data.draw(TVERSKY_AB)
        kw["gamma"] = data.draw(st.floats(0.25, 4.0))
    forward, backward = _call(name, g, p, kw), _call(name, p, g, kw)
    rtol, atol = _value_tolerance(name, g, kw, rtol=_tolerance(g.dtype), atol=_tolerance(g.dtype))
    assert _close(forward, backward, rtol=rtol, atol=atol), (forward, backward)


# -------------------------------------------------------------- perfect prediction


@settings(FUZZ, max_examples=80)
@given(mask_pairs(truth_kinds=("zeros", "ones", "hard", "constant"), pred_kinds=("truth",)),
       st.data())
def test_perfect_hard_prediction_has_dice_loss_zero(pair, data):
    g, _ = pair
    kw = data.draw(dice_keywords(g.shape[-1]))
    kw["epsilon"] = 0.0  # epsilon > 0 makes even a perfect score a hair below 1
    value = _call("dice_loss", g, g, kw)
    if kw["smooth"] == 0 and _nan_rule("dice_loss", g, g, kw)[0]:
        assert math.isnan(value)  # both empty: 0/0, the documented case
    else:
        assert value == pytest.approx(0.0, abs=_tolerance(g.dtype))


@settings(FUZZ, max_examples=60)
@given(mask_pairs(channels=st.just(1), truth_kinds=("grid",), pred_kinds=("truth",)),
       st.sampled_from([0.0, 1e-6, 1.0]))
def test_soft_truth_against_itself_perfect_only_with_the_l1_form(pair, smooth):
    g, _ = pair
    assume(np.any(g > 0))
    kw = {"smooth": smooth, "per_image": False}
    assert _call("dice_loss", g, g, {**kw, "soft_label": True}) == pytest.approx(
        0.0, abs=_tolerance(g.dtype))
    assert _call("dice_loss", g, g, {**kw, "squared": True}) == pytest.approx(
        0.0, abs=_tolerance(g.dtype))  # sum g^2 on both sides: the product form is exact too
    # product form, plain sums: 1 - (2 sum g^2 + s)/(2 sum g + s), > 0 when some g is fractional
    s1, s2 = np.sum(g, dtype=np.float64), np.sum(np.square(g, dtype=np.float64))
    expected = 1 - (2 * s2 + smooth) / (2 * s1 + smooth)
    product = _call("dice_loss", g, g, kw)
    assert product == pytest.approx(expected, rel=1e-4, abs=_tolerance(g.dtype))
    assert (product > 0) == bool(np.any((g > 0) & (g < 1)))


# --------------------------------------------------------------- batch order


@settings(FUZZ, max_examples=120)
@given(loss_cases(), st.data())
def test_value_does_not_depend_on_the_order_of_the_batch(case, data):
    name, g, p, kw = case
    order = data.draw(st.permutations(range(g.shape[0])))
    before, after = _call(name, g, p, kw), _call(name, g[order], p[order], kw)
    tol = 10 * _tolerance(g.dtype)  # only the order of the sums changes
    rtol, atol = _value_tolerance(name, g, kw, rtol=tol, atol=tol)
    assert _close(after, before, rtol=rtol, atol=atol), (before, after)


# ------------------------------------------------------------- numpy oracle


def _oracle(name, g, p, kw):
    """``tests/reference.py`` on the same inputs. For float32 the BCE terms see p clipped
    at float32's own bounds (1 - 1e-7 rounds to 1 - 1.19e-7 there, as it does in Keras)."""
    g64, p64 = g.astype(np.float64), p.astype(np.float64)
    if name in losses.TAKES_LOGITS:
        return reference.lovasz_hinge(g64, gradients.probabilities_to_logits(p), **kw)
    clipped = p64
    if g.dtype == np.float32:
        low, high = np.float32(CLIP), np.float32(1) - np.float32(CLIP)
        clipped = np.clip(p, low, high).astype(np.float64)
    if name == "focal_loss":
        return reference.focal_loss(g64, clipped, **kw)
    if name == "binary_crossentropy":
        return reference.binary_crossentropy(g64, clipped)
    dice = {k: v for k, v in kw.items() if k not in ("bce_weight", "dice_weight")}
    if name == "bce_dice_loss":
        dice_part = reference.dice_loss(g64, p64, **dice)  # weight 0: left out, even if 0/0
        return (kw["bce_weight"] * reference.binary_crossentropy(g64, clipped)
                + (kw["dice_weight"] * dice_part if kw["dice_weight"] else 0.0))
    if name == "bce_log_dice_loss":
        with np.errstate(divide="ignore"):
            return (reference.binary_crossentropy(g64, clipped)
                    - np.log(reference.dice_coefficient(g64, p64, **dice)))
    return getattr(reference, name)(g64, p64, **kw)


@settings(FUZZ, max_examples=250)
@given(loss_cases())
def test_every_loss_equals_the_numpy_oracle(case):
    name, g, p, kw = case
    got, want = _call(name, g, p, kw), float(_oracle(name, g, p, kw))
    single = g.dtype == np.float32
    rtol, atol = _value_tolerance(name, g, kw, rtol=2e-4 if single else 1e-9,
                                  atol=2e-5 if single else 1e-10)
    assert _close(got, want, rtol=rtol, atol=atol), (got, want)


# ------------------------------------------------------------------ gradients

# Few structural variants so the compiled functions stay few (each new switch setting,
# class count or dtype is one trace); the numbers (smooth, weights, ...) vary freely.
GRAD_CHANNELS = st.sampled_from([1, 3])


def _seen_through_logits(p):
    """The probabilities the logits path really evaluates (0 and 1 come back clipped)."""
    z = gradients.probabilities_to_logits(p).astype(np.float64)
    if p.shape[-1] == 1:
        return (1 / (1 + np.exp(-z))).astype(p.dtype)
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(p.dtype)


@settings(FUZZ, max_examples=70)
@given(loss_cases(channels=GRAD_CHANNELS), st.sampled_from(gradients.WRT))
def test_gradients_are_finite_for_every_valid_input(case, wrt):
    name, g, p, kw = case
    value, grad = gradients.loss_and_gradient(name, g, p, wrt=wrt, **kw)
    assert grad.shape == p.shape
    if wrt == "probabilities":  # the compiled value is the eager one
        eager = _call(name, g, p, kw)
        rtol, atol = _value_tolerance(name, g, kw, rtol=10 * _tolerance(g.dtype),
                                      atol=10 * _tolerance(g.dtype))
        assert _close(value, eager, rtol=rtol, atol=atol), (value, eager)
    _check_nan_rule(name, g, _seen_through_logits(p) if wrt == "logits" else p, kw, value)
    if math.isnan(value):
        return
    if math.isinf(value):  # BCE - log(Dice) at Dice = 0: the value itself is infinite
        assert name == "bce_log_dice_loss"
        return
    assert np.all(np.isfinite(grad)), grad[~np.isfinite(grad)]


# ------------------------------------------------- settings that left the range

# Found by the properties above: soft_label with squared let Dice exceed 1 (p = g = 1/2, smooth
# 0: dice_loss -1), and squared Tversky with alpha != beta a negative denominator (g = 1,
# p = 1/2, alpha 2, beta 0.1: loss -9). check_settings now rejects both combinations.


@settings(FUZZ, max_examples=40)
@given(loss_cases(names=("dice_loss", "jaccard_loss", "tversky_loss", "generalized_dice_loss",
                         "bce_dice_loss", "bce_log_dice_loss"), channels=GRAD_CHANNELS),
       st.sampled_from(["eager", "compiled"]))
def test_soft_label_with_squared_is_rejected(case, path):
    name, g, p, kw = case
    kw = {**kw, "squared": True, "soft_label": True}
    if name == "tversky_loss":
        kw["beta"] = kw["alpha"]  # only the soft_label/squared pair is wrong
    with pytest.raises(ValueError, match="soft_label=True .* squared=True"):
        if path == "eager":
            _call(name, g, p, kw)
        else:
            gradients.loss_and_gradient(name, g, p, **kw)


@settings(FUZZ, max_examples=40)
@given(loss_cases(names=("tversky_loss",), channels=GRAD_CHANNELS), st.data())
def test_squared_tversky_needs_alpha_equal_beta(case, data):
    name, g, p, kw = case
    kw = {**kw, "squared": True, "soft_label": False}
    kw["beta"] = data.draw(TVERSKY_AB.filter(lambda b: b != kw["alpha"]))
    with pytest.raises(ValueError, match="squared=True needs alpha == beta"):
        _call(name, g, p, kw)
    # alpha = beta = a: den = I + a sum (p - g)^2 >= I, so the loss stays in its range
    kw["beta"] = kw["alpha"]
    value = _call(name, g, p, kw)
    _check_nan_rule(name, g, p, kw, value)
    if not math.isnan(value):
        tol = _tolerance(g.dtype) * max(1.0, _upper_bound(name, g, kw))
        assert -tol <= value <= _upper_bound(name, g, kw) * (1 + tol) + tol


@pytest.mark.parametrize("g_value, p_value", [(0, 1), (1, 0), (0, 0), (1, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_lovasz_hinge_value_does_not_depend_on_wrt_on_saturated_inputs(g_value, p_value, dtype):
    """Both paths clip p in the input's dtype: float32(1 - 1e-7) = 1 - 2**-23 in float32."""
    g, p = np.full((1, 1, 1, 1), g_value, dtype), np.full((1, 1, 1, 1), p_value, dtype)
    values = [gradients.loss_and_gradient("lovasz_hinge", g, p, wrt=wrt)[0]
              for wrt in gradients.WRT]
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    # one pixel: the Lovász weight is 1 and the loss relu(1 - z (2g - 1)), z the logit of p
    # clipped to the dtype's [1e-7, 1 - 1e-7] (float32: 1 - 1.19e-7, z = 15.94, not 16.12)
    clipped = min(max(p_value, float(dtype(CLIP))), float(dtype(1 - CLIP)))
    z = math.log(clipped) - math.log1p(-clipped)
    assert values[0] == pytest.approx(max(1 - z * (2 * g_value - 1), 0.0), rel=1e-6)
    assert values[0] == pytest.approx(_call("lovasz_hinge", g, p, {}), rel=1e-6)


# ---------------------------------------------------------------- mask pipeline


@settings(FUZZ, max_examples=80)
@given(st.integers(1, 6), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1),
       st.floats(0.0, 1.0), st.sampled_from([0.0, 0.5, 1.0, 3.0]),
       st.sampled_from([0.0, 0.3, 2.0]), st.sampled_from([1.0, 0.0, 0.3, 4.0]))
def test_soften_gives_probabilities(num_classes, h, w, seed, confidence, blur, noise,
                                    temperature):
    labels = np.random.default_rng(seed).integers(0, num_classes, (h, w))
    probs = masks.soften(labels, num_classes, confidence=confidence, blur_sigma=blur,
                         noise=noise, temperature=temperature, seed=seed)
    channels = 1 if num_classes <= 2 else num_classes
    assert probs.shape == (h, w, channels) and probs.dtype == np.float32
    assert np.all(np.isfinite(probs)) and probs.min() >= 0 and probs.max() <= 1
    if channels > 1:
        np.testing.assert_allclose(probs.sum(-1, dtype=np.float64), 1.0, atol=1e-5)
    if blur == noise == 0 and temperature == 1:  # the drawn class gets exactly `confidence`
        drawn = probs[..., 0] if channels == 1 else np.take_along_axis(
            probs, labels[..., None], -1)[..., 0]
        want = np.where(labels > 0, confidence, 1 - confidence) if channels == 1 else confidence
        np.testing.assert_allclose(drawn, want, atol=1e-6)


RGBA_PIXELS = st.one_of(
    st.integers(0, 2**32 - 1),  # a seed for random pixels
    st.just(None))  # the class colours themselves, eraser black, and transparent


@settings(FUZZ, max_examples=80)
@given(st.integers(1, masks.MAX_CLASSES + 1), st.integers(1, 10), st.integers(1, 10),
       RGBA_PIXELS, st.sampled_from([masks.ERASER_LEVEL, 128, 0, 255]))
def test_rgba_to_labels_stays_below_num_classes(num_classes, h, w, seed, level):
    if seed is None:
        colours = [(*masks.hex_to_rgb(c), 255) for c in masks.CLASS_COLORS]
        rgba = np.array([colours[i % len(colours)] for i in range(h * w)], np.uint8)
        rgba = rgba.reshape(h, w, 4)
        rgba[0, 0, 3] = 0
    else:
        rgba = np.random.default_rng(seed).integers(0, 256, (h, w, 4)).astype(np.uint8)
    if num_classes < 2:  # a drawn pixel is class 1, which one class cannot hold
        with pytest.raises(masks.MaskError, match="num_classes"):
            masks.rgba_to_labels(rgba, num_classes, level=level)
        return
    labels = masks.rgba_to_labels(rgba, num_classes, level=level)
    assert labels.shape == (h, w) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < num_classes
    transparent = rgba[..., 3] < 128
    assert np.all(labels[transparent] == 0)


def _npy(array) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


NPY_DTYPES = ("bool", "int8", "uint8", "<i2", ">u2", "int32", ">i8", "uint64", "float16",
              ">f4", "float64", "complex64", "U3", "S2", "datetime64[s]", "timedelta64[ms]",
              [("a", "<i4"), ("b", "<f4")])


# (mode, format) pairs Pillow writes; LAB, CMYK and YCbCr TIFFs are modes a mask
# reader rarely expects (a LAB TIFF raised a plain ValueError before)
IMAGE_KINDS = (("L", "PNG"), ("1", "PNG"), ("P", "PNG"), ("RGB", "PNG"), ("RGBA", "PNG"),
               ("LA", "PNG"), ("I;16", "PNG"), ("I", "TIFF"), ("F", "TIFF"), ("LAB", "TIFF"),
               ("CMYK", "TIFF"), ("YCbCr", "TIFF"), ("CMYK", "JPEG"), ("L", "JPEG"),
               ("RGB", "BMP"), ("P", "GIF"))


@st.composite
def odd_files(draw):
    """Bytes of a small valid image (PNG, TIFF, JPEG, BMP, GIF) or NPY with odd
    modes/dtypes/shapes/values, maybe truncated or with a byte changed."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=4)))
    kind = draw(st.sampled_from(["npy", "image"]))
    if kind == "npy":
        dtype = np.dtype(draw(st.sampled_from(NPY_DTYPES)))
        values = draw(st.sampled_from(["labels", "binary255", "random", "specials"]))
        raw = {"labels": rng.integers(0, 8, shape), "binary255": rng.integers(0, 2, shape) * 255,
               "random": rng.normal(size=shape) * 1e5,
               "specials": rng.choice([0, 1, np.nan, np.inf, -np.inf, -1, 0.5, 65535], shape)
               }[values]
        with np.errstate(all="ignore"):
            try:
                array = np.asarray(raw).astype(dtype)
            except (ValueError, TypeError):
                array = np.zeros(shape, dtype)
        data = _npy(array)
    else:
        mode, fmt = draw(st.sampled_from(IMAGE_KINDS))
        h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
        values = draw(st.sampled_from(["labels", "binary", "random"]))
        if mode in ("I;16", "I", "F"):  # one numeric channel
            top = {"I;16": 65535, "I": 70000, "F": 3}[mode]
            array = {"labels": rng.integers(0, 8, (h, w)),
                     "binary": rng.integers(0, 2, (h, w)) * top,
                     "random": rng.integers(0, top + 1, (h, w))}[values]
            if mode == "F" and values == "random":
                array = rng.random((h, w)) * 4 - 1
            array = array.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode])
            image = Image.fromarray(array)
        else:  # from RGBA, converted to the mode
            array = {"labels": rng.integers(0, 8, (h, w, 4)),
                     "binary": rng.integers(0, 2, (h, w, 4)) * 255,
                     "random": rng.integers(0, 256, (h, w, 4))}[values].astype(np.uint8)
            if draw(st.booleans()):
                array[..., 3] = 255  # opaque
            image = Image.fromarray(array).convert(mode)
        out = io.BytesIO()
        image.save(out, format=fmt)
        data = out.getvalue()
    damage = draw(st.sampled_from(["none", "truncate", "flip"]))
    if damage == "truncate":
        data = data[:draw(st.integers(0, max(len(data) - 1, 0)))]
    elif damage == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    note(f"{kind} {len(data)} bytes, damage={damage}")
    return data


PILLOW_NOTES = pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # on damaged TIFF tags


def _loads_or_says_why(data, **kw):
    """load_mask either returns labels in range or raises MaskError: nothing else."""
    try:
        labels = masks.load_mask(data, **kw)
    except masks.MaskError as error:
        assert str(error)
        return
    allowed = kw.get("num_classes") or masks.MAX_CLASSES
    assert labels.ndim == 2 and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < allowed


@settings(FUZZ, max_examples=150)
@PILLOW_NOTES
@given(st.binary(max_size=300), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\x93NUMPY",
                                                 b"II*\x00", b"GIF89a", b"BM", b"\xff\xd8"]))
def test_load_mask_on_random_bytes_raises_only_mask_error(data, magic):
    _loads_or_says_why(magic + data)


@settings(FUZZ, max_examples=200)
@PILLOW_NOTES
@given(odd_files(), st.sampled_from([None, 1, 2, 3, masks.MAX_CLASSES]))
def test_load_mask_on_odd_png_and_npy_returns_labels_or_raises_mask_error(data, num_classes):
    _loads_or_says_why(data, num_classes=num_classes)
    try:  # the probability reader takes the same files (the prediction upload)
        probs = masks.load_probability(data)
    except masks.MaskError:
        return
    assert probs.ndim == 2 and probs.dtype == np.float32
    assert np.all(np.isfinite(probs)) and probs.min() >= 0 and probs.max() <= 1
