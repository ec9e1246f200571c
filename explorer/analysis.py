"""What the Explore tab shows, computed from masks and ``Settings``: the table of
numbers, the Dice formula with this mask's sums, gradient summaries by region, and
sweeps (loss vs smooth, vs object size, vs confidence). No Streamlit here."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage import morphology

from explorer import gradients, losses, masks
from explorer.settings import LOSS_LABELS, Settings


@dataclass(frozen=True)
class Row:
    key: str  # the pick in LOSS_LABELS, or a metric id
    label: str
    value: float
    kind: str  # "loss" (lower is better) or "score" (higher is better)
    refused: str = ""  # why this loss can't take these settings (value is then NaN)


def refusal(settings: Settings, loss: str) -> str:
    """Why ``loss`` can't be computed with these settings (the library's sentence), or ""."""
    try:
        losses.check_settings(settings.loss_name(loss), **settings.keywords(loss))
    except ValueError as error:
        return str(error)
    return ""


def _value(settings: Settings, loss: str, truth, pred) -> float:
    return gradients.loss_value(settings.loss_name(loss), truth, pred, **settings.keywords(loss))


def metrics_table(truth: np.ndarray, pred: np.ndarray, settings: Settings) -> list[Row]:
    """Every number of the table for batches ``truth``, ``pred`` ``[B, H, W, C]``."""
    refused = {key: refusal(settings, key) for key in LOSS_LABELS}
    computed = [key for key in LOSS_LABELS if not refused[key]]
    values = dict.fromkeys(LOSS_LABELS, math.nan)
    values.update(zip(computed, gradients.loss_values(
        [(settings.loss_name(key), settings.keywords(key)) for key in computed], truth, pred)))
    hard = losses.hard_metrics(truth, pred, threshold=settings.threshold,
                               per_image=settings.per_image)
    rows = [
        Row("dice_coefficient", "Dice coefficient (soft)",
            float(losses.dice_coefficient(truth, pred, **settings.dice_keywords())), "score"),
        Row("hard_dice", f"Dice (hard, at {settings.threshold:g})",
            _nanmean(hard["dice"].numpy()), "score"),
        Row("iou", "IoU (soft Jaccard index)", 1 - values["jaccard_loss"], "score"),
        Row("hard_iou", f"IoU (hard, at {settings.threshold:g})",
            _nanmean(hard["iou"].numpy()), "score"),
    ]
    rows += [Row(key, label, values[key], "loss", refused[key])
             for key, label in LOSS_LABELS.items()]
    return rows


def _nanmean(values: np.ndarray) -> float:
    """Mean over the defined entries; NaN only when every entry is 0/0."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan


def confusion_counts(truth, pred, settings: Settings) -> dict[str, np.ndarray]:
    """TP/FP/FN/TN per class over the batch."""
    hard = losses.hard_metrics(truth, pred, threshold=settings.threshold)
    return {k: hard[k].numpy() for k in ("tp", "fp", "fn", "tn")}


def dice_formula(truth, pred, settings: Settings) -> list[str]:
    """LaTeX lines: the Dice formula with this batch's I, P, G substituted, one line per
    class of the first image (or of the whole batch when ``per_image`` is off)."""
    g, p = losses.prepare_inputs(truth, pred)
    inter, pred_sum, true_sum = (s.numpy()[0] for s in losses.overlap_sums(
        g, p, squared=settings.squared, per_image=settings.per_image,
        soft_label=settings.soft_label))
    s, e = settings.smooth, settings.epsilon
    p_term = r"\sum p^2" if settings.squared else r"\sum p"
    g_term = r"\sum g^2" if settings.squared else r"\sum g"
    i_term = r"\sum \tfrac{p+g-|p-g|}{2}" if settings.soft_label else r"\sum p\,g"
    lines = [rf"\mathrm{{Dice}} = \frac{{2\,{i_term} + s}}{{{p_term} + {g_term} + s + \epsilon}}"]
    for c in range(len(inter)):
        num, den = 2 * inter[c] + s, pred_sum[c] + true_sum[c] + s + e
        value = r"\text{undefined } (0/0)" if den == 0 else f"{num / den:.4f}"
        who = f"\\text{{class {c}}}: " if len(inter) > 1 else ""
        lines.append(
            rf"{who}\frac{{2 \times {latex_number(inter[c])} + {latex_number(s)}}}"
            rf"{{{latex_number(pred_sum[c])} + {latex_number(true_sum[c])} + {latex_number(s)} + {latex_number(e)}}} = {value}")
    return lines


def number_text(value: float | None, spec: str = ".4g") -> str:
    """How a number reads in the app's sentences and tables: 0/0 is named, infinity is ∞,
    a missing value is n/a; otherwise ``format(value, spec)``."""
    if value is None:
        return "n/a"
    value = float(value)
    if math.isnan(value):
        return "undefined (0/0)"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return format(value, spec)


def latex_number(x: float) -> str:
    """A number inside a LaTeX formula: 6553.6 as is, 1e-05 as 10^{-5}, 2.5e-07 as
    2.5 \\times 10^{-7}."""
    if x == 0 or 1e-3 <= abs(x) < 1e7:
        return f"{x:.6g}"
    mantissa, exponent = f"{x:.3e}".split("e")
    power = f"10^{{{int(exponent)}}}"
    mantissa = f"{float(mantissa):g}"
    return power if mantissa == "1" else rf"{mantissa} \times {power}"


def inverse_frequency_weights(truth_labels: np.ndarray, num_classes: int) -> tuple[float, ...]:
    """Class weights ``1 / frequency`` scaled to mean 1 over the present classes; an
    absent class gets the largest weight (its false positives still count)."""
    counts = np.bincount(np.asarray(truth_labels).ravel(), minlength=num_classes)[:num_classes]
    present = counts > 0
    if not present.any():
        return tuple([1.0] * num_classes)
    weights = np.where(present, counts.sum() / np.maximum(counts, 1), 0.0)
    weights = weights / weights[present].mean()
    weights[~present] = weights.max()
    return tuple(float(round(w, 4)) for w in weights)


def gradient_regions(gradient: np.ndarray, truth_fg: np.ndarray) -> dict[str, float]:
    """Mean |gradient| inside the object, on its boundary (one pixel each side) and
    outside: where the loss pushes hardest. ``gradient`` and ``truth_fg`` are ``[H, W]``."""
    fg = np.asarray(truth_fg, bool)
    boundary = morphology.dilation(fg) & ~morphology.erosion(fg)
    magnitude = np.abs(gradient)
    regions = {"inside": fg & ~boundary, "boundary": boundary, "outside": ~fg & ~boundary}
    return {name: float(magnitude[m].mean()) if m.any() else math.nan
            for name, m in regions.items()}


# --------------------------------------------------------------------------- sweeps

SMOOTH_GRID = np.concatenate([[0.0], np.logspace(-6, 3, 28)])


def sweep_smooth(truth, pred, settings: Settings, loss_keys) -> dict[str, np.ndarray]:
    """Loss of each chosen Dice-family loss against smooth (log grid, 0 included)."""
    curves = {"smooth": SMOOTH_GRID}
    for key in loss_keys:
        curves[key] = np.array([_value(settings.replace(smooth=float(s)), key, truth, pred)
                                for s in SMOOTH_GRID])
    return curves


def sweep_object_size(settings: Settings, loss_keys, *, size: int = 96, offset: int = 2,
                      confidence: float = 0.9) -> dict[str, np.ndarray]:
    """The small-object effect: a circle truth against the same circle moved ``offset``
    pixels, for radii from 1 pixel up. Gives each loss and its mean |dL/dp| on the object."""
    radii = np.unique(np.round(np.geomspace(1, size * 0.4, 14)).astype(int))
    binary = settings.replace(num_classes=2, class_weights=None)
    values = {key: [] for key in loss_keys}
    grads = {key: [] for key in loss_keys}
    for r in radii:  # each pair of masks built once, scored by every loss
        truth_labels = masks.shape_mask("circle", size, radius=r / size)
        truth = masks.to_batch(masks.one_hot(truth_labels, 2))
        pred = masks.to_batch(masks.soften(masks.shift(truth_labels, 0, offset), 2,
                                           confidence=confidence))
        for key in loss_keys:
            value, grad = gradients.loss_and_gradient(
                binary.loss_name(key), truth, pred, **binary.keywords(key))
            values[key].append(value)
            grads[key].append(float(np.abs(grad[0, ..., 0])[truth_labels > 0].mean()))
    curves = {"radius": radii.astype(float)}
    for key in loss_keys:
        curves[key] = np.array(values[key])
        curves[key + ":grad"] = np.array(grads[key])
    return curves


CONFIDENCE_GRID = np.linspace(0.5, 0.999, 25)


def sweep_confidence(truth_labels, pred_labels, settings: Settings, loss_keys,
                     ) -> dict[str, np.ndarray]:
    """Loss against the prediction's confidence (probability given to its drawn class)."""
    truth = masks.to_batch(masks.one_hot(truth_labels, settings.num_classes))
    curves = {"confidence": CONFIDENCE_GRID}
    for key in loss_keys:
        curves[key] = np.array([
            _value(settings, key, truth, masks.to_batch(
                masks.soften(pred_labels, settings.num_classes, confidence=float(c))))
            for c in CONFIDENCE_GRID])
    return curves


# -------------------------------------------------------------- Lovász step-through

MAX_STEP_PIXELS = 64 * 64  # the step-through lists every pixel: small masks only
LOVASZ_KINDS = ("hinge", "softmax")


def _index(name: str, value, count: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not 0 <= value < count:
        raise ValueError(f"{name} must be an integer from 0 to {count - 1}, got {value!r}")
    return int(value)


def _image_batch(name: str, array) -> np.ndarray:
    a = np.asarray(array, dtype=np.float64)
    if a.ndim != 4:
        raise ValueError(f"{name} must be a batch of 2-D images [B, H, W, C], got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must hold at least one pixel, got shape {a.shape}")
    return a


def lovasz_steps(truth, pred, *, kind: str = "hinge", channel: int = 0, image: int = 0) -> dict:
    """The Lovász hinge / Lovász-Softmax of one image, pixel by pixel, for teaching.

    ``truth`` and ``pred`` are ``[B, H, W, C]`` (``pred`` probabilities); the step-through
    is for image ``image`` and, with ``kind="softmax"``, class ``channel``. Everything is
    computed in float64. The error of a pixel is

    * hinge (binary, ``C = 1``): ``e = 1 - z (2g - 1)`` on the logit ``z = log p - log1p(-p)``
      of ``p`` clipped to ``[1e-7, 1 - 1e-7]`` (:func:`explorer.gradients.probabilities_to_logits`);
    * softmax: ``e = |g_c - p_c|`` for class ``c = channel``.

    The errors are sorted in decreasing order (stable: equal errors keep pixel order, as
    ``tf.argsort`` in the library does). Taking the first ``k`` pixels in that order means
    "these k pixels are wrong": with ``G = sum g``, the Jaccard loss of that mask is
    ``J_k = 1 - (G - sum_{j<=k} g_j) / (G + sum_{j<=k} (1 - g_j))`` (``running_jaccard``).
    The weights ``w_k = J_k - J_{k-1}`` (``J_0 = 0``) are the gradient of the Lovász
    extension; the loss is ``sum_k relu(e_k) w_k``. All pixels taken is the all-wrong mask,
    whose Jaccard loss is 1, so the weights always sum to 1 (empty truth included: then
    the first weight is 1 and the others 0).

    Which library number ``loss`` equals (``library_loss`` is that number, computed by
    :func:`explorer.gradients.loss_and_gradient`):

    * hinge: ``losses.lovasz_hinge`` of this one image (per_image makes no difference for
      one image; over the batch, ``per_image=True`` is the mean of the images' losses).
      ``gradient`` is ``dloss/dz`` per pixel (w.r.t. the logits).
    * softmax: the term of class ``channel``, i.e. ``losses.lovasz_softmax`` of this image
      with only that channel (``truth[image:image+1, ..., c:c+1]``) and ``classes="all"``.
      ``lovasz_softmax`` of the image is the mean of these terms over the classes it counts
      (all ``C`` with ``classes="all"``; those present in the truth with ``"present"``).
      ``gradient`` is ``dterm/dp_c``; the term depends on no other channel, so the full
      loss's gradient w.r.t. ``p_c`` is this divided by the number of counted classes.

    Returns a dict. In sorted order (length ``H*W``): ``order`` (flat pixel index
    ``row * W + col``), ``rows``, ``cols`` (int64), and float64 ``errors``, ``truth`` (g of
    the pixel), ``prob`` (p of the pixel), ``running_jaccard``, ``weights``,
    ``contribution`` (``relu(e) w``), ``cumulative_loss``. Also ``loss`` and
    ``library_loss`` (floats), ``gradient`` (``[H, W]``), ``shape`` (``(H, W)``), ``kind``,
    ``channel``, ``image``, ``wrt`` (a label for the gradient) and ``reference`` (the
    library call ``loss`` equals, in words).

    Raises ``ValueError`` for a bad kind, channel or image, the hinge on several channels,
    and images over :data:`MAX_STEP_PIXELS` pixels (use :func:`small_pair` first).
    """
    if kind not in LOVASZ_KINDS:
        raise ValueError(f"kind must be 'hinge' or 'softmax', got {kind!r}")
    g_all, p_all = _image_batch("truth", truth), _image_batch("pred", pred)
    losses.prepare_inputs(g_all, p_all)  # shapes, NaN and [0, 1] checks with the usual messages
    batch, height, width, channels = g_all.shape
    image = _index("image", image, batch)
    if kind == "hinge" and channels != 1:
        raise ValueError(f"the Lovász hinge is binary: it needs 1 channel, got {channels} "
                         "(use kind='softmax' for several classes)")
    channel = _index("channel", channel, channels)
    if height * width > MAX_STEP_PIXELS:
        raise ValueError(f"the step-through lists every pixel, so it takes at most "
                         f"{MAX_STEP_PIXELS} pixels (64 x 64); this image has {height} x {width}"
                         f" = {height * width}: downsample it first (analysis.small_pair)")
    g = g_all[image:image + 1, ..., channel:channel + 1]
    p = p_all[image:image + 1, ..., channel:channel + 1]
    if kind == "hinge":
        z = gradients.probabilities_to_logits(p)  # the same logits loss_and_gradient uses
        errors = 1 - z * (2 * g - 1)
        name, keywords, wrt = "lovasz_hinge", {"per_image": True}, "logits"
        wrt_label, reference = "∂L/∂z", f"lovasz_hinge of image {image}"
    else:
        errors = np.abs(g - p)
        name, keywords, wrt = "lovasz_softmax", {"classes": "all", "per_image": True}, \
            "probabilities"
        wrt_label = f"∂L/∂p{channel}"
        reference = (f"lovasz_softmax(classes='all') of image {image} with only channel "
                     f"{channel}: that class's term")
    library_loss, gradient = gradients.loss_and_gradient(name, g, p, wrt=wrt, **keywords)

    errors, fg, prob = errors.ravel(), g.ravel(), p.ravel()
    order = np.argsort(-errors, kind="stable")  # = tf.argsort DESCENDING (top_k) on ties
    fg_sorted = fg[order]
    total = fg.sum()
    running = 1 - (total - np.cumsum(fg_sorted)) / (total + np.cumsum(1 - fg_sorted))
    weights = np.diff(running, prepend=0.0)
    contribution = np.maximum(errors[order], 0) * weights
    cumulative = np.cumsum(contribution)
    rows, cols = np.divmod(order, width)
    return {
        "order": order.astype(np.int64), "rows": rows.astype(np.int64),
        "cols": cols.astype(np.int64), "errors": errors[order], "truth": fg_sorted,
        "prob": prob[order], "running_jaccard": running, "weights": weights,
        "contribution": contribution, "cumulative_loss": cumulative,
        "loss": float(cumulative[-1]), "library_loss": library_loss,
        "gradient": gradient[0, ..., 0].astype(np.float64), "shape": (height, width),
        "kind": kind, "channel": channel, "image": image, "wrt": wrt_label,
        "reference": reference,
    }


def _area_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] weights averaging input pixels over each output pixel's span
    (exact area averaging, also for sizes that do not divide); rows sum to 1."""
    edges = np.arange(size_out + 1) * (size_in / size_out)
    start = np.arange(size_in)
    overlap = (np.minimum(start + 1, edges[1:, None]) - np.maximum(start, edges[:-1, None]))
    return np.clip(overlap, 0, None) / (size_in / size_out)


def small_pair(truth, pred, side: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A ``[B, H, W, C]`` truth/prediction pair shrunk for the Lovász step-through.

    The longer image side becomes ``side`` pixels and the other keeps the aspect ratio
    (a square image gives ``side x side``); an image already that small is returned as
    is (never upsampled). Each new pixel is the area average of the old pixels it covers
    (exact, also when the sizes do not divide), for the probabilities and the truth.
    A hard truth (only 0 and 1) stays hard: one channel is foreground where over half of
    the area was foreground (exactly half: background); several channels take the class
    with the largest area (ties: the lower class index), one-hot. A soft truth keeps its
    area averages. Returns float64 arrays.
    """
    if isinstance(side, (bool, np.bool_)) or not isinstance(side, (int, np.integer)) \
            or not 1 <= side <= 64:
        raise ValueError(f"side must be an integer from 1 to 64 (the step-through takes at "
                         f"most 64 x 64 pixels), got {side!r}")
    g, p = _image_batch("truth", truth), _image_batch("pred", pred)
    losses.prepare_inputs(g, p)
    height, width = g.shape[1:3]
    scale = min(1.0, side / max(height, width))
    out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
    rows, cols = _area_matrix(height, out_h), _area_matrix(width, out_w)
    g_small, p_small = (np.einsum("ih,bhwc,jw->bijc", rows, a, cols, optimize=True)
                        for a in (g, p))
    if np.all((g == 0) | (g == 1)):
        if g.shape[-1] == 1:
            g_small = (g_small > 0.5).astype(np.float64)
        else:
            g_small = np.eye(g.shape[-1])[g_small.argmax(-1)]
    return g_small, p_small
