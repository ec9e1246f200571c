"""Exported code (``explorer.codegen.snippet``): the TensorFlow and PyTorch snippets compute
exactly what ``explorer.losses`` computes, for every loss and a spread of settings, run on
their own (no ``explorer`` import), train under Keras, and differentiate like the library."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from explorer import codegen, gradients, losses

RTOL = 1e-10  # float64: only summation order differs
NO_TORCH = "PyTorch is not installed: the PyTorch snippets are checked only where it is"
RNG = np.random.default_rng(2024)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _binary(spatial=(6, 7), batch=3):
    """Blobs of truth with image 0 empty; a soft prediction that half agrees."""
    g = (RNG.random((batch, *spatial, 1)) < 0.4).astype(np.float64)
    g[0] = 0.0
    p = np.clip(0.6 * g + 0.4 * RNG.random(g.shape), 0.0, 1.0)
    return g, p


def _multiclass(channels, spatial=(5, 6), batch=3):
    """One-hot truth (the last class absent from image 0), softmax prediction."""
    labels = RNG.integers(0, channels, (batch, *spatial))
    labels[0][labels[0] == channels - 1] = 0
    g = np.eye(channels)[labels]
    return g, _softmax(2.0 * g + RNG.normal(size=g.shape))


def _class0_empty_in_image0():
    """Three classes; in image 0 class 0 is absent from the truth AND predicted exactly 0."""
    g, p = _multiclass(3)
    labels = g.argmax(-1)
    labels[0][labels[0] == 0] = 1
    g = np.eye(3)[labels]
    p[0, ..., 0] = 0.0
    return g, p / p.sum(-1, keepdims=True)


def _both_empty():
    """Binary batch whose image 0 is empty in truth AND prediction (0/0 without smoothing)."""
    g, p = _binary()
    p[0] = 0.0
    return g, p


DATA = {
    "binary": _binary(),
    "soft": (RNG.random((2, 5, 6, 1)), RNG.random((2, 5, 6, 1))),  # soft truth too
    "both_empty": _both_empty(),
    "c3": _multiclass(3),
    "c4": _multiclass(4),
    "c3_empty_class0": _class0_empty_in_image0(),
    "volume": _binary(spatial=(3, 4, 5), batch=2),  # [B, D, H, W, 1]
    "volume_c3": _multiclass(3, spatial=(3, 4, 4), batch=2),
    "hard_p": (_binary()[0], np.round(RNG.random((3, 6, 7, 1)))),  # p exactly 0 or 1: clipping
    # p from {0.25, 0.5, 0.75}: many exactly tied errors, across truth and background
    "ties": (_binary()[0], RNG.integers(1, 4, (3, 6, 7, 1)) / 4),
}


def _logits(g, p):
    """The same truth with logits behind p (sigmoid for one channel, softmax over several)."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return g, (np.log(p / (1 - p)) if p.shape[-1] == 1 else np.log(p))


def _marked(g, p, mark, share=0.2):
    """Some pixels' truth set to ``mark`` in every channel (ignore_index)."""
    g = g.copy()
    g[RNG.random(g.shape[:-1]) < share] = mark
    return g, p


def _class_absent_from_batch():
    g, p = DATA["c3"]
    labels = g.argmax(-1)
    labels[labels == 2] = 1
    return np.eye(3)[labels], p


DATA.update({
    "logits_binary": _logits(*DATA["binary"]),
    "logits_c3": _logits(*DATA["c3"]),
    "ignore_binary": _marked(*DATA["binary"], 255.0),
    "ignore_c3": _marked(*DATA["c3"], -1.0),
    "logits_ignore_binary": _logits(*_marked(*DATA["binary"], 255.0)),
    "logits_ignore_c3": _marked(*_logits(*DATA["c3"]), -1.0),
    "c3_absent": _class_absent_from_batch(),
})

# id, loss, settings, data
CASES = [
    ("dice-default", "dice_loss", {}, "binary"),
    ("dice-batch", "dice_loss", {"per_image": False, "smooth": 0.5}, "binary"),
    ("dice-squared", "dice_loss", {"squared": True, "epsilon": 1e-3}, "c3"),
    ("dice-soft-label", "dice_loss", {"soft_label": True, "smooth": 0.1}, "soft"),
    ("dice-soft-label-batch", "dice_loss", {"soft_label": True, "per_image": False}, "soft"),
    ("dice-squared-soft-truth-batch", "dice_loss", {"squared": True, "per_image": False}, "soft"),
    ("dice-weights-normalized", "dice_loss", {"class_weights": [1.0, 2.0, 0.5]}, "c3"),
    ("dice-weights-raw", "dice_loss",
     {"class_weights": [1.0, 2.0, 0.5], "normalize_weights": False}, "c3"),
    ("dice-sum-classes", "dice_loss", {"normalize_weights": False}, "c4"),
    ("dice-no-background", "dice_loss", {"include_background": False}, "c4"),
    ("dice-no-background-weights-all", "dice_loss",
     {"include_background": False, "class_weights": [9.0, 1.0, 2.0, 3.0]}, "c4"),
    ("dice-no-background-weights-kept", "dice_loss",
     {"include_background": False, "class_weights": [1.0, 2.0, 3.0], "per_image": False}, "c4"),
    ("dice-no-background-binary", "dice_loss", {"include_background": False}, "binary"),
    ("dice-volume", "dice_loss", {"smooth": 1e-6}, "volume"),
    ("dice-volume-c3", "dice_loss", {"per_image": False, "squared": True}, "volume_c3"),
    ("dice-epsilon-only", "dice_loss", {"smooth": 0.0, "epsilon": 1e-6}, "both_empty"),
    ("dice-0/0-unweighted", "dice_loss", {"smooth": 0.0, "epsilon": 0.0}, "c3_empty_class0"),
    # weight 0 on the 0/0 class: the library leaves it out (finite), so must the snippet
    ("dice-0/0-weighted-out", "dice_loss",
     {"smooth": 0.0, "epsilon": 0.0, "class_weights": [0.0, 1.0, 1.0]}, "c3_empty_class0"),
    ("tversky-0/0-weighted-out", "tversky_loss",
     {"smooth": 0.0, "epsilon": 0.0, "gamma": 2.0, "class_weights": [0.0, 1.0, 2.0],
      "normalize_weights": False}, "c3_empty_class0"),
    ("tversky-focal-0/0-nan", "tversky_loss", {"smooth": 0.0, "epsilon": 0.0, "gamma": 2.0},
     "c3_empty_class0"),
    ("gdl-0/0-free", "generalized_dice_loss", {"smooth": 0.0, "epsilon": 0.0}, "c3_empty_class0"),
    ("jaccard-default", "jaccard_loss", {}, "binary"),
    ("jaccard-batch-c3", "jaccard_loss", {"per_image": False, "smooth": 0.0, "epsilon": 1e-5},
     "c3"),
    ("jaccard-soft-label", "jaccard_loss", {"soft_label": True}, "soft"),
    ("jaccard-squared-soft-truth", "jaccard_loss", {"squared": True, "smooth": 1e-3}, "soft"),
    ("tversky-fn-heavy", "tversky_loss", {"alpha": 0.3, "beta": 0.7}, "binary"),
    ("tversky-focal", "tversky_loss", {"alpha": 0.7, "beta": 0.3, "gamma": 0.75}, "c3"),
    ("tversky-focal-batch", "tversky_loss",
     {"gamma": 2.0, "per_image": False, "class_weights": [1.0, 3.0, 1.0, 1.0]}, "c4"),
    ("tversky-odd", "tversky_loss", {"alpha": 2.0, "beta": 0.0, "gamma": 1.5}, "soft"),
    ("tversky-squared-a=b=2", "tversky_loss",
     {"alpha": 2.0, "beta": 2.0, "squared": True, "gamma": 1.5}, "soft"),
    ("tversky-volume", "tversky_loss", {"alpha": 0.2, "beta": 0.8, "smooth": 0.0,
                                        "epsilon": 1e-7}, "volume"),
    ("gdl-default", "generalized_dice_loss", {}, "c3"),
    ("gdl-batch-squared", "generalized_dice_loss", {"per_image": False, "squared": True}, "c4"),
    ("gdl-no-background", "generalized_dice_loss", {"include_background": False, "smooth": 0.0,
                                                    "epsilon": 1e-6}, "c3"),
    ("gdl-binary-empty-image", "generalized_dice_loss", {"smooth": 1.0}, "binary"),
    ("gdl-soft", "generalized_dice_loss", {"soft_label": True}, "soft"),
    ("bce-binary", "binary_crossentropy", {}, "binary"),
    ("bce-clipped", "binary_crossentropy", {}, "hard_p"),
    ("bce-c3", "binary_crossentropy", {}, "c3"),
    ("bce-dice-weighted", "bce_dice_loss", {"bce_weight": 0.5, "dice_weight": 2.0}, "binary"),
    ("bce-dice-no-background", "bce_dice_loss",
     {"include_background": False, "class_weights": [0.2, 0.3, 0.5], "smooth": 0.3}, "c3"),
    ("bce-dice-no-dice-0/0", "bce_dice_loss",
     {"dice_weight": 0.0, "bce_weight": 0.7, "smooth": 0.0, "epsilon": 0.0}, "both_empty"),
    ("bce-dice-0/0-nan", "bce_dice_loss", {"smooth": 0.0, "epsilon": 0.0}, "both_empty"),
    ("bce-log-dice", "bce_log_dice_loss", {}, "binary"),
    ("bce-log-dice-raw-weights", "bce_log_dice_loss",
     {"class_weights": [1.0, 1.0, 2.0, 0.5], "normalize_weights": False, "per_image": False},
     "c4"),
    ("focal-default", "focal_loss", {}, "binary"),
    ("focal-alpha-gamma0", "focal_loss", {"gamma": 0.0, "alpha": 0.25}, "hard_p"),
    ("focal-c3-alpha-list", "focal_loss", {"gamma": 1.5, "alpha": [0.2, 0.3, 0.5]}, "c3"),
    ("focal-c4-alpha-number", "focal_loss", {"alpha": 0.4}, "c4"),
    ("focal-soft-volume", "focal_loss", {"gamma": 3.0}, "volume"),
    ("lovasz-hinge-per-image", "lovasz_hinge", {"per_image": True}, "binary"),
    ("lovasz-hinge-batch", "lovasz_hinge", {"per_image": False}, "volume"),
    ("lovasz-hinge-clipped", "lovasz_hinge", {}, "hard_p"),
    ("lovasz-softmax-present", "lovasz_softmax", {}, "c3"),
    ("lovasz-softmax-all-per-image", "lovasz_softmax", {"classes": "all", "per_image": True},
     "c4"),
    ("lovasz-softmax-present-per-image", "lovasz_softmax", {"per_image": True}, "volume_c3"),
    ("lovasz-softmax-binary", "lovasz_softmax", {"classes": "all"}, "binary"),
    ("lovasz-softmax-binary-empty-image", "lovasz_softmax", {"per_image": True}, "binary"),
    # the peers' options (issue 16): each keyword on its own, then together
    ("dice-logits", "dice_loss", {"from_logits": True}, "logits_binary"),
    ("dice-logits-c3-batch", "dice_loss", {"from_logits": True, "per_image": False},
     "logits_c3"),
    ("dice-ignore", "dice_loss", {"ignore_index": 255}, "ignore_binary"),
    ("dice-ignore-c3-weights", "dice_loss", {"ignore_index": -1, "class_weights": [1, 2, 3]},
     "ignore_c3"),
    ("jaccard-logits-ignore-soft-label", "jaccard_loss",
     {"from_logits": True, "ignore_index": -1, "soft_label": True}, "logits_ignore_c3"),
    ("tversky-logits-ignore-focal", "tversky_loss",
     {"from_logits": True, "ignore_index": 255, "alpha": 0.3, "beta": 0.7, "gamma": 1.5},
     "logits_ignore_binary"),
    *[(f"dice-empty-{e}-{'image' if per else 'batch'}", "dice_loss",
       {"empty": e, "per_image": per}, "c3_absent")
      for e in losses.EMPTY_CONVENTIONS for per in (True, False)],
    ("dice-empty-skip-binary", "dice_loss", {"empty": "skip"}, "binary"),
    ("dice-empty-skip-raw-weights", "dice_loss",
     {"empty": "skip", "class_weights": [0.0, 1.0, 2.0], "normalize_weights": False},
     "c3_empty_class0"),
    ("dice-empty-zero-0/0", "dice_loss", {"empty": "zero", "smooth": 0.0, "epsilon": 0.0},
     "c3_empty_class0"),
    ("jaccard-empty-one", "jaccard_loss", {"empty": "one", "per_image": False}, "c3_absent"),
    ("tversky-empty-zero-focal", "tversky_loss",
     {"empty": "zero", "gamma": 2.0, "alpha": 0.2, "beta": 0.8}, "c3_absent"),
    ("tversky-empty-skip-weights", "tversky_loss",
     {"empty": "skip", "class_weights": [1.0, 2.0, 3.0], "per_image": False}, "c3_absent"),
    ("gdl-simple", "generalized_dice_loss", {"weight_type": "simple"}, "c3"),
    ("gdl-uniform-batch", "generalized_dice_loss", {"weight_type": "uniform",
                                                    "per_image": False}, "c4"),
    ("gdl-simple-squared", "generalized_dice_loss", {"weight_type": "simple", "squared": True},
     "c3_absent"),
    *[(f"gdl-empty-{e}", "generalized_dice_loss", {"empty": e}, "binary")
      for e in losses.EMPTY_CONVENTIONS],
    ("gdl-empty-skip-uniform-0/0", "generalized_dice_loss",
     {"empty": "skip", "weight_type": "uniform", "smooth": 0.0, "epsilon": 0.0}, "both_empty"),
    ("gdl-logits-ignore", "generalized_dice_loss",
     {"from_logits": True, "ignore_index": -1, "weight_type": "simple"}, "logits_ignore_c3"),
    ("bce-logits", "binary_crossentropy", {"from_logits": True}, "logits_binary"),
    ("bce-logits-c3", "binary_crossentropy", {"from_logits": True}, "logits_c3"),
    ("bce-pos-weight", "binary_crossentropy", {"pos_weight": 3.0}, "binary"),
    ("bce-pos-weight-per-channel", "binary_crossentropy", {"pos_weight": [1.0, 2.0, 0.5]},
     "c3"),
    ("bce-class-weights", "binary_crossentropy", {"class_weights": [1.0, 3.0]}, "binary"),
    ("bce-class-weights-c3-ignore", "binary_crossentropy",
     {"class_weights": [1.0, 2.0, 0.5], "ignore_index": -1}, "ignore_c3"),
    ("bce-everything", "binary_crossentropy",
     {"from_logits": True, "class_weights": [1.0, 2.0, 0.5], "pos_weight": 2.0,
      "ignore_index": -1}, "logits_ignore_c3"),
    ("bce-dice-logits-ignore-empty", "bce_dice_loss",
     {"from_logits": True, "ignore_index": 255, "empty": "zero"}, "logits_ignore_binary"),
    ("bce-log-dice-logits-ignore-skip", "bce_log_dice_loss",
     {"from_logits": True, "ignore_index": -1, "empty": "skip"}, "logits_ignore_c3"),
    ("bce-log-dice-empty-one", "bce_log_dice_loss", {"empty": "one"}, "c3_absent"),
    ("focal-logits", "focal_loss", {"from_logits": True, "alpha": 0.25}, "logits_binary"),
    ("focal-logits-c3", "focal_loss", {"from_logits": True, "alpha": [0.2, 0.3, 0.5],
                                       "gamma": 1.5}, "logits_c3"),
    ("focal-class-weights", "focal_loss", {"class_weights": [1.0, 3.0]}, "binary"),
    ("focal-class-weights-ignore-c3", "focal_loss",
     {"class_weights": [1.0, 2.0, 3.0], "ignore_index": -1, "gamma": 0.0}, "ignore_c3"),
    ("lovasz-hinge-ignore", "lovasz_hinge", {"ignore_index": 255}, "ignore_binary"),
    ("lovasz-hinge-logits-ignore-batch", "lovasz_hinge",
     {"from_logits": True, "ignore_index": 255, "per_image": False}, "logits_ignore_binary"),
    ("lovasz-hinge-probabilities", "lovasz_hinge", {"from_logits": False}, "binary"),
    ("lovasz-softmax-logits-ignore", "lovasz_softmax",
     {"from_logits": True, "ignore_index": -1, "per_image": True}, "logits_ignore_c3"),
    ("lovasz-softmax-ignore-all", "lovasz_softmax", {"ignore_index": -1, "classes": "all"},
     "ignore_c3"),
    # boundary (Kervadec et al. 2019) and clDice (Shit et al. 2021), alone and beside Dice
    ("boundary", "boundary_loss", {}, "binary"),
    ("boundary-volume", "boundary_loss", {}, "volume"),
    ("boundary-logits-ignore-no-background", "boundary_loss",
     {"from_logits": True, "ignore_index": -1, "include_background": False}, "logits_ignore_c3"),
    ("boundary-dice", "boundary_dice_loss", {"boundary_weight": 0.5}, "c3"),
    ("boundary-dice-logits-ignore-batch", "boundary_dice_loss",
     {"from_logits": True, "ignore_index": 255, "per_image": False}, "logits_ignore_binary"),
    ("boundary-dice-weight-0", "boundary_dice_loss", {"boundary_weight": 0.0}, "binary"),
    ("cl-dice", "cl_dice_loss", {}, "binary"),
    ("cl-dice-volume", "cl_dice_loss", {"iterations": 2}, "volume_c3"),
    ("cl-dice-logits-ignore-batch", "cl_dice_loss",
     {"from_logits": True, "ignore_index": -1, "iterations": 5, "per_image": False},
     "logits_ignore_c3"),
    ("cl-dice-smooth-0", "cl_dice_loss", {"smooth": 0.0, "include_background": False}, "c3"),
    ("cl-dice-dice", "cl_dice_dice_loss", {"cl_dice_weight": 0.5}, "c3"),
    ("cl-dice-dice-logits-ignore", "cl_dice_dice_loss",
     {"from_logits": True, "ignore_index": 255, "empty": "zero"}, "logits_ignore_binary"),
]


def _logit(p):
    p = np.clip(p, losses.PROB_CLIP, 1 - losses.PROB_CLIP)
    return np.log(p) - np.log1p(-p)


def library_value(loss, g, p, settings):
    """The library on what the snippet is given: probabilities, or logits where
    from_logits=True is said (lovasz_hinge's snippet converts probabilities otherwise)."""
    arg = _logit(p) if loss in losses.TAKES_LOGITS and "from_logits" not in settings else p
    return float(losses.LOSSES[loss](g, arg, **settings))


def load(framework, loss, **settings):
    namespace = {}
    exec(codegen.snippet(framework, loss=loss, **settings), namespace)  # noqa: S102
    return namespace["loss_fn"]


def test_every_loss_is_covered():
    assert {case[1] for case in CASES} == set(losses.LOSSES)


def test_zero_over_zero_cases_have_teeth():
    """The 0/0 cases above: NaN without weights, finite when the 0/0 class weighs 0."""
    g, p = DATA["c3_empty_class0"]
    assert np.isnan(library_value("dice_loss", g, p, {"smooth": 0.0, "epsilon": 0.0}))
    weighted = {"smooth": 0.0, "epsilon": 0.0, "class_weights": [0.0, 1.0, 1.0]}
    assert np.isfinite(library_value("dice_loss", g, p, weighted))
    assert np.isfinite(float(load("tensorflow", "dice_loss", **weighted)(g, p)))
    focal = {"smooth": 0.0, "epsilon": 0.0, "gamma": 2.0}
    assert np.isnan(library_value("tversky_loss", g, p, focal))


def test_every_new_keyword_and_value_is_covered():
    said = {(key, repr(value)) for _, _, settings, _ in CASES for key, value in settings.items()}
    for key in ("from_logits", "ignore_index", "class_weights", "pos_weight"):
        assert any(k == key for k, _ in said), key
    for empty in losses.EMPTY_CONVENTIONS:
        assert ("empty", repr(empty)) in said
    for kind in losses.WEIGHT_TYPES[1:]:
        assert ("weight_type", repr(kind)) in said
    issue_16 = {"dice_loss", "jaccard_loss", "tversky_loss", "generalized_dice_loss",
                "binary_crossentropy", "bce_dice_loss", "bce_log_dice_loss", "focal_loss",
                "lovasz_hinge", "lovasz_softmax", "boundary_loss", "boundary_dice_loss",
                "cl_dice_loss", "cl_dice_dice_loss"}
    for keyword in ("from_logits", "ignore_index"):
        covered = {case[1] for case in CASES if keyword in case[2]}
        assert issue_16 <= covered, (keyword, issue_16 - covered)


@pytest.mark.parametrize("case_id, loss, settings, data", CASES, ids=[c[0] for c in CASES])
def test_tensorflow_snippet_equals_library(case_id, loss, settings, data):
    g, p = DATA[data]
    got = load("tensorflow", loss, **settings)(g, p)
    assert got.dtype == tf.float64
    np.testing.assert_allclose(float(got), library_value(loss, g, p, settings),
                               rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize("case_id, loss, settings, data", CASES, ids=[c[0] for c in CASES])
def test_pytorch_snippet_equals_library(case_id, loss, settings, data):
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    g, p = DATA[data]
    got = load("pytorch", loss, **settings)(torch.from_numpy(g), torch.from_numpy(p))
    assert got.dtype == torch.float64 and got.shape == ()
    np.testing.assert_allclose(float(got), library_value(loss, g, p, settings),
                               rtol=RTOL, atol=1e-14)


# -------------------------------------------------------------- degenerate cases


def _dice_by_hand(g, p, smooth, epsilon):
    """numpy: per-image binary Dice loss, mean over the batch (0/0 -> nan)."""
    axes = tuple(range(1, g.ndim))
    with np.errstate(invalid="ignore"):
        dice = (2 * (g * p).sum(axes) + smooth) / (g.sum(axes) + p.sum(axes) + smooth + epsilon)
    return np.mean(1 - dice)


@pytest.mark.parametrize("framework", codegen.FRAMEWORKS)
def test_both_empty_without_smoothing_is_nan_like_the_library(framework):
    if framework == "pytorch":
        torch = pytest.importorskip("torch", reason=NO_TORCH)
    g, p = DATA["both_empty"]
    args = (g, p) if framework == "tensorflow" else (torch.from_numpy(g), torch.from_numpy(p))
    nan_fn = load(framework, "dice_loss", smooth=0.0, epsilon=0.0)
    assert np.isnan(float(nan_fn(*args)))
    assert np.isnan(float(losses.dice_loss(g, p, smooth=0.0, epsilon=0.0)))
    assert np.isnan(_dice_by_hand(g, p, 0.0, 0.0))
    # epsilon > 0 alone: the empty image scores Dice 0, i.e. loss 1 (punished)
    eps_fn = load(framework, "dice_loss", smooth=0.0, epsilon=1e-6)
    expected = _dice_by_hand(g, p, 0.0, 1e-6)
    np.testing.assert_allclose(float(eps_fn(*args)), expected, rtol=RTOL)
    rest = _dice_by_hand(g[1:], p[1:], 0.0, 1e-6)
    np.testing.assert_allclose(expected, (1.0 + 2 * rest) / 3, rtol=1e-12)


def test_nan_case_keeps_finite_gradients_like_the_library():
    g, p = DATA["both_empty"]
    fn = load("tensorflow", "dice_loss", smooth=0.0, epsilon=0.0)
    x = tf.constant(p)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = fn(g, x)
    grad = tape.gradient(value, x).numpy()
    lib_value, lib_grad = gradients.loss_and_gradient("dice_loss", g, p, smooth=0.0, epsilon=0.0)
    assert np.isnan(float(value)) and np.isnan(lib_value)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, lib_grad, rtol=1e-9, atol=1e-15)


# ------------------------------------------------------------------ gradients


GRADIENT_CASES = [
    ("dice_loss", {"squared": True, "class_weights": [1.0, 2.0, 0.5]}, "c3"),
    ("tversky_loss", {"alpha": 0.7, "beta": 0.3, "gamma": 0.75, "per_image": False}, "c3"),
    ("generalized_dice_loss", {"include_background": False}, "c4"),
    ("bce_dice_loss", {"soft_label": True}, "soft"),
    ("focal_loss", {"gamma": 2.0, "alpha": 0.25}, "binary"),
    ("lovasz_hinge", {"per_image": True}, "binary"),
    ("lovasz_softmax", {"per_image": True}, "c3"),
    # tied errors: the gradient depends on the order of ties (stable, pixel order)
    ("lovasz_hinge", {"per_image": False}, "ties"),
    ("lovasz_softmax", {"classes": "all", "per_image": True}, "ties"),
    # the peers' options (issue 16), w.r.t. the probabilities
    ("dice_loss", {"ignore_index": -1, "empty": "skip", "class_weights": [1.0, 2.0, 0.5]},
     "ignore_c3"),
    ("tversky_loss", {"empty": "zero", "gamma": 2.0, "per_image": False}, "c3_absent"),
    ("generalized_dice_loss", {"weight_type": "simple", "empty": "skip"}, "binary"),
    ("binary_crossentropy", {"pos_weight": [1.0, 3.0, 0.5], "class_weights": [1.0, 2.0, 0.5],
                             "ignore_index": -1}, "ignore_c3"),
    ("focal_loss", {"class_weights": [1.0, 3.0], "ignore_index": 255}, "ignore_binary"),
    ("lovasz_softmax", {"ignore_index": -1, "per_image": True}, "ignore_c3"),
]


@pytest.mark.parametrize("loss, settings, data", GRADIENT_CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in GRADIENT_CASES])
def test_gradients_equal_the_library(loss, settings, data):
    """GradientTape through the TensorFlow snippet, autograd through the PyTorch one, against
    ``explorer.gradients`` (w.r.t. the probabilities)."""
    g, p = DATA[data]
    lib_value, lib_grad = gradients.loss_and_gradient(loss, g, p, **settings)
    x = tf.constant(p)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = load("tensorflow", loss, **settings)(g, x)
    np.testing.assert_allclose(float(value), lib_value, rtol=RTOL)
    np.testing.assert_allclose(tape.gradient(value, x).numpy(), lib_grad, rtol=1e-8, atol=1e-14)
    try:
        import torch
    except ImportError:
        return  # the PyTorch half is checked only where PyTorch is installed
    x = torch.tensor(p, requires_grad=True)
    value = load("pytorch", loss, **settings)(torch.from_numpy(g), x)
    value.backward()
    np.testing.assert_allclose(value.item(), lib_value, rtol=RTOL)
    np.testing.assert_allclose(x.grad.numpy(), lib_grad, rtol=1e-8, atol=1e-14)


# ---------------------------------------------------------- usable on its own


def test_snippet_runs_in_a_fresh_interpreter_without_explorer(tmp_path):
    g, p = DATA["c4"]
    settings = {"class_weights": [0.0, 1.0, 2.0, 1.0], "include_background": False,
                "squared": True, "per_image": False}
    np.save(tmp_path / "g.npy", g)
    np.save(tmp_path / "p.npy", p)
    source = codegen.snippet("tensorflow", loss="tversky_loss", **settings)
    assert "explorer" not in "".join(line.split("#")[0] for line in source.splitlines())
    program = (
        "import sys; sys.modules['explorer'] = None  # any explorer import would fail\n"
        + source
        + "\nimport numpy as np\n"
        "print(repr(float(loss_fn(np.load('g.npy'), np.load('p.npy')))))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-I", "-c", program], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = float(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(printed, library_value("tversky_loss", g, p, settings), rtol=RTOL)


def test_tensorflow_snippet_trains_a_keras_model_in_float32():
    import keras

    keras.utils.set_random_seed(0)
    x = RNG.random((4, 8, 8, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.float32)
    settings = {"smooth": 0.5, "per_image": False}
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=load("tensorflow", "bce_dice_loss", **settings))
    before = model.evaluate(x, y, batch_size=4, verbose=0)
    expected = library_value("bce_dice_loss", y, model.predict(x, verbose=0), settings)
    np.testing.assert_allclose(before, expected, rtol=1e-5)
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.evaluate(x, y, batch_size=4, verbose=0) < before


GRAPH_CASES = [("dice_loss", {"include_background": False}, "c3"),
               ("generalized_dice_loss", {"per_image": False}, "c4"),
               ("focal_loss", {"alpha": [0.2, 0.3, 0.5]}, "c3"),
               ("lovasz_hinge", {"per_image": True}, "binary"),
               ("lovasz_softmax", {"per_image": True}, "c3"),
               ("binary_crossentropy", {"from_logits": True, "class_weights": [1.0, 2.0, 0.5],
                                        "ignore_index": -1}, "logits_ignore_c3"),
               ("dice_loss", {"empty": "skip", "ignore_index": -1}, "ignore_c3"),
               ("generalized_dice_loss", {"empty": "skip", "weight_type": "simple"}, "c4")]


@pytest.mark.parametrize("loss, settings, data", GRAPH_CASES, ids=[c[0] for c in GRAPH_CASES])
def test_tensorflow_snippet_compiles_with_unknown_batch_and_size(loss, settings, data):
    """As Keras traces it: a tf.function whose batch and spatial sizes are None."""
    g, p = DATA[data]
    spec = tf.TensorSpec([None, None, None, g.shape[-1]], tf.float64)
    compiled = tf.function(load("tensorflow", loss, **settings), input_signature=[spec, spec])
    np.testing.assert_allclose(float(compiled(g, p)), library_value(loss, g, p, settings),
                               rtol=RTOL)


def test_tensorflow_snippet_in_float32_matches_the_library_in_float32():
    g, p = (a.astype(np.float32) for a in DATA["c3"])
    settings = {"class_weights": [1.0, 2.0, 0.5], "smooth": 1e-3}
    got = load("tensorflow", "jaccard_loss", **settings)(g, p)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(float(got), library_value("jaccard_loss", g, p, settings),
                               rtol=1e-6)


# ------------------------------------------------------------------- the text


def test_snippet_header_and_constants_say_what_it_is():
    source = codegen.snippet("pytorch", loss="tversky_loss", alpha=0.3, beta=0.7)
    head = source.splitlines()[:6]
    assert any("Generated by the Dice Loss Explorer" in line for line in head)
    assert any("channels-last probabilities" in line for line in head)
    assert any("alpha=0.3" in line and "beta=0.7" in line for line in head)
    assert "ALPHA = 0.3" in source and "BETA = 0.7" in source
    assert "import torch" in source and "tensorflow" not in source
    assert "GAMMA" not in source  # gamma = 1: no focal code
    assert "CLASS_WEIGHTS" not in source  # no weights: no weight code
    for absent in ("IGNORE_INDEX", "present =", "torch.sigmoid", "torch.softmax"):
        assert absent not in source  # the defaults write none of the new keywords' code


def test_numpy_settings_bake_like_plain_python():
    plain = codegen.snippet("tensorflow", loss="dice_loss", smooth=0.5, per_image=False,
                            class_weights=[1.0, 2.0, 0.5])
    numpy = codegen.snippet("tensorflow", loss="dice_loss", smooth=np.float32(0.5),
                            per_image=np.bool_(False), class_weights=np.array([1, 2, 0.5]))
    assert numpy == plain


def test_from_logits_snippets_say_they_take_logits():
    source = codegen.snippet("tensorflow", loss="focal_loss", from_logits=True)
    assert "takes channels-last logits (from_logits=True)" in source
    assert "tf.math.log_sigmoid" in source and "tf.nn.log_softmax" in source
    assert "clip_by_value" not in source  # no clipped probabilities on the way
    hinge = codegen.snippet("pytorch", loss="lovasz_hinge", from_logits=True)
    assert "logits = y_pred" in hinge and "log1p" not in hinge


def test_lovasz_hinge_snippet_says_it_converts_probabilities_to_logits():
    source = codegen.snippet("tensorflow", loss="lovasz_hinge")
    assert "logits" in source and "1e-7" in source and "log1p" in source


def test_class_weight_length_mismatch_raises_in_the_snippet():
    g, p = DATA["c3"]
    with pytest.raises(ValueError, match="CLASS_WEIGHTS has 2 values for 3 classes"):
        load("tensorflow", "dice_loss", class_weights=[1.0, 2.0])(g, p)


# --------------------------------------------------------------------- errors


def test_unknown_framework_lists_both():
    with pytest.raises(ValueError, match="tensorflow.*pytorch.*'jax'"):
        codegen.snippet("jax", loss="dice_loss")


def test_unknown_loss_lists_the_accepted_ones():
    with pytest.raises(ValueError, match="dice_loss.*lovasz_softmax.*'dice'"):
        codegen.snippet("tensorflow", loss="dice")


def test_unknown_keyword_is_named_with_the_accepted_ones():
    with pytest.raises(ValueError, match="'gamma'.*accepted.*smooth"):
        codegen.snippet("tensorflow", loss="dice_loss", gamma=2.0)


@pytest.mark.parametrize("loss, settings, message", [
    ("dice_loss", {"smooth": -1.0}, "smooth must be a finite number >= 0"),
    ("tversky_loss", {"gamma": 0.0}, "gamma must be a finite number > 0"),
    ("lovasz_softmax", {"classes": "some"}, "classes must be 'present' or 'all'"),
    ("dice_loss", {"class_weights": [0.0, 0.0]}, "must not be all zero"),
    ("focal_loss", {"alpha": 1.5}, "alpha must be a finite number >= 0 and <= 1"),
    # combinations the library rejects (they leave the loss's range)
    ("dice_loss", {"squared": True, "soft_label": True}, "soft_label=True .* squared=True"),
    ("bce_dice_loss", {"squared": True, "soft_label": True}, "soft_label=True .* squared=True"),
    ("generalized_dice_loss", {"squared": True, "soft_label": True}, "can't be combined"),
    ("tversky_loss", {"squared": True, "alpha": 2.0, "beta": 0.1},
     "squared=True needs alpha == beta"),
])
def test_bad_values_raise_the_library_error(loss, settings, message):
    with pytest.raises(ValueError, match=message):
        codegen.snippet("pytorch", loss=loss, **settings)
