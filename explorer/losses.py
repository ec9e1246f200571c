"""Segmentation losses and metrics in pure TensorFlow, plus Keras ``Loss`` classes.

Tensors are channels-last ``[B, S1, ..., Sk, C]``: axis 0 is the batch, the last
axis the classes, every axis in between is spatial (images and volumes alike).
Binary segmentation is ``C = 1``; multi-class is one-hot ``y_true`` with softmax
``y_pred``. ``y_pred`` holds probabilities, except where a function says logits.
Computation is float32, or float64 when an input is float64.

The Dice family, for image ``b`` and class ``c`` (sums over the spatial axes)::

    I = sum p*g     P = sum p (sum p^2 if squared)     G = sum g (sum g^2 if squared)
    dice[b, c] = (2 I + smooth) / (P + G + smooth + epsilon)

``smooth`` sits in numerator and denominator (Laplace smoothing: empty vs empty
scores 1); ``epsilon`` only in the denominator (it only guards 0/0). With both 0,
an empty truth against an empty prediction is 0/0 and the result is NaN on
purpose: :func:`degenerate_cases` names the reason for a UI.

Dice, Jaccard and Tversky are one formula, the Tversky index
``(I + s) / (I + a FP + b FN + s + e)`` with ``FP = P - I``, ``FN = G - I``:
Dice is ``a = b = 1/2`` (with ``s/2, e/2``) and Jaccard ``a = b = 1``.
Reductions: ``per_image=True`` scores each image, then averages over the batch;
``per_image=False`` sums over the whole batch first (one score per class).
Classes are combined as ``sum_c w_c L_c / sum_c w_c`` (or ``sum_c w_c L_c`` when
``normalize_weights=False``).

Options the peers' losses take (MONAI, segmentation_models_pytorch "smp", torch, Keras):

* ``from_logits=True`` (every loss): ``y_pred`` are logits ``z``, ``p = sigmoid(z)`` for one
  channel and ``p = softmax(z)`` over several. Cross-entropy and focal use ``log_sigmoid`` /
  ``log_softmax`` of ``z`` (exact for any finite ``z``, no clipping); the region losses and
  Lovasz-Softmax use ``sigmoid`` / ``softmax``. ``lovasz_hinge`` takes logits by default
  (``from_logits=True``); with ``from_logits=False`` it takes probabilities and turns them
  into clipped logits (:func:`probability_logits`). :func:`takes_logits` says which.
* ``ignore_index`` (every loss): a truth value outside [0, 1] (such as 255 or -1) marking
  pixels to leave out, as torch's and smp's ``ignore_index``. A pixel whose ``y_true``
  equals it in any channel contributes to no sum and to no count: its ``p`` and ``g`` are 0
  in I, P and G, it is not in a cross-entropy or focal mean, and Lovasz sorts it out.
* ``class_weights`` on ``binary_crossentropy`` and ``focal_loss``: torch's weighted mean
  ``sum_i w[y_i] l_i / sum_i w[y_i]`` over the batch's pixels (``CrossEntropyLoss(weight=w)``
  with mean reduction), ``l_i`` the pixel's loss and ``w[y_i] = sum_c w_c g_ic`` the weight of
  its true class. One channel is two classes: ``w = [background, foreground]`` and
  ``w[y_i] = w_0 (1 - g_i) + w_1 g_i``. (For the Dice family ``class_weights`` weigh the
  per-class losses, as above.)
* ``pos_weight`` on ``binary_crossentropy``: the positive term ``g log p`` times it (one
  number, or one per channel), as torch's ``BCEWithLogitsLoss(pos_weight=...)``.
* ``weight_type`` on ``generalized_dice_loss``: ``"square"`` ``w_c = 1/G_c^2`` (Sudre et al.,
  the default), ``"simple"`` ``1/G_c``, ``"uniform"`` 1: MONAI's ``w_type``.
* ``empty`` on the region losses (``dice_loss``, ``jaccard_loss``, ``tversky_loss``,
  ``generalized_dice_loss``, and the Dice part of ``bce_dice_loss`` / ``bce_log_dice_loss``):
  what an entry whose truth is empty scores. An entry is one (image, class), or one class when
  ``per_image=False``; for generalized Dice it is one image (or the batch) whose truth holds
  no kept class at all. The one table of the conventions:

  =========  ====================================================  ========================
  empty      an entry whose truth is empty (G = 0)                 who does this
  =========  ====================================================  ========================
  "smooth"   what smooth and epsilon make it: loss 0 if nothing    ours (the default), MONAI
             is predicted and smooth > 0, 1 if smooth = 0 <        DiceLoss, segmentation_
             epsilon, NaN at 0/0, near 1 when pixels are           models (Keras)
             predicted (generalized Dice: every class weighs 1)
  "zero"     loss 0 whatever is predicted, still in the mean       smp Dice/Jaccard/Tversky;
                                                                   MONAI GeneralizedDice
                                                                   (none present)
  "one"      loss 1 whatever is predicted, in the mean             Keras 3 ``Dice``
  "nan"      NaN whatever is predicted: undefined, and said so     MONAI DiceMetric's entry
  "skip"     out of the class mean; an image with no entry left    MONAI DiceMetric's mean
             is out of the batch mean; nothing left gives 0        (NaN entries left out)
  =========  ====================================================  ========================

  In the score (``dice_coefficient``, the ``-log`` of ``bce_log_dice_loss``) "zero" is a score
  of 1 and "one" a score of 0.
* ``sample_weight`` (the Keras classes): the classes return one value per image, whose batch
  mean is the loss, and leave the reduction to Keras (``"sum_over_batch_size"``:
  ``sum_b s_b L_b / B``; ``"mean_with_sample_weight"``: ``sum_b s_b L_b / sum_b s_b``).
  Without ``sample_weight`` the value is the function's. Where a loss normalises over the
  batch (``class_weights`` or ``ignore_index`` in cross-entropy and focal, ``empty="skip"``),
  an image's value is its share: ``B`` times its part of the batch's sum over the batch's
  normaliser. Losses with no value per image refuse ``sample_weight`` with a sentence
  (``per_image=False``; ``bce_log_dice_loss``, whose ``-log`` is of the batch's mean Dice).

What a user imports (``__all__``):

* loss functions ``f(y_true, y_pred, **keywords) -> scalar``: ``dice_loss``,
  ``jaccard_loss``, ``tversky_loss``, ``generalized_dice_loss``, ``binary_crossentropy``,
  ``bce_dice_loss``, ``bce_log_dice_loss``, ``focal_loss``, ``lovasz_hinge`` (logits),
  ``lovasz_softmax``, ``boundary_loss`` and ``boundary_dice_loss`` (Kervadec et al. 2019; the
  truth's signed distance map is computed by SciPy, eagerly or through ``tf.numpy_function``),
  ``cl_dice_loss`` and ``cl_dice_dice_loss`` (soft clDice, Shit et al. 2021); all of them
  by name in ``LOSSES``;
* Keras ``Loss`` classes for ``model.compile`` (``LOSS_CLASSES`` by loss name):
  ``DiceLoss``, ``BCELoss``, ``BCEDiceLoss``, ``BCELogDiceLoss``,
  ``JaccardLoss``, ``TverskyLoss``, ``FocalLoss``, ``GeneralizedDiceLoss``,
  ``LovaszHingeLoss``, ``LovaszSoftmaxLoss``, ``BoundaryLoss``, ``BoundaryDiceLoss``,
  ``ClDiceLoss``, ``ClDiceDiceLoss`` (registered, so saved models reload);
* scores and diagnostics: ``dice_coefficient``, ``per_class_dice``, ``overlap_sums``,
  ``hard_metrics``, ``degenerate_cases`` (why a score is 0/0, in words), ``signed_distance``
  and ``soft_skeleton`` (what the boundary and clDice losses are built on);
* checks and helpers: ``check_keywords``, ``check_settings``, ``loss_keywords``,
  ``prepare_inputs``, ``clip_probabilities``, ``probability_logits``, ``takes_logits``;
  the choices ``EMPTY_CONVENTIONS`` and ``WEIGHT_TYPES``.

Example::

    model.compile(optimizer="adam", loss=DiceLoss(smooth=1.0, per_image=True))
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "LOSSES", "TAKES_LOGITS", "PROB_CLIP",
    "dice_loss", "jaccard_loss", "tversky_loss", "generalized_dice_loss", "binary_crossentropy",
    "bce_dice_loss", "bce_log_dice_loss", "focal_loss", "lovasz_hinge", "lovasz_softmax",
    "LOSS_CLASSES", "DiceLoss", "BCELoss", "BCEDiceLoss", "BCELogDiceLoss", "JaccardLoss", "TverskyLoss", "FocalLoss", "GeneralizedDiceLoss",
    "LovaszHingeLoss", "LovaszSoftmaxLoss",
    "boundary_loss", "boundary_dice_loss", "cl_dice_loss", "cl_dice_dice_loss",
    "BoundaryLoss", "BoundaryDiceLoss", "ClDiceLoss", "ClDiceDiceLoss",
    "signed_distance", "soft_skeleton",
    "dice_coefficient", "per_class_dice", "overlap_sums", "hard_metrics", "degenerate_cases",
    "Degenerate", "check_keywords", "check_settings", "loss_keywords", "prepare_inputs",
    "clip_probabilities", "probability_logits", "takes_logits", "EMPTY_CONVENTIONS",
    "WEIGHT_TYPES",
]

PROB_CLIP = 1e-7  # like Keras' backend epsilon: BCE/focal clip p to [1e-7, 1 - 1e-7]
LOVASZ_CLASSES = ("present", "all")
EMPTY_CONVENTIONS = ("smooth", "zero", "one", "nan", "skip")  # `empty`: the docstring's table
WEIGHT_TYPES = ("square", "simple", "uniform")  # generalized Dice's 1/G^2, 1/G, 1 (MONAI w_type)


# --------------------------------------------------------------------------- checks


def _concrete(value):
    """The value as numpy when it can be inspected now (not a symbolic graph tensor)."""
    if tf.is_tensor(value):
        return value.numpy() if tf.executing_eagerly() else None
    return None if value is None else np.asarray(value)


def _number_rule(low, high=math.inf, *, low_open=False):
    def check(name, value):
        v = _concrete(value)
        if v is None:
            return
        if v.dtype == bool or not np.issubdtype(v.dtype, np.number) or v.ndim != 0:
            raise ValueError(f"{name} must be a single number, got {value!r}")
        v = float(v)
        too_low = v <= low if low_open else v < low
        if not math.isfinite(v) or too_low or v > high:
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            if high != math.inf:
                bound += f" and <= {high:g}"
            raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return check


def _weights_rule(name, value):
    v = _concrete(value)
    if v is None:
        return
    if v.ndim != 1 or v.size == 0 or not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"{name} must be a 1-D list of numbers, one per class, got {value!r}")
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    if not np.any(v > 0):
        raise ValueError(f"{name} must not be all zero: at least one class needs a positive weight")


def _optional_alpha_rule(name, value):
    # focal alpha: None, one number in [0, 1], or one non-negative weight per class
    if value is None:
        return
    v = _concrete(value)
    if v is not None and v.ndim == 0:
        _number_rule(0.0, 1.0)(name, value)
    else:
        _weights_rule(name, value)


def _bool_rule(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _classes_rule(name, value):
    if value not in LOVASZ_CLASSES:
        raise ValueError(f"{name} must be 'present' or 'all', got {value!r}")


def _choice_rule(choices):
    def check(name, value):
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                             f"got {value!r}")
    return check


def _pos_weight_rule(name, value):
    # torch's pos_weight: None, one number >= 0, or one number >= 0 per channel
    v = None if value is None else _concrete(value)
    if v is None:
        return
    if v.ndim == 0:
        _NONNEGATIVE(name, value)
    elif v.ndim != 1 or v.size == 0 or v.dtype == bool or not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"{name} must be one number >= 0 or a 1-D list of numbers >= 0, one "
                         f"per channel, got {value!r}")
    elif not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _ignore_index_rule(name, value):
    v = None if value is None else _concrete(value)
    if v is None:
        return
    if (v.dtype == bool or not np.issubdtype(v.dtype, np.number) or v.ndim != 0
            or not np.isfinite(v)):
        raise ValueError(f"{name} must be None or one finite number, got {value!r}")
    if 0 <= float(v) <= 1:
        # a value in [0, 1] is a label (or a soft label): the mark must be one no label takes
        raise ValueError(f"{name} must be a truth value outside [0, 1] (such as 255 or -1), "
                         f"which no label can take, got {value!r}")


_NONNEGATIVE = _number_rule(0.0)


def _whole_rule(name, value):
    # a count of steps (soft skeleton iterations): a whole number >= 0, at most 100
    v = _concrete(value)
    if v is None:
        return
    if (v.dtype == bool or not np.issubdtype(v.dtype, np.number) or v.ndim != 0
            or not np.isfinite(v) or float(v) != round(float(v)) or not 0 <= float(v) <= 100):
        raise ValueError(f"{name} must be a whole number from 0 to 100, got {value!r}")

_RULES = {
    "smooth": _NONNEGATIVE,
    "epsilon": _NONNEGATIVE,
    "alpha": _NONNEGATIVE,
    "beta": _NONNEGATIVE,
    "gamma": _NONNEGATIVE,
    "bce_weight": _NONNEGATIVE,
    "dice_weight": _NONNEGATIVE,
    "threshold": _number_rule(0.0, 1.0),
    "class_weights": lambda name, v: v is None or _weights_rule(name, v),
    "classes": _classes_rule,
    "squared": _bool_rule,
    "per_image": _bool_rule,
    "normalize_weights": _bool_rule,
    "include_background": _bool_rule,
    "soft_label": _bool_rule,
    "from_logits": _bool_rule,
    "pos_weight": _pos_weight_rule,
    "weight_type": _choice_rule(WEIGHT_TYPES),
    "empty": _choice_rule(EMPTY_CONVENTIONS),
    "ignore_index": _ignore_index_rule,
    "boundary_weight": _NONNEGATIVE,
    "cl_dice_weight": _NONNEGATIVE,
    "iterations": _whole_rule,
}
# where one keyword means something different in one function
_RULE_OVERRIDES = {
    ("tversky_loss", "gamma"): _number_rule(0.0, low_open=True),
    ("focal_loss", "alpha"): _optional_alpha_rule,
}


def check_keywords(loss, keywords: dict, *, argument: str = "loss") -> dict:
    """The one keyword check for every caller (losses, gradients, codegen, conventions,
    the Keras classes, training): ``loss`` (a name in ``LOSSES``, or a loss function)
    must exist, every keyword be one the loss takes, every value in range
    (:func:`check_settings`). Returns the loss's full keywords: its defaults updated
    with ``keywords``. ``argument`` is the caller's name for ``loss``, for the message.
    """
    if callable(loss):
        fn, loss_name = loss, loss.__name__
    elif loss in LOSSES:
        fn, loss_name = LOSSES[loss], loss
    else:
        raise ValueError(f"{argument} must be one of {', '.join(sorted(LOSSES))}, "
                         f"got {loss!r}")
    accepted = loss_keywords(fn)
    unknown = sorted(set(keywords) - set(accepted))
    if unknown:
        raise ValueError(f"{loss_name} got an unknown keyword {unknown[0]!r}; accepted: "
                         f"{', '.join(sorted(accepted)) or 'none'}")
    check_settings(loss_name, **keywords)
    return {**accepted, **keywords}


def check_settings(loss_name: str, **settings) -> None:
    """Raise ``ValueError`` naming the first bad keyword of ``loss_name``, or a pair that
    leaves the loss's range: ``soft_label`` with ``squared``, ``squared`` with
    ``alpha != beta``.

    Values that are symbolic tensors (inside a compiled graph) are not inspected.
    """
    for key, value in settings.items():
        rule = _RULE_OVERRIDES.get((loss_name, key), _RULES.get(key))
        if rule is None:
            raise ValueError(f"{loss_name} got an unknown keyword {key!r}")
        rule(key, value)
    _check_combinations(settings)


def _check_combinations(settings):
    """Settings that are fine alone but leave the loss's range together."""
    if settings.get("squared") and settings.get("soft_label"):
        # sum min(p, g) against sum p^2 + sum g^2: p = g = 1/2 gives Dice 2 * 0.5 / 0.5 = 2
        raise ValueError(
            "soft_label=True (the L1 intersection) can't be combined with squared=True "
            "(sum p^2 + sum g^2): the score would exceed 1; use one of them")
    alpha, beta = _concrete(settings.get("alpha")), _concrete(settings.get("beta"))
    if settings.get("squared") and alpha is not None and beta is not None and alpha != beta:
        # Squared, FP = sum p^2 - sum p g and FN = sum g^2 - sum p g can each be negative
        # (g = 1, p = 1/2: FP = -1/4), so alpha != beta can push the denominator below I, even
        # to <= 0. With alpha = beta = a >= 0 it cannot: FP + FN = sum (p - g)^2 >= 0, so
        # I + a FP + a FN = I + a sum (p - g)^2 >= I and the index stays in [0, 1].
        raise ValueError(
            f"squared=True needs alpha == beta (got alpha={float(alpha):g}, "
            f"beta={float(beta):g}): with sums of squares the false-positive and "
            "false-negative terms can be negative on their own; use squared=False for "
            "alpha != beta")


def _compute_dtype(*arrays):
    dtypes = {tf.as_dtype(a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype)
              for a in arrays}
    return tf.float64 if tf.float64 in dtypes else tf.float32


def prepare_inputs(y_true, y_pred, *, pred_is_probability=True, ignore_index=None):
    """Validate and convert ``(y_true, y_pred)`` to tensors of the compute dtype.

    Raises ``ValueError`` for a rank below 3, different shapes, NaN or infinities, and
    (checked only when the values are at hand, not inside a compiled graph) values
    outside [0, 1] where probabilities are expected; ``y_true`` may also hold
    ``ignore_index``, the mark of pixels left out.
    """
    dtype = _compute_dtype(y_true, y_pred)
    tensors = []
    for name, value, in_unit in (("y_true", y_true, True), ("y_pred", y_pred, pred_is_probability)):
        t = tf.convert_to_tensor(value)
        rank = t.shape.rank
        if rank is None or rank < 3:
            raise ValueError(
                f"{name} must be channels-last [B, H, W, C] (or [B, D, H, W, C]), "
                f"got shape {t.shape}"
            )
        _check_values(name, t, in_unit, ignore_index if name == "y_true" else None)
        tensors.append(tf.cast(t, dtype))
    g, p = tensors
    if not g.shape.is_compatible_with(p.shape):
        raise ValueError(f"y_true and y_pred must have the same shape, got {g.shape} and {p.shape}")
    return g, p


def _check_values(name, t, in_unit, ignore_index=None):
    v = _concrete(t)
    if v is None or v.size == 0:
        return
    if v.dtype != bool and not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or infinite values")
    mark = None if ignore_index is None else _concrete(ignore_index)
    if mark is not None:
        v = v[v != mark]  # the pixels marked to be left out
    if in_unit and v.size and (v.min() < 0 or v.max() > 1):
        what = "labels (0/1 or soft)" if name == "y_true" else "probabilities"
        also = f" (or ignore_index = {float(mark):g})" if mark is not None else ""
        raise ValueError(
            f"{name} must hold {what} in [0, 1]{also}, got values from {v.min():g} to {v.max():g}"
        )


def _num(value, dtype):
    if tf.is_tensor(value):
        return tf.cast(value, dtype)
    # via numpy so a Python float keeps float64 precision in a float64 computation
    return tf.convert_to_tensor(np.asarray(value, dtype.as_numpy_dtype))


def _loss_inputs(y_true, y_pred, from_logits, ignore_index):
    """Validated ``(g, x, keep)``: the truth (0 where ignored), ``y_pred`` as given
    (probabilities, or logits when ``from_logits``) and the counted pixels ``keep``
    ([B, ..., 1], 1 or 0; None without ``ignore_index``)."""
    g, x = prepare_inputs(y_true, y_pred, pred_is_probability=not from_logits,
                          ignore_index=ignore_index)
    if ignore_index is None:
        return g, x, None
    ignored = tf.reduce_any(tf.equal(g, _num(ignore_index, g.dtype)), axis=-1, keepdims=True)
    g = tf.where(ignored, tf.zeros_like(g), g)
    return g, x, 1 - tf.cast(ignored, g.dtype)


def _probabilities(z):
    """``sigmoid(z)`` for one channel, ``softmax(z)`` over several."""
    return tf.sigmoid(z) if z.shape[-1] == 1 else tf.nn.softmax(z, axis=-1)


def _log_probabilities(z):
    """``(log p, log(1 - p))`` from the logits ``z``, exact for any finite ``z`` (no clip):
    ``log_sigmoid(z), log_sigmoid(-z)`` for one channel; for several, ``log_softmax(z)`` and
    ``log(1 - p_c) = logsumexp_{k != c} z_k - logsumexp_k z_k``."""
    if z.shape[-1] == 1:
        return tf.math.log_sigmoid(z), tf.math.log_sigmoid(-z)
    channels = z.shape[-1]
    # -inf on the diagonal leaves class c out of its own "others" sum (exp(-inf) = 0)
    others = tf.constant(np.where(np.eye(channels) > 0, -np.inf, 0.0), z.dtype)
    total = tf.reduce_logsumexp(z, axis=-1, keepdims=True)
    rest = tf.reduce_logsumexp(z[..., tf.newaxis, :] + others, axis=-1)
    return tf.nn.log_softmax(z, axis=-1), rest - total


def _region_inputs(y_true, y_pred, from_logits, ignore_index):
    """``(g, p)`` for the region losses: probabilities, and 0 in both at ignored pixels (as
    smp does), so those pixels enter no sum."""
    g, x, keep = _loss_inputs(y_true, y_pred, from_logits, ignore_index)
    p = _probabilities(x) if from_logits else x
    return g, (p if keep is None else p * keep)


def _mean_of_samples(per_sample):
    """The public loss: the mean of ``per_sample``'s values, which hold one row per image
    along axis 0 (one row for a whole-batch loss) and whose mean over all axes is the loss
    (an unweighted cross-entropy keeps its elements, so the mean is one reduction, as before).
    The Keras classes call ``loss.per_sample`` through :func:`_image_means`, so that Keras'
    reduction applies ``sample_weight``."""

    @functools.wraps(per_sample)
    def loss(*args, **keywords):
        return tf.reduce_mean(per_sample(*args, **keywords))

    loss.per_sample = per_sample
    return loss


def _image_means(values):
    """[B, ...] values -> [B]: each image's mean (its row of a ``per_sample`` result)."""
    rank = values.shape.rank
    return values if rank == 1 else tf.reduce_mean(values, axis=list(range(1, rank)))


def _row_shares(values, counted):
    """[R] values whose mean is the mean of ``values`` over the ``counted`` rows (0 when no
    row counts): ``R * value / count`` for a counted row, 0 for the others."""
    counted = tf.cast(counted, values.dtype)
    rows = tf.cast(tf.shape(values)[0], values.dtype)
    return tf.math.divide_no_nan(rows * tf.math.multiply_no_nan(values, counted),
                                 tf.reduce_sum(counted))


_EMPTY_LOSS = {"zero": 0.0, "one": 1.0, "nan": np.nan}  # "smooth" keeps the formula, "skip" drops


def _empty_entries(values, absent, empty, as_loss=True):
    """``values`` with the ``absent`` entries set by the ``empty`` convention ("zero", "one",
    "nan"; as a score "zero" is 1 and "one" 0)."""
    if empty not in _EMPTY_LOSS:
        return values
    fill = _EMPTY_LOSS[empty] if as_loss else 1 - _EMPTY_LOSS[empty]
    return tf.where(absent, tf.constant(fill, values.dtype), values)


# ----------------------------------------------------------------------- core sums


def _sum_axes(rank, per_image):
    return list(range(1 if per_image else 0, rank - 1))


def overlap_sums(g, p, *, squared=False, per_image=True, soft_label=False):
    """I, P, G of shape [B, C] (per image) or [1, C] (whole batch)."""
    axes = _sum_axes(g.shape.rank, per_image)
    inter = (p + g - tf.abs(p - g)) / 2 if soft_label else p * g
    sums = [
        tf.reduce_sum(inter, axes),
        tf.reduce_sum(p * p if squared else p, axes),
        tf.reduce_sum(g * g if squared else g, axes),
    ]
    return sums if per_image else [s[tf.newaxis] for s in sums]


def _ratio(num, den):
    """num / den, NaN where den == 0 (0/0); gradients stay finite there."""
    return tf.where(den == 0, tf.constant(np.nan, num.dtype), tf.math.divide_no_nan(num, den))


def _tversky_index(inter, pred_sum, true_sum, alpha, beta, smooth, epsilon):
    # (1 - a - b) I + a P + b G == I + a FP + b FN, without cancelling for Dice
    den = (1 - alpha - beta) * inter + alpha * pred_sum + beta * true_sum + smooth + epsilon
    return _ratio(inter + smooth, den)


def _drop_background(g, p, include_background):
    channels = g.shape[-1]
    if include_background or channels == 1:  # one channel already is the foreground
        return g, p
    return g[..., 1:], p[..., 1:]


def _class_weights(class_weights, channels, include_background, dtype):
    """Weights of the kept classes: all 1, or the given ones (class 0 dropped if asked)."""
    kept = channels if include_background or channels == 1 else channels - 1
    if class_weights is None:
        return tf.ones([kept], dtype)
    w = _num(class_weights, dtype)
    n = w.shape[0] if w.shape.rank == 1 else None
    if n == channels and kept == channels - 1:
        w = w[1:]
        left = _concrete(w)
        if left is not None and not np.any(left > 0):
            raise ValueError("class_weights leaves every kept class at weight 0: class 0 is "
                             "dropped by include_background=False")
    if w.shape.rank == 1 and w.shape[0] == kept:
        return w
    accepted = f"{channels}" + (f" (or {kept}, without class 0)" if kept != channels else "")
    raise ValueError(
        f"class_weights must have one weight per class: {accepted} values for {channels} "
        f"channels, got {n if n is not None else w.shape}"
    )


def _combine_classes(per_class, weights, normalize_weights, absent=None):
    """[R, C] scores -> [R]: weighted over classes (the loss is their mean over images).

    ``absent`` (``empty="skip"``): those entries leave the class sum and its weights; a row
    with none left leaves the mean over images (see :func:`_row_shares`).
    """
    if absent is not None:
        weights = weights * (1 - tf.cast(absent, weights.dtype))  # [R, C]
    # multiply_no_nan: a class weighted 0 contributes 0 even where its score is 0/0
    total = tf.reduce_sum(tf.math.multiply_no_nan(per_class, weights), axis=-1)
    if absent is None:
        return total / tf.reduce_sum(weights) if normalize_weights else total
    if normalize_weights:
        total = tf.math.divide_no_nan(total, tf.reduce_sum(weights, axis=-1))
    return _row_shares(total, tf.reduce_any(weights > 0, axis=-1))


def _tversky_family(
    y_true, y_pred, name, *, alpha, beta, smooth, epsilon, squared, per_image,
    class_weights, normalize_weights, include_background, soft_label, gamma=1.0,
    from_logits=False, ignore_index=None, empty="smooth", as_loss=True, dice=False,
):
    """Per-row values [R] (R = B per image, 1 for the whole batch) whose mean is the loss."""
    check_settings(
        name, alpha=alpha, beta=beta, smooth=smooth, epsilon=epsilon, gamma=gamma,
        squared=squared, per_image=per_image, class_weights=class_weights,
        normalize_weights=normalize_weights, include_background=include_background,
        soft_label=soft_label, from_logits=from_logits, ignore_index=ignore_index, empty=empty,
    )
    g, p = _region_inputs(y_true, y_pred, from_logits, ignore_index)
    weights = _class_weights(class_weights, g.shape[-1], include_background, g.dtype)
    g, p = _drop_background(g, p, include_background)
    inter, pred_sum, true_sum = overlap_sums(g, p, squared=squared, per_image=per_image,
                                         soft_label=soft_label)
    smooth, epsilon = _num(smooth, g.dtype), _num(epsilon, g.dtype)
    if dice:  # Dice = Tversky(1/2, 1/2) with smooth/2, epsilon/2 (exact: halving is exact)
        smooth, epsilon = smooth / 2, epsilon / 2
    score = _tversky_index(inter, pred_sum, true_sum, _num(alpha, g.dtype), _num(beta, g.dtype),
                           smooth, epsilon)
    per_class = _focal_power(1 - score, _num(gamma, g.dtype)) if as_loss else score
    if empty == "smooth":  # the formula decides (today's behaviour)
        return _combine_classes(per_class, weights, normalize_weights)
    absent = true_sum == 0  # the class has no truth in this image (or batch)
    per_class = _empty_entries(per_class, absent, empty, as_loss)
    return _combine_classes(per_class, weights, normalize_weights,
                            absent if empty == "skip" else None)


def _focal_power(x, gamma):
    """x ** (1/gamma) (focal Tversky), with a finite gradient where x == 0."""
    positive = x > 0
    safe = tf.where(positive, x, tf.ones_like(x))
    linear = tf.cast(tf.equal(gamma, 1), x.dtype)  # gamma = 1 keeps plain Tversky's gradient at 0
    return tf.where(positive, tf.pow(safe, 1 / gamma), x * linear)


# ------------------------------------------------------------------- Dice family


@_mean_of_samples
def dice_coefficient(
    y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False, per_image=True,
    class_weights=None, normalize_weights=True, include_background=True, soft_label=False,
    from_logits=False, ignore_index=None, empty="smooth",
):
    """Soft Dice coefficient ``(2I + smooth) / (P + G + smooth + epsilon)``, weighted over
    classes and averaged over images (Milletari et al. 2016, V-Net, for ``squared``)."""
    return _tversky_family(
        y_true, y_pred, "dice_coefficient", alpha=0.5, beta=0.5, smooth=smooth,
        epsilon=epsilon, squared=squared, per_image=per_image, class_weights=class_weights,
        normalize_weights=normalize_weights, include_background=include_background,
        soft_label=soft_label, from_logits=from_logits, ignore_index=ignore_index, empty=empty,
        as_loss=False, dice=True,
    )


@_mean_of_samples
def dice_loss(
    y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False, per_image=True,
    class_weights=None, normalize_weights=True, include_background=True, soft_label=False,
    from_logits=False, ignore_index=None, empty="smooth",
):
    """``mean_b [sum_c w_c (1 - dice[b, c]) / sum_c w_c]`` (no division when
    ``normalize_weights=False``). See the module docstring for the terms, and for
    ``from_logits``, ``ignore_index`` and ``empty`` (smp's ``DiceLoss`` is ``empty="zero"``)."""
    return _tversky_family(
        y_true, y_pred, "dice_loss", alpha=0.5, beta=0.5, smooth=smooth, epsilon=epsilon,
        squared=squared, per_image=per_image, class_weights=class_weights,
        normalize_weights=normalize_weights, include_background=include_background,
        soft_label=soft_label, from_logits=from_logits, ignore_index=ignore_index, empty=empty,
        dice=True,
    )


def per_class_dice(y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False, per_image=True,
                   soft_label=False):
    """Dice of every class: shape ``[B, C]`` when ``per_image`` else ``[C]``."""
    check_settings("per_class_dice", smooth=smooth, epsilon=epsilon, squared=squared,
                   per_image=per_image, soft_label=soft_label)
    g, p = prepare_inputs(y_true, y_pred)
    inter, pred_sum, true_sum = overlap_sums(g, p, squared=squared, per_image=per_image,
                                         soft_label=soft_label)
    smooth, epsilon = _num(smooth, g.dtype), _num(epsilon, g.dtype)
    dice = _ratio(2 * inter + smooth, pred_sum + true_sum + smooth + epsilon)
    return dice if per_image else dice[0]


@_mean_of_samples
def jaccard_loss(
    y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False, per_image=True,
    class_weights=None, normalize_weights=True, include_background=True, soft_label=False,
    from_logits=False, ignore_index=None, empty="smooth",
):
    """Soft Jaccard / IoU loss: ``1 - (I + smooth) / (P + G - I + smooth + epsilon)``."""
    return _tversky_family(
        y_true, y_pred, "jaccard_loss", alpha=1.0, beta=1.0, smooth=smooth, epsilon=epsilon,
        squared=squared, per_image=per_image, class_weights=class_weights,
        normalize_weights=normalize_weights, include_background=include_background,
        soft_label=soft_label, from_logits=from_logits, ignore_index=ignore_index, empty=empty,
    )


@_mean_of_samples
def tversky_loss(
    y_true, y_pred, *, alpha=0.5, beta=0.5, gamma=1.0, smooth=1.0, epsilon=0.0, squared=False,
    per_image=True, class_weights=None, normalize_weights=True, include_background=True,
    soft_label=False, from_logits=False, ignore_index=None, empty="smooth",
):
    """Tversky loss ``(1 - TI) ** (1/gamma)``, ``TI = (I + s)/(I + a FP + b FN + s + e)``.

    ``alpha`` weighs false positives, ``beta`` false negatives (Salehi et al. 2017);
    ``gamma > 1`` is the focal Tversky loss (Abraham & Khan 2019). With
    ``alpha = beta = 0.5`` it equals Dice with twice the smooth and epsilon.
    ``squared=True`` needs ``alpha == beta`` (else ``ValueError``: see ``check_settings``).
    """
    return _tversky_family(
        y_true, y_pred, "tversky_loss", alpha=alpha, beta=beta, gamma=gamma, smooth=smooth,
        epsilon=epsilon, squared=squared, per_image=per_image, class_weights=class_weights,
        normalize_weights=normalize_weights, include_background=include_background,
        soft_label=soft_label, from_logits=from_logits, ignore_index=ignore_index, empty=empty,
    )


@_mean_of_samples
def generalized_dice_loss(
    y_true, y_pred, *, smooth=1e-5, epsilon=0.0, squared=False, per_image=True,
    include_background=True, soft_label=False, weight_type="square", from_logits=False,
    ignore_index=None, empty="smooth",
):
    """Generalized Dice loss (Sudre et al. 2017): class weights ``w_c = 1 / (sum g_c)^2``.

    ``GD = (2 sum_c w_c I_c + smooth) / (sum_c w_c (P_c + G_c) + smooth + epsilon)``.
    ``weight_type`` picks ``w_c``: ``"square"`` ``1/G_c^2``, ``"simple"`` ``1/G_c``,
    ``"uniform"`` 1 (MONAI's ``w_type``). A class absent from the truth would get an
    infinite weight; it gets the largest weight of the present classes instead (so its
    false positives still count), as in MONAI. An image with no class present weighs all
    classes 1 (``empty="smooth"``, ours); MONAI zeroes every weight there, which is loss 0
    for its equal smooth_nr and smooth_dr: ``empty="zero"``.
    """
    check_settings("generalized_dice_loss", smooth=smooth, epsilon=epsilon, squared=squared,
                   per_image=per_image, include_background=include_background,
                   soft_label=soft_label, weight_type=weight_type, from_logits=from_logits,
                   ignore_index=ignore_index, empty=empty)
    g, p = _region_inputs(y_true, y_pred, from_logits, ignore_index)
    g, p = _drop_background(g, p, include_background)
    inter, pred_sum, true_sum = overlap_sums(g, p, squared=squared, per_image=per_image,
                                         soft_label=soft_label)
    volume = tf.reduce_sum(g, _sum_axes(g.shape.rank, per_image)) if squared else true_sum
    if not per_image and squared:
        volume = volume[tf.newaxis]
    weights = tf.stop_gradient(_sudre_weights(volume, weight_type))
    smooth, epsilon = _num(smooth, g.dtype), _num(epsilon, g.dtype)
    num = 2 * tf.reduce_sum(weights * inter, -1) + smooth
    den = tf.reduce_sum(weights * (pred_sum + true_sum), -1) + smooth + epsilon
    loss = 1 - _ratio(num, den)
    if empty == "smooth":
        return loss
    none_present = tf.logical_not(tf.reduce_any(volume > 0, axis=-1))
    if empty == "skip":
        return _row_shares(loss, tf.logical_not(none_present))
    return _empty_entries(loss, none_present, empty)


def _sudre_weights(volume, weight_type="square"):
    if weight_type == "uniform":
        return tf.ones_like(volume)
    present = volume > 0
    size = volume * volume if weight_type == "square" else volume
    raw = tf.math.divide_no_nan(tf.ones_like(volume), size)
    largest = tf.reduce_max(raw, axis=-1, keepdims=True)
    weights = tf.where(present, raw, largest)
    any_present = tf.reduce_any(present, axis=-1, keepdims=True)
    return tf.where(any_present, weights, tf.ones_like(weights))


# ------------------------------------------------------------------ cross-entropy


def clip_probabilities(p):
    """``p`` clipped to ``[PROB_CLIP, 1 - PROB_CLIP]`` (as Keras): 0 and 1 get finite logs."""
    return tf.clip_by_value(p, PROB_CLIP, 1 - PROB_CLIP)


def probability_logits(p):
    """The logit ``log p - log1p(-p)`` of clipped probabilities (a sigmoid's input):
    0 and 1 map to about -/+16 instead of infinities."""
    p = clip_probabilities(p)
    return tf.math.log(p) - tf.math.log1p(-p)


def _log_terms(x, from_logits):
    """``(log p, log(1 - p))``: from logits exactly, from probabilities clipped as Keras."""
    if from_logits:
        return _log_probabilities(x)
    p = clip_probabilities(x)
    return tf.math.log(p), tf.math.log(1 - p)


def _true_class_weights(g, class_weights):
    """torch's ``w[y_i]`` per pixel, [B, ..., 1]: ``sum_c w_c g_c``; one channel is two
    classes, ``w_0 (1 - g) + w_1 g``."""
    channels = g.shape[-1]
    w = _num(class_weights, g.dtype)
    wanted = 2 if channels == 1 else channels
    if w.shape.rank != 1 or w.shape[0] != wanted:
        what = ("2 values for one channel: [background, foreground]" if channels == 1
                else f"{channels} values, one per channel")
        raise ValueError(f"class_weights must have {what}, got "
                         f"{w.shape[0] if w.shape.rank == 1 else w.shape}")
    if channels == 1:
        return w[0] * (1 - g) + w[1] * g
    return tf.reduce_sum(w * g, axis=-1, keepdims=True)


def _pixel_mean(pixel, g, keep, class_weights):
    """Pixel losses [B, ..., 1] -> values whose mean is the loss: the pixels themselves (the
    plain mean), or [B] shares of torch's weighted mean ``sum_i w_i l_i / sum_i w_i`` over
    the batch's pixels (``w_i`` = true-class weight, 0 where ignored; 0/0 is NaN, as torch)."""
    weights = None if class_weights is None else _true_class_weights(g, class_weights)
    if keep is not None:
        weights = keep if weights is None else weights * keep
    if weights is None:
        return pixel
    axes = list(range(1, pixel.shape.rank))
    images = tf.cast(tf.shape(pixel)[0], pixel.dtype)
    per_image = tf.reduce_sum(tf.math.multiply_no_nan(pixel, weights), axes)
    return _ratio(images * per_image, tf.reduce_sum(weights))


@_mean_of_samples
def binary_crossentropy(y_true, y_pred, *, from_logits=False, class_weights=None,
                        pos_weight=None, ignore_index=None):
    """Mean over all elements of ``-(g log p + (1-g) log(1-p))``, p clipped to
    ``[1e-7, 1 - 1e-7]`` as Keras does (``from_logits=True``: ``log_sigmoid`` /
    ``log_softmax`` of the logits, no clip).

    ``pos_weight`` multiplies the ``g log p`` term (torch ``BCEWithLogitsLoss(pos_weight)``);
    ``class_weights`` make the mean over pixels torch's weighted mean
    ``sum_i w[y_i] l_i / sum_i w[y_i]`` (``l_i`` the pixel's mean over channels; one channel:
    ``[w_background, w_foreground]``); ``ignore_index`` leaves pixels out.
    """
    check_settings("binary_crossentropy", from_logits=from_logits, class_weights=class_weights,
                   pos_weight=pos_weight, ignore_index=ignore_index)
    g, x, keep = _loss_inputs(y_true, y_pred, from_logits, ignore_index)
    log_p, log_q = _log_terms(x, from_logits)
    positive = g * log_p
    if pos_weight is not None:
        pos_weight = _num(pos_weight, g.dtype)
        if pos_weight.shape.rank == 1 and pos_weight.shape[0] != g.shape[-1]:
            raise ValueError(f"pos_weight must be one number or one per channel "
                             f"({g.shape[-1]}), got {pos_weight.shape[0]} values")
        positive = pos_weight * positive
    elements = -(positive + (1 - g) * log_q)
    if class_weights is None and keep is None:
        return elements  # their mean is the loss: one reduction, as Keras' BCE
    pixel = tf.reduce_mean(elements, axis=-1, keepdims=True)
    return _pixel_mean(pixel, g, keep, class_weights)


def _input_keywords(dice_keywords):
    """The keywords that say what the inputs are, which BCE shares with the Dice part."""
    return {k: dice_keywords[k] for k in ("from_logits", "ignore_index") if k in dice_keywords}


@_mean_of_samples
def bce_dice_loss(y_true, y_pred, *, bce_weight=1.0, dice_weight=1.0, **dice_keywords):
    """``bce_weight * BCE + dice_weight * dice_loss`` (the Carvana-winning combination).
    ``from_logits`` and ``ignore_index`` apply to both terms; the other keywords to Dice."""
    check_settings("bce_dice_loss", bce_weight=bce_weight, dice_weight=dice_weight)
    bce = _image_means(binary_crossentropy.per_sample(y_true, y_pred,
                                                      **_input_keywords(dice_keywords)))
    dice = dice_loss.per_sample(y_true, y_pred, **dice_keywords)
    # multiply_no_nan: dice_weight = 0 is BCE alone, even where Dice is 0/0 (as class weights)
    return bce_weight * bce + tf.math.multiply_no_nan(dice, _num(dice_weight, dice.dtype))


@_mean_of_samples
def bce_log_dice_loss(y_true, y_pred, **dice_keywords):
    """``BCE - log(dice_coefficient)``: the log form punishes low Dice harder.
    ``from_logits`` and ``ignore_index`` apply to both terms; the other keywords to Dice."""
    bce = _image_means(binary_crossentropy.per_sample(y_true, y_pred,
                                                      **_input_keywords(dice_keywords)))
    return bce - tf.math.log(dice_coefficient(y_true, y_pred, **dice_keywords))


@_mean_of_samples
def focal_loss(y_true, y_pred, *, gamma=2.0, alpha=None, from_logits=False, class_weights=None,
               ignore_index=None):
    """Focal loss (Lin et al. 2017), mean over pixels.

    One channel: ``-[a g (1-p)^gamma log p + (1-a)(1-g) p^gamma log(1-p)]`` per element;
    ``alpha=None`` weighs both terms 1, so ``gamma = 0`` is plain BCE.
    Several channels: ``-sum_c a_c g_c (1-p_c)^gamma log p_c`` per pixel, ``alpha`` one
    number or one per class (``gamma = 0`` is categorical cross-entropy).
    ``from_logits``, ``class_weights`` (torch's weighted mean) and ``ignore_index`` as in
    :func:`binary_crossentropy`; with logits ``(1-p)^gamma = exp(gamma log(1-p))``.
    """
    check_settings("focal_loss", gamma=gamma, alpha=alpha, from_logits=from_logits,
                   class_weights=class_weights, ignore_index=ignore_index)
    g, x, keep = _loss_inputs(y_true, y_pred, from_logits, ignore_index)
    gamma = _num(gamma, g.dtype)
    if from_logits:  # base ** gamma as exp(gamma log base): exact for any logit
        log_p, log_q = _log_probabilities(x)
        hard = tf.exp(gamma * log_q)
    else:
        p = clip_probabilities(x)
        log_p = tf.math.log(p)
        hard = tf.pow(1 - p, gamma)
    positive = g * hard * log_p
    if g.shape[-1] == 1:
        if from_logits:
            negative = (1 - g) * tf.exp(gamma * log_p) * log_q
        else:
            negative = (1 - g) * tf.pow(p, gamma) * tf.math.log(1 - p)
        if alpha is not None:
            alpha = _num(alpha, g.dtype)
            if alpha.shape.rank != 0:
                raise ValueError("alpha must be one number in [0, 1] for a single channel")
            positive, negative = alpha * positive, (1 - alpha) * negative
        return _pixel_mean(-(positive + negative), g, keep, class_weights)
    if alpha is not None:
        alpha = _num(alpha, g.dtype)
        if alpha.shape.rank == 1 and alpha.shape[0] != g.shape[-1]:
            raise ValueError(f"alpha must be one number or one weight per class "
                             f"({g.shape[-1]}), got {alpha.shape[0]} values")
        positive = alpha * positive  # broadcasts one number or one per class
    return _pixel_mean(-tf.reduce_sum(positive, axis=-1, keepdims=True), g, keep, class_weights)


# ------------------------------------------------------------------------- Lovász


def _lovasz_grad(fg_sorted):
    """Gradient of the Lovász extension of the Jaccard loss, row-wise on sorted truths."""
    total = tf.reduce_sum(fg_sorted, axis=-1, keepdims=True)
    inter = total - tf.cumsum(fg_sorted, axis=-1)
    union = total + tf.cumsum(1 - fg_sorted, axis=-1)  # >= 1 always: no 0/0
    jaccard = 1 - inter / union
    return tf.concat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=-1)


def _lovasz_rows(errors, fg):
    """Lovász extension per row of ``errors`` [R, N] against truths ``fg`` [R, N]."""
    order = tf.argsort(errors, axis=-1, direction="DESCENDING", stable=True)
    errors_sorted = tf.gather(errors, order, batch_dims=1)
    fg_sorted = tf.gather(fg, order, batch_dims=1)
    return tf.reduce_sum(tf.nn.relu(errors_sorted) * _lovasz_grad(fg_sorted), axis=-1)


def _rows(x, per_image):
    """[B, ..., C] -> [R, N, C] with R = B (per image) or 1 (whole batch)."""
    leading = tf.shape(x)[0] if per_image else 1
    return tf.reshape(x, tf.stack([leading, -1, x.shape[-1]]))


def _left_out(errors, keep):
    """Errors with the ignored pixels at -1: sorted after every positive error (so no
    counted pixel's Lovász weight sees them) and zero after the relu."""
    return errors if keep is None else tf.where(keep > 0, errors, -tf.ones_like(errors))


@_mean_of_samples
def lovasz_hinge(y_true, logits, *, per_image=True, from_logits=True, ignore_index=None):
    """Binary Lovász hinge on logits (Berman, Rannen Triki & Blaschko, CVPR 2018).

    Hinge errors ``1 - z (2g - 1)`` sorted in decreasing order, weighted by the
    gradient of the Lovász extension of the Jaccard loss. It takes logits
    (``from_logits=True``, the default); ``from_logits=False`` takes probabilities and
    turns them into clipped logits (:func:`probability_logits`). ``ignore_index`` leaves
    pixels out.
    """
    check_settings("lovasz_hinge", per_image=per_image, from_logits=from_logits,
                   ignore_index=ignore_index)
    g, z, keep = _loss_inputs(y_true, logits, from_logits, ignore_index)
    if g.shape[-1] != 1:
        raise ValueError(f"lovasz_hinge is binary: y_true must have 1 channel, got {g.shape[-1]}"
                         " (use lovasz_softmax for several classes)")
    if not from_logits:  # probabilities: back to logits, clipped like BCE
        z = probability_logits(z)
    errors = _left_out(1 - z * (2 * g - 1), keep)
    g, errors = _rows(g, per_image)[..., 0], _rows(errors, per_image)[..., 0]
    return _lovasz_rows(errors, g)


@_mean_of_samples
def lovasz_softmax(y_true, y_pred, *, classes="present", per_image=False, from_logits=False,
                   ignore_index=None):
    """Multi-class Lovász-Softmax on probabilities (Berman et al., CVPR 2018).

    Per class, the errors ``|g_c - p_c|`` go through the Lovász extension; classes
    are averaged (``"present"``: only those in the truth; an image with none scores 0).
    ``from_logits=True`` takes logits (softmax, or sigmoid for one channel);
    ``ignore_index`` leaves pixels out.
    """
    check_settings("lovasz_softmax", classes=classes, per_image=per_image,
                   from_logits=from_logits, ignore_index=ignore_index)
    g, p, keep = _loss_inputs(y_true, y_pred, from_logits, ignore_index)
    if from_logits:
        p = _probabilities(p)
    errors = _left_out(tf.abs(g - p), keep)
    g = tf.transpose(_rows(g, per_image), [0, 2, 1])  # [R, C, N]
    errors = tf.transpose(_rows(errors, per_image), [0, 2, 1])
    rows, channels = tf.shape(g)[0], g.shape[1]
    flat_g = tf.reshape(g, [rows * channels, -1])
    flat_errors = tf.reshape(errors, [rows * channels, -1])
    losses = tf.reshape(_lovasz_rows(flat_errors, flat_g), [rows, channels])
    if classes == "present":
        counted = tf.cast(tf.reduce_sum(g, axis=-1) > 0, losses.dtype)
    else:
        counted = tf.ones_like(losses)
    return tf.math.divide_no_nan(tf.reduce_sum(losses * counted, -1), tf.reduce_sum(counted, -1))


# ------------------------------------------------------- boundary and topology


def signed_distance(y_true) -> np.ndarray:
    """The signed distance map of a truth ``[B, ..., C]`` (NumPy and SciPy, on concrete
    values), per image and channel, in pixels, as Kervadec et al.'s ``one_hot2dist``: a pixel
    outside the object (``g < 0.5``) gets its distance to the nearest object pixel (positive),
    one inside gets minus (its distance to the nearest background pixel, less 1), so the
    object's own boundary pixels are 0 and the background next to it is 1. A channel with no
    object, or with nothing but object (no boundary), is 0 everywhere. Euclidean distances
    (``scipy.ndimage.distance_transform_edt``) over every spatial axis."""
    from scipy import ndimage

    g = np.asarray(y_true) >= 0.5
    phi = np.zeros(g.shape, np.float64)
    for index in np.ndindex(g.shape[0], g.shape[-1]):
        inside = g[index[0], ..., index[1]]
        if inside.any() and not inside.all():
            outside = ~inside
            phi[index[0], ..., index[1]] = (ndimage.distance_transform_edt(outside) * outside
                                             - (ndimage.distance_transform_edt(inside) - 1)
                                             * inside)
    return phi


def _signed_distance_tensor(g):
    """:func:`signed_distance` of a truth tensor, computed where the values are (eagerly, or
    inside a compiled graph through ``tf.numpy_function``, on the CPU): a constant w.r.t.
    the prediction, so no gradient flows into it."""
    phi = tf.numpy_function(lambda a: signed_distance(a).astype(a.dtype), [g], g.dtype,
                            stateful=False)
    phi.set_shape(g.shape)
    return tf.stop_gradient(phi)


@_mean_of_samples
def boundary_loss(y_true, y_pred, *, include_background=True, from_logits=False,
                  ignore_index=None):
    """Boundary loss (Kervadec et al., "Boundary loss for highly unbalanced segmentation",
    MIDL 2019): the mean over pixels and classes of ``phi_G * p``, ``phi_G`` the truth's
    signed distance map (:func:`signed_distance`: negative inside, positive outside, in
    pixels), computed from the truth by SciPy and held constant w.r.t. ``p``.

    Its gradient w.r.t. ``p`` is ``phi_G / N``: a predicted pixel is pushed down in
    proportion to how far it lies outside the truth (a far false positive hardest) and up
    in proportion to how deep inside it lies. Lowest (negative) when p = 1 exactly on the
    truth; 0 where the truth has no boundary. Meant as a term beside a region loss
    (:func:`boundary_dice_loss`). ``include_background=False`` drops class 0 of several;
    ``ignore_index`` leaves pixels out of the mean (their truth counts as background in
    ``phi_G``).
    """
    check_settings("boundary_loss", include_background=include_background,
                   from_logits=from_logits, ignore_index=ignore_index)
    g, x, keep = _loss_inputs(y_true, y_pred, from_logits, ignore_index)
    p = _probabilities(x) if from_logits else x
    phi = _signed_distance_tensor(g)
    phi, p = _drop_background(phi, p, include_background)
    elements = phi * p
    if keep is None:
        return elements  # their mean is the loss
    return _pixel_mean(tf.reduce_mean(elements, axis=-1, keepdims=True), g, keep, None)


def _dice_part_keywords(dice_keywords):
    """The keywords a boundary or clDice term shares with the Dice term beside it."""
    return {k: dice_keywords[k] for k in ("from_logits", "ignore_index", "include_background")
            if k in dice_keywords}


@_mean_of_samples
def boundary_dice_loss(y_true, y_pred, *, boundary_weight=0.01, **dice_keywords):
    """``dice_loss + boundary_weight * boundary_loss`` (Kervadec et al. 2019 pair the
    boundary term with a region loss; their weight starts at 0.01 and grows during training).
    ``from_logits``, ``ignore_index`` and ``include_background`` apply to both terms."""
    check_settings("boundary_dice_loss", boundary_weight=boundary_weight)
    dice = dice_loss.per_sample(y_true, y_pred, **dice_keywords)
    boundary = _image_means(boundary_loss.per_sample(y_true, y_pred,
                                                     **_dice_part_keywords(dice_keywords)))
    return dice + tf.math.multiply_no_nan(boundary, _num(boundary_weight, boundary.dtype))


def _pool_along(x, axis, reduce):
    """The max (or min) of each pixel and its two neighbours along one spatial ``axis``;
    outside the image counts as nothing (as "SAME" pooling). Any rank and dtype."""
    rank = x.shape.rank
    fill = x.dtype.max if reduce is tf.minimum else x.dtype.min
    padding = [[0, 0]] * rank
    padding[axis] = [1, 1]
    padded = tf.pad(x, padding, constant_values=fill)
    size = tf.shape(x)[axis]
    before = tf.gather(padded, tf.range(0, size), axis=axis)
    after = tf.gather(padded, tf.range(2, size + 2), axis=axis)
    return reduce(reduce(before, x), after)


def _soft_erode(x):
    """Shit et al.'s soft erosion: the min over a cross (3 x 1, 1 x 3, ... per axis)."""
    axes = range(1, x.shape.rank - 1)
    return functools.reduce(tf.minimum, [_pool_along(x, a, tf.minimum) for a in axes])


def _soft_dilate(x):
    """Soft dilation: the max over the full 3 x 3 (x 3) box."""
    for axis in range(1, x.shape.rank - 1):
        x = _pool_along(x, axis, tf.maximum)
    return x


def soft_skeleton(x, iterations=3):
    """Shit et al.'s soft skeleton of ``x`` ``[B, ..., C]`` (values in [0, 1]) by iterated
    min and max pooling: ``skel = relu(x - open(x))``, then ``iterations`` times erode ``x``
    and add ``relu(delta - skel * delta)``, ``delta = relu(x - open(x))``. Differentiable;
    ``iterations`` should be about the largest radius of the structures."""
    x = tf.convert_to_tensor(x)

    def skin(img):
        return tf.nn.relu(img - _soft_dilate(_soft_erode(img)))

    def step(j, img, skel):
        img = _soft_erode(img)
        delta = skin(img)
        return j + 1, img, skel + tf.nn.relu(delta - skel * delta)

    count = tf.cast(iterations, tf.int32)
    _, _, skel = tf.while_loop(lambda j, img, skel: j < count, step,
                               (tf.constant(0, tf.int32), x, skin(x)))
    return skel


def _cl_dice_rows(y_true, y_pred, name, *, iterations, smooth, per_image, include_background,
                  from_logits, ignore_index):
    """1 - soft clDice per row [R] (R = B per image, 1 for the whole batch), class mean."""
    check_settings(name, iterations=iterations, smooth=smooth, per_image=per_image,
                   include_background=include_background, from_logits=from_logits,
                   ignore_index=ignore_index)
    g, p = _region_inputs(y_true, y_pred, from_logits, ignore_index)
    g, p = _drop_background(g, p, include_background)
    skel_p, skel_g = soft_skeleton(p, iterations), soft_skeleton(g, iterations)
    axes = _sum_axes(g.shape.rank, per_image)
    smooth = _num(smooth, g.dtype)
    precision = _ratio(tf.reduce_sum(skel_p * g, axes) + smooth,
                       tf.reduce_sum(skel_p, axes) + smooth)
    sensitivity = _ratio(tf.reduce_sum(skel_g * p, axes) + smooth,
                         tf.reduce_sum(skel_g, axes) + smooth)
    score = _ratio(2 * precision * sensitivity, precision + sensitivity)
    rows = tf.reduce_mean(1 - score, axis=-1)
    return rows if per_image else rows[tf.newaxis]


@_mean_of_samples
def cl_dice_loss(y_true, y_pred, *, iterations=3, smooth=1.0, per_image=True,
                 include_background=True, from_logits=False, ignore_index=None):
    """Soft clDice loss (Shit et al., "clDice - a novel topology-preserving loss function
    for tubular structure segmentation", CVPR 2021): ``1 - 2 Tprec Tsens / (Tprec + Tsens)``
    with ``Tprec = (sum S(p) g + smooth) / (sum S(p) + smooth)`` and ``Tsens = (sum S(g) p +
    smooth) / (sum S(g) + smooth)``, ``S`` the :func:`soft_skeleton` of ``iterations`` steps.
    Per image and class (``per_image=False``: sums over the batch), then the mean over
    classes (the paper's code pools the foreground channels instead). It weighs a thin
    structure by its centre line's length, so a broken or missed thin branch costs much,
    where Dice counts its few pixels. With ``smooth = 0`` an empty skeleton is 0/0: NaN."""
    return _cl_dice_rows(y_true, y_pred, "cl_dice_loss", iterations=iterations, smooth=smooth,
                         per_image=per_image, include_background=include_background,
                         from_logits=from_logits, ignore_index=ignore_index)


@_mean_of_samples
def cl_dice_dice_loss(y_true, y_pred, *, cl_dice_weight=1.0, iterations=3, **dice_keywords):
    """``dice_loss + cl_dice_weight * cl_dice_loss`` (Shit et al. train with
    ``(1 - a) Dice + a clDice``: ``cl_dice_weight = a / (1 - a)``, scaled by ``1 - a``). The
    clDice term takes ``smooth``, ``per_image``, ``include_background``, ``from_logits`` and
    ``ignore_index`` from the Dice keywords."""
    check_settings("cl_dice_dice_loss", cl_dice_weight=cl_dice_weight)
    dice = dice_loss.per_sample(y_true, y_pred, **dice_keywords)
    shared = {k: v for k, v in loss_keywords(dice_loss).items()
              if k in ("smooth", "per_image", "include_background", "from_logits",
                       "ignore_index")}
    shared.update({k: dice_keywords[k] for k in shared if k in dice_keywords})
    cl = _cl_dice_rows(y_true, y_pred, "cl_dice_dice_loss", iterations=iterations, **shared)
    return dice + tf.math.multiply_no_nan(cl, _num(cl_dice_weight, cl.dtype))


# ------------------------------------------------------------------- hard metrics


def hard_metrics(y_true, y_pred, *, threshold=0.5, per_image=False):
    """Confusion counts and hard Dice (pixel F1) and IoU per class.

    One channel: foreground is ``p >= threshold`` (truth: ``g >= 0.5``); several
    channels: the argmax class. Returns a dict of tensors ``tp, fp, fn, tn`` (int64)
    and ``dice = 2TP/(2TP+FP+FN)``, ``iou = TP/(TP+FP+FN)`` (float64, NaN where both
    masks are empty), shaped ``[C]`` or ``[B, C]`` when ``per_image``.
    """
    check_settings("hard_metrics", threshold=threshold, per_image=per_image)
    g, p = prepare_inputs(y_true, y_pred)
    channels = g.shape[-1]
    if channels == 1:
        pred, true = p >= _num(threshold, p.dtype), g >= 0.5
    else:
        pred = tf.one_hot(tf.argmax(p, axis=-1), channels, on_value=True, off_value=False)
        true = tf.one_hot(tf.argmax(g, axis=-1), channels, on_value=True, off_value=False)
    axes = _sum_axes(g.shape.rank, per_image)

    def count(a, b):
        return tf.reduce_sum(tf.cast(tf.logical_and(a, b), tf.int64), axes)

    tp, fp = count(pred, true), count(pred, ~true)
    fn, tn = count(~pred, true), count(~pred, ~true)
    tp64, wrong = tf.cast(tp, tf.float64), tf.cast(fp + fn, tf.float64)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "dice": _ratio(2 * tp64, 2 * tp64 + wrong), "iou": _ratio(tp64, tp64 + wrong)}


# --------------------------------------------------------------- degenerate cases


class Degenerate(NamedTuple):
    """One (image, class) whose score is an odd-but-valid case, with a plain reason."""

    image: int | None  # None: the whole batch (per_image=False)
    class_index: int
    kind: str  # "undefined", "empty_scores_zero", "empty_perfect", "empty_truth", "empty_prediction"
    value: float  # the Dice score there
    message: str


def degenerate_cases(y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False, per_image=True,
                     include_background=True, soft_label=False,
                     image_names=None) -> list[Degenerate]:
    """Name every (image, class) of the Dice score where a mask is empty, and why the
    score is what it is (0/0 gives NaN: "undefined"). Rejects what the losses reject.
    The messages call image ``b`` "image b", or ``image_names[b]`` when given."""
    check_settings("degenerate_cases", smooth=smooth, epsilon=epsilon, squared=squared,
                   per_image=per_image, include_background=include_background,
                   soft_label=soft_label)
    g, p = prepare_inputs(y_true, y_pred)
    first = 0 if include_background or g.shape[-1] == 1 else 1
    g, p = _drop_background(g, p, include_background)
    inter, pred_sum, true_sum = (s.numpy().astype(np.float64) for s in overlap_sums(
        g, p, squared=squared, per_image=per_image, soft_label=soft_label))
    found = []
    for (b, c), value in np.ndenumerate(
            _ratio(2 * inter + smooth, pred_sum + true_sum + smooth + epsilon).numpy()):
        kind, why = _degenerate_reason(pred_sum[b, c], true_sum[b, c], smooth, epsilon)
        if kind:
            image = f"image {b}" if image_names is None else image_names[b]
            where = (image if per_image else "the whole batch") + (
                f", class {c + first}" if g.shape[-1] > 1 or first else "")
            found.append(Degenerate(b if per_image else None, c + first, kind, float(value),
                                    f"{where}: {why}"))
    return found


def _degenerate_reason(pred_sum, true_sum, smooth, epsilon):
    if pred_sum == 0 and true_sum == 0:
        if smooth == 0 and epsilon == 0:
            return "undefined", ("undefined (0/0): truth and prediction are both empty and "
                                 "smooth = epsilon = 0, so Dice = 0/0")
        if smooth == 0:
            return "empty_scores_zero", (
                "scores 0: both masks are empty (a correct prediction), but with smooth = 0 the "
                "numerator is 0 while epsilon keeps the denominator positive, so the perfect "
                "empty prediction gets loss 1")
        score = smooth / (smooth + epsilon)
        return "empty_perfect", (f"scores {score:.6g}: both masks are empty and smooth makes that "
                                 f"smooth/(smooth + epsilon)")
    if true_sum == 0:
        return "empty_truth", ("the truth is empty: every predicted pixel is a false positive "
                               "and Dice = smooth/(P + smooth + epsilon), near 0 for any sizeable "
                               "prediction")
    if pred_sum == 0:
        return "empty_prediction", ("nothing is predicted: Dice = smooth/(G + smooth + epsilon), "
                                    "near 0 however small the object")
    return None, None


# ------------------------------------------------------------------------ registry

LOSSES = {
    fn.__name__: fn for fn in (
        dice_loss, jaccard_loss, tversky_loss, generalized_dice_loss, binary_crossentropy,
        bce_dice_loss, bce_log_dice_loss, focal_loss, lovasz_hinge, lovasz_softmax,
        boundary_loss, boundary_dice_loss, cl_dice_loss, cl_dice_dice_loss,
    )
}
TAKES_LOGITS = frozenset({"lovasz_hinge"})  # the losses whose from_logits defaults to True


def takes_logits(loss, keywords=None) -> bool:
    """Whether ``loss`` (a name in ``LOSSES``) reads ``y_pred`` as logits with ``keywords``:
    their ``from_logits``, else the loss's default (True only for ``lovasz_hinge``)."""
    return bool((keywords or {}).get("from_logits", loss in TAKES_LOGITS))


def loss_keywords(fn) -> dict:
    """The keyword settings of a loss function with their defaults (dice ones included
    where the function forwards ``**dice_keywords``)."""
    params = inspect.signature(fn).parameters.values()
    found = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        found.update(loss_keywords(dice_loss))
    return found


# ------------------------------------------------------------------- Keras classes


def _sample_weight_refusal(loss_name, settings):
    """Why ``loss_name`` with ``settings`` has no value per image to weigh (None if it has)."""
    if loss_name == "bce_log_dice_loss":
        return ("bce_log_dice_loss takes no sample_weight: its -log(Dice) term is the log of "
                "the batch's mean Dice, not a mean over images that a weight per image could "
                "weigh; use bce_dice_loss")
    if settings.get("per_image") is False:
        return (f"{loss_name} with per_image=False takes no sample_weight: its sums run over "
                "the whole batch, so there is no loss per image to weigh; use per_image=True")
    return None


class _FunctionLoss(keras.losses.Loss):
    """A Keras loss that calls one of the functions above with fixed keywords.

    ``call`` returns one value per image (``[B]``; ``[1]`` for a whole-batch loss) whose
    mean is the function's value, and Keras' reduction applies ``sample_weight``: with the
    default ``"sum_over_batch_size"`` and no ``sample_weight`` the value is the function's.
    """

    function = None  # set by each subclass

    def __init__(self, *, name=None, reduction="sum_over_batch_size", dtype=None, **settings):
        fn = type(self).function
        for key in ("class_weights", "pos_weight"):
            if isinstance(settings.get(key), np.ndarray):
                settings[key] = settings[key].tolist()
        self.settings = check_keywords(fn, settings)
        super().__init__(name=name or fn.__name__, reduction=reduction, dtype=dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            fn = type(self).function
            refusal = _sample_weight_refusal(fn.__name__, self.settings) or (
                None if hasattr(fn, "per_sample") else
                f"{fn.__name__} takes no sample_weight: it gives one value for the whole batch")
            if refusal:
                raise ValueError(refusal)
            shape = tf.convert_to_tensor(sample_weight).shape
            if shape.rank is not None and not (
                    shape.rank == 1 or (shape.rank == 2 and shape[-1] == 1)):
                raise ValueError(
                    f"sample_weight must hold one weight per image, shape [B] or [B, 1], got "
                    f"shape {shape}; to weigh pixels use class_weights or ignore_index")
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        fn = type(self).function
        if not hasattr(fn, "per_sample"):  # a loss that reduces the batch itself: a scalar
            return fn(y_true, y_pred, **self.settings)
        return _image_means(fn.per_sample(y_true, y_pred, **self.settings))

    def get_config(self):
        return {**super().get_config(), **self.settings}


@keras.saving.register_keras_serializable(package="explorer")
class DiceLoss(_FunctionLoss):
    """Keras loss for :func:`dice_loss` (same keywords and defaults)."""

    function = staticmethod(dice_loss)


@keras.saving.register_keras_serializable(package="explorer")
class BCELoss(_FunctionLoss):
    """Keras loss for :func:`binary_crossentropy` (p clipped as Keras' own BCE)."""

    function = staticmethod(binary_crossentropy)


@keras.saving.register_keras_serializable(package="explorer")
class BCELogDiceLoss(_FunctionLoss):
    """Keras loss for :func:`bce_log_dice_loss` (same keywords and defaults)."""

    function = staticmethod(bce_log_dice_loss)


@keras.saving.register_keras_serializable(package="explorer")
class BCEDiceLoss(_FunctionLoss):
    """Keras loss for :func:`bce_dice_loss` (same keywords and defaults)."""

    function = staticmethod(bce_dice_loss)


@keras.saving.register_keras_serializable(package="explorer")
class JaccardLoss(_FunctionLoss):
    """Keras loss for :func:`jaccard_loss` (same keywords and defaults)."""

    function = staticmethod(jaccard_loss)


@keras.saving.register_keras_serializable(package="explorer")
class TverskyLoss(_FunctionLoss):
    """Keras loss for :func:`tversky_loss` (same keywords and defaults)."""

    function = staticmethod(tversky_loss)


@keras.saving.register_keras_serializable(package="explorer")
class FocalLoss(_FunctionLoss):
    """Keras loss for :func:`focal_loss` (same keywords and defaults)."""

    function = staticmethod(focal_loss)


@keras.saving.register_keras_serializable(package="explorer")
class GeneralizedDiceLoss(_FunctionLoss):
    """Keras loss for :func:`generalized_dice_loss` (same keywords and defaults)."""

    function = staticmethod(generalized_dice_loss)


@keras.saving.register_keras_serializable(package="explorer")
class LovaszHingeLoss(_FunctionLoss):
    """Keras loss for :func:`lovasz_hinge`. It takes logits (a model whose last layer
    has no activation); ``from_logits=False`` accepts sigmoid probabilities instead."""

    function = staticmethod(lovasz_hinge)


@keras.saving.register_keras_serializable(package="explorer")
class LovaszSoftmaxLoss(_FunctionLoss):
    """Keras loss for :func:`lovasz_softmax` (same keywords and defaults)."""

    function = staticmethod(lovasz_softmax)


@keras.saving.register_keras_serializable(package="explorer")
class BoundaryLoss(_FunctionLoss):
    """Keras loss for :func:`boundary_loss` (the signed distance map is computed from each
    batch's truth on the CPU, through ``tf.numpy_function``)."""

    function = staticmethod(boundary_loss)


@keras.saving.register_keras_serializable(package="explorer")
class BoundaryDiceLoss(_FunctionLoss):
    """Keras loss for :func:`boundary_dice_loss` (same keywords and defaults)."""

    function = staticmethod(boundary_dice_loss)


@keras.saving.register_keras_serializable(package="explorer")
class ClDiceLoss(_FunctionLoss):
    """Keras loss for :func:`cl_dice_loss` (same keywords and defaults)."""

    function = staticmethod(cl_dice_loss)


@keras.saving.register_keras_serializable(package="explorer")
class ClDiceDiceLoss(_FunctionLoss):
    """Keras loss for :func:`cl_dice_dice_loss` (same keywords and defaults)."""

    function = staticmethod(cl_dice_dice_loss)


# the Keras class of every loss in LOSSES, by the same name
LOSS_CLASSES = {
    cls.function.__name__: cls for cls in (
        DiceLoss, JaccardLoss, TverskyLoss, GeneralizedDiceLoss, BCELoss, BCEDiceLoss,
        BCELogDiceLoss, FocalLoss, LovaszHingeLoss, LovaszSoftmaxLoss, BoundaryLoss,
        BoundaryDiceLoss, ClDiceLoss, ClDiceDiceLoss,
    )
}
