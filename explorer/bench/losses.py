"""Benchmark: how fast is a loss value + per-pixel gradient, compiled vs eager vs a NumPy floor.

Run it as ``python -m explorer.bench`` (``--help`` for the options). For each loss in
``explorer.losses.LOSSES``, for a binary (C=1) and a 4-class (C=4) mask at each size S
(inputs ``[1, S, S, C]`` float32: a circle truth and a soft, shifted prediction; softmax for C=4),
it prints the median time over the repeats of

* compiled: ``explorer.gradients.loss_and_gradient(name, y_true, y_pred)`` (value and gradient),
* eager: the naive way, a ``tf.GradientTape`` around the eager loss function, gradient to numpy,
* numpy: the forward value alone, in float64, of this module's own vectorised NumPy version of
  the loss at its DEFAULT settings (``NUMPY_FLOOR``; it computes no gradient and checks no input):
  a floor for "how fast could a value be at all",
* first call: the very first ``loss_and_gradient`` call at that size, measured before the repeats
  and after a warm-up at another size, so it shows whether a new image size retraces.

``lovasz_hinge`` is binary only and takes logits: its eager and numpy runs feed
``explorer.losses.probability_logits(p)``.
No timing is asserted anywhere; this is a table for people to read.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from explorer import gradients, losses

DEFAULT_SIZES = (128, 256, 512, 1024)
DEFAULT_REPEATS = 20
QUICK_SIZES = (128, 256)
QUICK_REPEATS = 5
CLASS_COUNTS = (1, 4)
BINARY_ONLY = frozenset({"lovasz_hinge"})

COLUMNS = (
    ("loss", 21, "<"),
    ("C", 2, ">"),
    ("size", 5, ">"),
    ("compiled ms", 11, ">"),
    ("eager ms", 10, ">"),
    ("numpy ms", 10, ">"),
    ("first-call ms", 13, ">"),
    ("compiled/eager", 14, ">"),
    ("compiled/numpy", 14, ">"),
)


@dataclass
class Row:
    loss: str
    classes: int
    size: int
    compiled_ms: float
    eager_ms: float
    numpy_ms: float | None  # None: no NumPy floor for this loss
    first_call_ms: float

    @property
    def compiled_over_eager(self) -> float:
        return self.compiled_ms / self.eager_ms

    @property
    def compiled_over_numpy(self) -> float | None:
        return None if self.numpy_ms is None else self.compiled_ms / self.numpy_ms


# ----------------------------------------------------------------------------- inputs


def make_inputs(size: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A circle truth and a soft prediction of the same circle moved by size/16 pixels.

    Returns ``(y_true, y_pred)``, both float32 of shape ``[1, size, size, classes]``. For C=1 the
    prediction is a sigmoid ramp around the moved circle's edge, kept inside [1e-4, 1 - 1e-4] so that
    its logits are finite; for C=4 the truth is one-hot (background + three circles) and the
    prediction is a softmax over classes.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    shift = size / 16.0
    edge = max(size / 64.0, 0.5)  # width of the soft edge, pixels

    def distance(cy, cx):
        return np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)

    if classes == 1:
        radius = size / 4.0
        truth = (distance(size / 2, size / 2) <= radius).astype(np.float64)
        ramp = 1.0 / (1.0 + np.exp(-(radius - distance(size / 2 + shift / 2, size / 2 + shift)) / edge))
        pred = np.clip(ramp, 1e-4, 1 - 1e-4)
        return (truth[None, :, :, None].astype(np.float32), pred[None, :, :, None].astype(np.float32))

    centres = [(0.3, 0.3), (0.3, 0.7), (0.7, 0.5)]  # classes 1..3, as fractions of the size
    radius = size / 6.0
    labels = np.zeros((size, size), dtype=np.int64)
    logits = np.zeros((size, size, classes), dtype=np.float64)
    for k, (fy, fx) in enumerate(centres[: classes - 1], start=1):
        labels[distance(fy * size, fx * size) <= radius] = k
        ramp = 1.0 / (1.0 + np.exp(-(radius - distance(fy * size + shift / 2, fx * size + shift)) / edge))
        logits[..., k] = 4.0 * ramp
    logits[..., 0] = 2.0
    truth = np.eye(classes)[labels]
    pred = np.exp(logits - logits.max(axis=-1, keepdims=True))
    pred /= pred.sum(axis=-1, keepdims=True)
    return truth[None].astype(np.float32), pred[None].astype(np.float32)


def logits_of(p: np.ndarray) -> np.ndarray:
    """``explorer.losses.probability_logits(p)`` as a NumPy array of ``p``'s dtype."""
    return losses.probability_logits(tf.constant(p)).numpy()


# ----------------------------------------------------------------------------- the NumPy floor
# Each loss at its default settings (per image, classes averaged, smooth as in its signature),
# float64, vectorised: the forward value plain NumPy needs for the same number. It is a floor,
# not an oracle (tests/reference.py is that): tests/test_bench.py checks that it agrees.


def _np_sums(g: np.ndarray, p: np.ndarray):
    """I, P, G per image and class: sums over every axis between batch and channel."""
    g, p = g.reshape(len(g), -1, g.shape[-1]), p.reshape(len(p), -1, p.shape[-1])
    return np.einsum("bnc,bnc->bc", p, g), np.einsum("bnc->bc", p), np.einsum("bnc->bc", g)


def _np_tversky(g, p, alpha: float, beta: float, smooth: float) -> float:
    inter, pred, true = _np_sums(g, p)
    index = (inter + smooth) / (inter + alpha * (pred - inter) + beta * (true - inter) + smooth)
    return float(np.mean(1 - index))


def _np_dice(g, p) -> float:  # (2I + 1) / (P + G + 1) is Tversky(1/2, 1/2) with smooth 1/2
    return _np_tversky(g, p, 0.5, 0.5, 0.5)


def _np_generalized_dice(g, p, smooth: float = 1e-5) -> float:
    inter, pred, true = _np_sums(g, p)
    present = true > 0
    raw = np.divide(1.0, true * true, out=np.zeros_like(true), where=present)
    weights = np.where(present, raw, raw.max(-1, keepdims=True))  # absent: the largest weight
    weights = np.where(present.any(-1, keepdims=True), weights, 1.0)  # none present: all 1
    score = (2 * (weights * inter).sum(-1) + smooth) / ((weights * (pred + true)).sum(-1) + smooth)
    return float(np.mean(1 - score))


def _np_bce(g, p) -> float:
    p = np.clip(p, losses.PROB_CLIP, 1 - losses.PROB_CLIP)
    return float(np.mean(-(g * np.log(p) + (1 - g) * np.log(1 - p))))


def _np_focal(g, p, gamma: float = 2.0) -> float:
    p = np.clip(p, losses.PROB_CLIP, 1 - losses.PROB_CLIP)
    positive = g * (1 - p) ** gamma * np.log(p)
    if g.shape[-1] == 1:
        return float(-np.mean(positive + (1 - g) * p**gamma * np.log(1 - p)))
    return float(-np.mean(positive.sum(-1)))


def _np_lovasz(errors: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """Lovász extension of the Jaccard loss per row of ``errors`` [R, N] against truths ``fg``."""
    order = np.argsort(-errors, axis=-1, kind="stable")
    errors, fg = np.take_along_axis(errors, order, -1), np.take_along_axis(fg, order, -1)
    total = fg.sum(-1, keepdims=True)
    jaccard = 1 - (total - np.cumsum(fg, -1)) / (total + np.cumsum(1 - fg, -1))
    return (np.maximum(errors, 0) * np.diff(jaccard, axis=-1, prepend=0.0)).sum(-1)


def _np_lovasz_hinge(g, z) -> float:  # per image, on logits
    g, z = g.reshape(len(g), -1), z.reshape(len(z), -1)
    return float(np.mean(_np_lovasz(1 - z * (2 * g - 1), g)))


def _np_lovasz_softmax(g, p) -> float:  # whole batch, classes present in the truth
    g, p = g.reshape(-1, g.shape[-1]).T, p.reshape(-1, p.shape[-1]).T
    present = g.sum(-1) > 0
    return float(_np_lovasz(np.abs(g - p), g)[present].mean()) if present.any() else 0.0


def _np_boundary(g, p) -> float:  # mean of phi_G * p, phi_G by SciPy's distance transform
    from scipy import ndimage

    inside = g >= 0.5
    phi = np.zeros(g.shape)
    for b, c in np.ndindex(g.shape[0], g.shape[-1]):
        mask = inside[b, ..., c]
        if mask.any() and not mask.all():
            phi[b, ..., c] = (ndimage.distance_transform_edt(~mask) * ~mask
                              - (ndimage.distance_transform_edt(mask) - 1) * mask)
    return float(np.mean(phi * p))


def _np_soft_skeleton(x: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Shit et al.'s soft skeleton with SciPy's min and max filters (nothing past the edge)."""
    from scipy import ndimage

    spatial = x.ndim - 2
    lines = [tuple(3 if k == axis else 1 for k in range(spatial)) for axis in range(spatial)]

    def erode(a):  # the min over a cross, axis by axis
        return np.minimum.reduce([ndimage.minimum_filter(a, size=(1, *line, 1), mode="nearest")
                                  for line in lines])

    def dilate(a):
        return ndimage.maximum_filter(a, size=(1, *(3,) * spatial, 1), mode="nearest")

    skel = np.maximum(x - dilate(erode(x)), 0)
    for _ in range(iterations):
        x = erode(x)
        delta = np.maximum(x - dilate(erode(x)), 0)
        skel = skel + np.maximum(delta - skel * delta, 0)
    return skel


def _np_cl_dice(g, p, smooth: float = 1.0) -> float:  # per image and class, then the mean
    skel_p, skel_g = _np_soft_skeleton(p), _np_soft_skeleton(g)
    axes = tuple(range(1, g.ndim - 1))
    precision = ((skel_p * g).sum(axes) + smooth) / (skel_p.sum(axes) + smooth)
    sensitivity = ((skel_g * p).sum(axes) + smooth) / (skel_g.sum(axes) + smooth)
    return float(np.mean(1 - 2 * precision * sensitivity / (precision + sensitivity)))


NUMPY_FLOOR = {
    "dice_loss": _np_dice,
    "jaccard_loss": lambda g, p: _np_tversky(g, p, 1.0, 1.0, 1.0),
    "tversky_loss": lambda g, p: _np_tversky(g, p, 0.5, 0.5, 1.0),
    "generalized_dice_loss": _np_generalized_dice,
    "binary_crossentropy": _np_bce,
    "bce_dice_loss": lambda g, p: _np_bce(g, p) + _np_dice(g, p),
    "bce_log_dice_loss": lambda g, p: _np_bce(g, p) - np.log(1 - _np_dice(g, p)),
    "focal_loss": _np_focal,
    "lovasz_hinge": _np_lovasz_hinge,
    "lovasz_softmax": _np_lovasz_softmax,
    "boundary_loss": _np_boundary,
    "boundary_dice_loss": lambda g, p: _np_dice(g, p) + 0.01 * _np_boundary(g, p),
    "cl_dice_loss": _np_cl_dice,
    "cl_dice_dice_loss": lambda g, p: _np_dice(g, p) + _np_cl_dice(g, p),
}


# ----------------------------------------------------------------------------- the three ways


def _median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def compiled_call(name: str, y_true: np.ndarray, y_pred: np.ndarray):
    def call():
        value, grad = gradients.loss_and_gradient(name, y_true, y_pred)
        return float(value), np.asarray(grad)

    return call


def eager_call(name: str, y_true: np.ndarray, y_pred: np.ndarray):
    fn = losses.LOSSES[name]
    y_true_tensor = tf.constant(y_true)
    p = tf.constant(logits_of(y_pred) if name in losses.TAKES_LOGITS else y_pred)

    def call():
        with tf.GradientTape() as t:
            t.watch(p)
            v = fn(y_true_tensor, p)
        return float(v), t.gradient(v, p).numpy()

    return call


def numpy_call(name: str, y_true: np.ndarray, y_pred: np.ndarray):
    fn = NUMPY_FLOOR[name]
    g = y_true.astype(np.float64)
    p = y_pred.astype(np.float64)
    if name in losses.TAKES_LOGITS:
        p = logits_of(p)

    def call():
        return fn(g, p)

    return call


# ----------------------------------------------------------------------------- the run


def warmup_size(sizes) -> int:
    """A size not in `sizes`, used to build the compiled function before anything is timed."""
    size = 48
    while size in sizes:
        size += 1
    return size


def bench_one(name: str, classes: int, sizes, repeats: int) -> list[Row]:
    # Warm-up at a size that is not measured: builds the compiled function for these settings,
    # so that "first call" below shows only what a NEW SIZE costs (a retrace would show here).
    y_true, y_pred = make_inputs(warmup_size(sizes), classes)
    compiled_call(name, y_true, y_pred)()
    eager_call(name, y_true, y_pred)()

    rows = []
    for size in sizes:
        y_true, y_pred = make_inputs(size, classes)
        compiled = compiled_call(name, y_true, y_pred)
        start = time.perf_counter()
        compiled()
        first_ms = (time.perf_counter() - start) * 1e3
        compiled_ms = _median_ms(compiled, repeats)

        eager = eager_call(name, y_true, y_pred)
        eager()  # untimed: the first eager call at a size pays for kernel set-up
        eager_ms = _median_ms(eager, repeats)

        numpy_ms = None
        if name in NUMPY_FLOOR:
            floor = numpy_call(name, y_true, y_pred)
            floor()  # untimed, as the others
            numpy_ms = _median_ms(floor, repeats)
        rows.append(Row(name, classes, size, compiled_ms, eager_ms, numpy_ms, first_ms))
    return rows


def run(sizes, repeats: int, names, *, progress=None) -> list[Row]:
    rows = []
    for name in names:
        for classes in CLASS_COUNTS:
            if classes > 1 and name in BINARY_ONLY:
                continue
            if progress is not None:
                progress(f"{name} C={classes} ...")
            rows.extend(bench_one(name, classes, sizes, repeats))
    return rows


# ----------------------------------------------------------------------------- the table


def machine_line() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    cpu = platform.processor() or platform.machine()
    return (
        f"machine: {platform.platform()} ({cpu}), {os.cpu_count()} CPUs, "
        f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}; Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, NumPy {np.__version__}"
    )


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_table(rows: list[Row]) -> str:
    def line(cells):
        return "  ".join(f"{cell:{align}{width}}" for cell, (_, width, align) in zip(cells, COLUMNS)).rstrip()

    out = [line([title for title, _, _ in COLUMNS]), line(["-" * width for _, width, _ in COLUMNS])]
    for r in rows:
        out.append(
            line(
                [
                    r.loss,
                    str(r.classes),
                    str(r.size),
                    _fmt_ms(r.compiled_ms),
                    _fmt_ms(r.eager_ms),
                    _fmt_ms(r.numpy_ms),
                    _fmt_ms(r.first_call_ms),
                    _fmt_ratio(r.compiled_over_eager),
                    _fmt_ratio(r.compiled_over_numpy),
                ]
            )
        )
    return "\n".join(out)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m explorer.bench",
        description="Time loss value + gradient: compiled (explorer.gradients) vs eager GradientTape "
        "vs a float64 NumPy forward pass at default settings. Prints one plain-text table.",
    )
    parser.add_argument("--sizes", help=f"comma-separated image sizes S (default {','.join(map(str, DEFAULT_SIZES))}; "
                        f"--quick: {','.join(map(str, QUICK_SIZES))})")
    parser.add_argument("--repeats", type=int, help=f"timed calls per cell, median reported (default {DEFAULT_REPEATS}; "
                        f"--quick: {QUICK_REPEATS})")
    parser.add_argument("--losses", help="comma-separated loss names (default: all of explorer.losses.LOSSES)")
    parser.add_argument("--quick", action="store_true", help="a short run: sizes 128,256 and 5 repeats "
                        "(explicit --sizes/--repeats still win)")
    args = parser.parse_args(argv)

    sizes = args.sizes or ",".join(map(str, QUICK_SIZES if args.quick else DEFAULT_SIZES))
    try:
        args.sizes = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated whole numbers, got {sizes!r}")
    if not args.sizes or any(s < 4 for s in args.sizes):
        parser.error(f"--sizes must be whole numbers >= 4, got {sizes!r}")

    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    names = list(losses.LOSSES) if not args.losses else [n.strip() for n in args.losses.split(",") if n.strip()]
    unknown = [n for n in names if n not in losses.LOSSES]
    if unknown or not names:
        parser.error(f"unknown loss name(s) {unknown}; known: {', '.join(losses.LOSSES)}")
    args.losses = names
    return args


def main(argv=None) -> list[Row]:
    """Run the benchmark and print the table; returns the rows (for tests)."""
    args = parse_args(argv)
    print(machine_line())
    print(
        f"date: {datetime.date.today().isoformat()}; inputs [1, S, S, C] float32; "
        f"median of {args.repeats} calls; ms = milliseconds"
    )
    print("numpy = the value alone, float64 NumPy at the loss's default settings (no gradient)")
    sys.stdout.flush()

    def progress(msg):
        print(msg, file=sys.stderr, flush=True)

    rows = run(args.sizes, args.repeats, args.losses, progress=progress)
    print()
    print(format_table(rows))
    return rows
