"""Loss values and per-pixel gradients with ``tf.GradientTape``, compiled once.

``loss_and_gradient`` is what the explorer calls on every widget change, so the
work is a compiled ``tf.function`` per (loss, structural settings): the mask size
is a ``None`` dimension (a new size does not retrace), and numeric settings
(smooth, epsilon, alpha, weights, ...) are tensor arguments, so moving a slider
does not retrace either. Only switches (``squared``, ``per_image``, ``from_logits``,
``empty``, ...), the number of classes, the rank and the dtype pick a different compiled
function.

``y_pred`` is always probabilities here. A loss that reads logits (``from_logits=True``, or
``lovasz_hinge`` by default) gets the logits behind them (:func:`probabilities_to_logits`),
so its value is the same up to the clip of 0 and 1, while its gradient w.r.t. the logits
flows through ``log_sigmoid`` / ``log_softmax`` instead of a clip.
"""

from __future__ import annotations

import threading

import numpy as np
import tensorflow as tf

from explorer import losses

WRT = ("probabilities", "logits")
_compiled: dict = {}
_lock = threading.Lock()
_traces = 0


def trace_count() -> int:
    """How many times a compiled function was traced (for tests of retracing)."""
    return _traces


def probabilities_to_logits(y_pred: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` for one channel, ``log p`` for softmax channels, with ``p``
    clipped to ``[1e-7, 1 - 1e-7]`` so that 0 and 1 map to finite logits.

    Computed in the compute dtype (float64 for float64 input, else float32) by the same
    TensorFlow ops as the compiled graph's logit: in float32 the upper clip is
    ``float32(1 - 1e-7) = 1 - 1.19e-7`` (logit 15.94, not 16.12), so a loss of the logits
    has the same value whether it is differentiated w.r.t. the probabilities or the logits.
    """
    y_pred = np.asarray(y_pred)
    dtype = np.float64 if y_pred.dtype == np.float64 else np.float32
    p = tf.convert_to_tensor(y_pred.astype(dtype, copy=False))
    if p.shape[-1] == 1:
        z = losses.probability_logits(p)
    else:
        z = tf.math.log(losses.clip_probabilities(p))
    return z.numpy()


def _is_numeric(value) -> bool:
    if value is None or isinstance(value, (bool, str, np.bool_)):
        return False
    array = np.asarray(value)
    return array.dtype != object and np.issubdtype(array.dtype, np.number)


def _graph_logits(probs):
    """In the graph: the logits behind probabilities, as :func:`probabilities_to_logits`."""
    if probs.shape[-1] == 1:
        return losses.probability_logits(probs)
    return tf.math.log(losses.clip_probabilities(probs))


def _build(loss_name, wrt, rank, channels, dtype, static, numeric_shapes):
    fn = losses.LOSSES[loss_name]
    takes_logits = losses.takes_logits(loss_name, static)
    mask_spec = tf.TensorSpec([None] * (rank - 1) + [channels], dtype)
    numeric_spec = {k: tf.TensorSpec(shape, dtype) for k, shape in numeric_shapes}

    @tf.function(input_signature=[mask_spec, mask_spec, numeric_spec], autograph=False)
    def value_and_grad(y_true, x, numeric):
        global _traces
        _traces += 1  # runs at trace time only
        with tf.GradientTape() as tape:
            tape.watch(x)
            if wrt == "logits":
                probs = tf.sigmoid(x) if channels == 1 else tf.nn.softmax(x, axis=-1)
            else:
                probs = x
            if takes_logits:
                arg = x if wrt == "logits" else _graph_logits(probs)
            else:
                arg = probs
            value = fn(y_true, arg, **static, **numeric)
        return value, tape.gradient(value, x)

    return value_and_grad


def loss_and_gradient(loss_name, y_true, y_pred, *, wrt="probabilities", **loss_keywords):
    """Value of ``explorer.losses.<loss_name>`` and its gradient, shaped like ``y_pred``.

    ``y_pred`` are probabilities. ``wrt="probabilities"`` differentiates w.r.t. them;
    ``wrt="logits"`` w.r.t. the logits ``z`` behind them (``p = sigmoid(z)`` for one
    channel, ``softmax(z)`` for several), where ``z`` comes from
    :func:`probabilities_to_logits`. Computes in float64 for float64 inputs, else float32.
    """
    if wrt not in WRT:
        raise ValueError(f"wrt must be 'probabilities' or 'logits', got {wrt!r}")
    value, gradient = _call(loss_name, y_true, y_pred, wrt, loss_keywords)
    return float(value), gradient.numpy()


def loss_value(loss_name, y_true, y_pred, **loss_keywords) -> float:
    """The value alone, from a compiled function without the gradient tape."""
    return loss_values([(loss_name, loss_keywords)], y_true, y_pred)[0]


def loss_values(requests, y_true, y_pred) -> list[float]:
    """Values of several losses on the same masks in one compiled call (a table of
    numbers): ``requests`` is a list of ``(loss_name, keywords)``."""
    # checked once per ignore_index mark (usually none) for all; the graph skips the checks
    for mark in dict.fromkeys([kw.get("ignore_index") for _, kw in requests] or [None]):
        g, p = losses.prepare_inputs(y_true, y_pred, ignore_index=mark)
    parts = [_split(name, keywords, g.dtype) for name, keywords in requests]
    key = ("values", p.shape.rank, p.shape[-1], g.dtype.name,
           tuple((name, signature) for (name, _), (_, _, signature) in zip(requests, parts)))
    with _lock:
        compiled = _compiled.get(key)
        if compiled is None:
            compiled = _compiled[key] = _build_values(
                [(name, static) for (name, _), (static, _, _) in zip(requests, parts)],
                [signature[1] for _, _, signature in parts], p.shape.rank, p.shape[-1], g.dtype)
    values = compiled(g, p, [numeric for _, numeric, _ in parts])
    return [float(v) for v in values.numpy()]


def _build_values(named_statics, numeric_shapes, rank, channels, dtype):
    mask_spec = tf.TensorSpec([None] * (rank - 1) + [channels], dtype)
    numeric_specs = [{k: tf.TensorSpec(shape, dtype) for k, shape in shapes}
                     for shapes in numeric_shapes]

    @tf.function(input_signature=[mask_spec, mask_spec, numeric_specs], autograph=False)
    def values(y_true, probs, numerics):
        global _traces
        _traces += 1  # runs at trace time only
        out = []
        for (name, static), numeric in zip(named_statics, numerics):
            arg = _graph_logits(probs) if losses.takes_logits(name, static) else probs
            out.append(tf.cast(losses.LOSSES[name](y_true, arg, **static, **numeric), dtype))
        return tf.stack(out)

    return values


def _split(loss_name, loss_keywords, dtype):
    """Check a loss's keywords; split them into switches (baked into the graph) and
    numbers (tensor arguments), with the signature that picks the compiled function."""
    losses.check_keywords(loss_name, loss_keywords, argument="loss_name")
    static = {k: v for k, v in loss_keywords.items() if not _is_numeric(v)}
    numeric = {k: np.asarray(v, dtype.as_numpy_dtype) for k, v in loss_keywords.items()
               if _is_numeric(v)}
    signature = (tuple(sorted(static.items())), tuple(sorted((k, v.shape)
                                                             for k, v in numeric.items())))
    return static, numeric, signature


def _call(loss_name, y_true, y_pred, wrt, loss_keywords):
    """Validate once, eagerly, then run the compiled value-and-gradient function."""
    g, p = losses.prepare_inputs(  # the compiled graph skips these checks
        y_true, y_pred, ignore_index=loss_keywords.get("ignore_index"))
    static, numeric, signature = _split(loss_name, loss_keywords, g.dtype)
    rank, channels = p.shape.rank, p.shape[-1]
    key = (loss_name, wrt, rank, channels, g.dtype.name, signature)
    with _lock:
        compiled = _compiled.get(key)
        if compiled is None:
            compiled = _compiled[key] = _build(loss_name, wrt, rank, channels, g.dtype, static,
                                               signature[1])
    if wrt == "logits":
        p = tf.cast(probabilities_to_logits(p.numpy()), g.dtype)
    return compiled(g, p, numeric)
