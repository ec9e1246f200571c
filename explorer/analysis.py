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


def _value(settings: Settings, loss: str, truth, pred) -> float:
    return gradients.loss_value(settings.loss_name(loss), truth, pred, **settings.keywords(loss))


def metrics_table(truth: np.ndarray, pred: np.ndarray, settings: Settings) -> list[Row]:
    """Every number of the table for batches ``truth``, ``pred`` ``[B, H, W, C]``."""
    values = dict(zip(LOSS_LABELS, gradients.loss_values(
        [(settings.loss_name(key), settings.keywords(key)) for key in LOSS_LABELS], truth, pred)))
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
    rows += [Row(key, label, values[key], "loss") for key, label in LOSS_LABELS.items()]
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
            rf"{who}\frac{{2 \times {_fmt(inter[c])} + {_fmt(s)}}}"
            rf"{{{_fmt(pred_sum[c])} + {_fmt(true_sum[c])} + {_fmt(s)} + {_fmt(e)}}} = {value}")
    return lines


def _fmt(x: float) -> str:
    if x == 0 or 1e-3 <= abs(x) < 1e7:
        return f"{x:.6g}"
    mantissa, exponent = f"{x:.3e}".split("e")
    return rf"{mantissa} \times 10^{{{int(exponent)}}}"


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
