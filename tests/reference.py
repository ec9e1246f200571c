"""Independent float64 oracle; never import explorer here.

Plain numpy re-implementations of every loss and metric in ``explorer.losses``,
written straight from the written contract (formulas, defaults, reductions,
degenerate cases) with explicit loops over images and classes. Clarity wins
over speed: this module is the yardstick the TensorFlow library is measured
against.

Conventions (same as the library): channels-last arrays ``[B, S1, ..., Sk, C]``,
every axis between batch (0) and channel (-1) is spatial; ``y_pred`` are
probabilities (``lovasz_hinge`` takes logits); ``y_true`` may be soft.
Everything is computed in float64 and returned as numpy float64 values
(scalars as 0-d arrays / Python floats, arrays for per-class results).
No argument validation is done here beyond what the arithmetic needs.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "overlap_sums",
    "dice_coefficient",
    "dice_loss",
    "per_class_dice",
    "jaccard_loss",
    "tversky_loss",
    "generalized_dice_loss",
    "binary_crossentropy",
    "bce_dice_loss",
    "bce_log_dice_loss",
    "focal_loss",
    "lovasz_grad",
    "lovasz_hinge",
    "lovasz_softmax",
    "hard_metrics",
]

CLIP_EPS = 1e-7  # probabilities are clipped to [1e-7, 1 - 1e-7] (like Keras)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def _as64(x):
    return np.asarray(x, dtype=np.float64)


def _images(y_true, y_pred, per_image):
    """Yield (g, p) pairs of shape [N, C]: one per image, or the whole batch once."""
    g = _as64(y_true)
    p = _as64(y_pred)
    n_classes = g.shape[-1]
    if per_image:
        for b in range(g.shape[0]):
            yield g[b].reshape(-1, n_classes), p[b].reshape(-1, n_classes)
    else:
        yield g.reshape(-1, n_classes), p.reshape(-1, n_classes)


def overlap_sums(y_true, y_pred, *, squared=False, per_image=True, soft_label=False):
    """Return I, P, G as float64 arrays of shape [B, C] (or [1, C] when not per image)."""
    if squared and soft_label:  # sum min(p, g) against sum p^2 + sum g^2: Dice can exceed 1
        raise ValueError("the contract rejects soft_label=True with squared=True")
    rows_i, rows_p, rows_g = [], [], []
    for g, p in _images(y_true, y_pred, per_image):
        n_classes = g.shape[1]
        i_row, p_row, g_row = [], [], []
        for c in range(n_classes):
            gc = g[:, c]
            pc = p[:, c]
            if soft_label:
                inter = np.sum((pc + gc - np.abs(pc - gc)) / 2.0)
            else:
                inter = np.sum(pc * gc)
            if squared:
                psum = np.sum(pc * pc)
                gsum = np.sum(gc * gc)
            else:
                psum = np.sum(pc)
                gsum = np.sum(gc)
            i_row.append(inter)
            p_row.append(psum)
            g_row.append(gsum)
        rows_i.append(i_row)
        rows_p.append(p_row)
        rows_g.append(g_row)
    return np.array(rows_i), np.array(rows_p), np.array(rows_g)


def _safe_div(num, den):
    """num / den in float64 where 0/0 gives NaN and x/0 gives inf, silently."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(num) / np.float64(den)


def _tversky_index(i, p, g, alpha, beta, s, e):
    den = (1.0 - alpha - beta) * i + alpha * p + beta * g + s + e
    return _safe_div(i + s, den)


def _class_weights(n_classes, class_weights, include_background):
    """Weights w_c of length C after the include_background rule."""
    drop_background = (not include_background) and n_classes > 1
    if class_weights is None:
        w = np.ones(n_classes)
    else:
        given = np.asarray(class_weights, dtype=np.float64).reshape(-1)
        if drop_background and given.size == n_classes - 1:
            w = np.concatenate([[0.0], given])  # weights of classes 1..C-1
        else:
            w = given.copy()
    if drop_background:
        w[0] = 0.0
    return w


def _reduce_scores(scores, class_weights, normalize_weights, include_background):
    """mean over images of sum_c w_c * scores[b, c] (/ sum_c w_c when normalized).

    Classes with weight 0 are skipped outright (so a NaN in a dropped class does
    not leak into the result).
    """
    n_images, n_classes = scores.shape
    w = _class_weights(n_classes, class_weights, include_background)
    per_image_values = []
    for b in range(n_images):
        total = 0.0
        for c in range(n_classes):
            if w[c] == 0.0:
                continue
            total += w[c] * scores[b, c]
        if normalize_weights:
            total = total / np.sum(w)
        per_image_values.append(total)
    return np.float64(np.mean(per_image_values))


def _dice_matrix(y_true, y_pred, smooth, epsilon, squared, per_image, soft_label):
    i, p, g = overlap_sums(y_true, y_pred, squared=squared, per_image=per_image,
                           soft_label=soft_label)
    out = np.empty_like(i)
    for b in range(i.shape[0]):
        for c in range(i.shape[1]):
            out[b, c] = _safe_div(2.0 * i[b, c] + smooth,
                                  p[b, c] + g[b, c] + smooth + epsilon)
    return out


# ----------------------------------------------------------------------------
# Dice family
# ----------------------------------------------------------------------------
def per_class_dice(y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False,
                   per_image=True, soft_label=False):
    """dice[b, c] = (2I + smooth) / (P + G + smooth + epsilon); [B, C] or [C]."""
    d = _dice_matrix(y_true, y_pred, smooth, epsilon, squared, per_image, soft_label)
    return d if per_image else d[0]


def dice_coefficient(y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False,
                     per_image=True, class_weights=None, normalize_weights=True,
                     include_background=True, soft_label=False):
    d = _dice_matrix(y_true, y_pred, smooth, epsilon, squared, per_image, soft_label)
    return _reduce_scores(d, class_weights, normalize_weights, include_background)


def dice_loss(y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False,
              per_image=True, class_weights=None, normalize_weights=True,
              include_background=True, soft_label=False):
    d = _dice_matrix(y_true, y_pred, smooth, epsilon, squared, per_image, soft_label)
    return _reduce_scores(1.0 - d, class_weights, normalize_weights, include_background)


def jaccard_loss(y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False,
                 per_image=True, class_weights=None, normalize_weights=True,
                 include_background=True, soft_label=False):
    """1 - (I + smooth) / (P + G - I + smooth + epsilon), same class reduction as Dice."""
    i, p, g = overlap_sums(y_true, y_pred, squared=squared, per_image=per_image,
                           soft_label=soft_label)
    losses = np.empty_like(i)
    for b in range(i.shape[0]):
        for c in range(i.shape[1]):
            jac = _safe_div(i[b, c] + smooth, p[b, c] + g[b, c] - i[b, c] + smooth + epsilon)
            losses[b, c] = 1.0 - jac
    return _reduce_scores(losses, class_weights, normalize_weights, include_background)


def tversky_loss(y_true, y_pred, *, alpha=0.5, beta=0.5, gamma=1.0, smooth=1.0,
                 epsilon=0.0, squared=False, per_image=True, class_weights=None,
                 normalize_weights=True, include_background=True, soft_label=False):
    """(1 - TI(alpha, beta, smooth, epsilon)) ** (1 / gamma) per (b, c), then class reduction."""
    if squared and alpha != beta:  # squared FP = sum p^2 - sum p g alone can be negative
        raise ValueError("the contract rejects squared=True with alpha != beta")
    i, p, g = overlap_sums(y_true, y_pred, squared=squared, per_image=per_image,
                           soft_label=soft_label)
    losses = np.empty_like(i)
    for b in range(i.shape[0]):
        for c in range(i.shape[1]):
            ti = _tversky_index(i[b, c], p[b, c], g[b, c], alpha, beta, smooth, epsilon)
            one_minus = 1.0 - ti
            # float64 round-off can leave a tiny negative where TI == 1 exactly in theory
            if one_minus < 0.0 and one_minus > -1e-12:
                one_minus = 0.0
            losses[b, c] = one_minus ** (1.0 / gamma)
    return _reduce_scores(losses, class_weights, normalize_weights, include_background)


def generalized_dice_loss(y_true, y_pred, *, smooth=1e-5, epsilon=0.0, squared=False,
                          per_image=True, include_background=True, soft_label=False):
    """Sudre et al. 2017: w_c = 1 / G_c^2 (plain sum of g), guarded for absent classes."""
    i, p, g = overlap_sums(y_true, y_pred, squared=squared, per_image=per_image,
                           soft_label=soft_label)
    _, _, g_plain = overlap_sums(y_true, y_pred, squared=False, per_image=per_image)
    n_classes = i.shape[1]
    if (not include_background) and n_classes > 1:
        classes = list(range(1, n_classes))
    else:
        classes = list(range(n_classes))

    losses = []
    for b in range(i.shape[0]):
        present = [c for c in classes if g_plain[b, c] > 0]
        weights = {}
        if not present:
            for c in classes:
                weights[c] = 1.0
        else:
            for c in present:
                weights[c] = 1.0 / (g_plain[b, c] ** 2)
            largest = max(weights[c] for c in present)
            for c in classes:
                if c not in weights:
                    weights[c] = largest
        num = 2.0 * sum(weights[c] * i[b, c] for c in classes) + smooth
        den = sum(weights[c] * (p[b, c] + g[b, c]) for c in classes) + smooth + epsilon
        losses.append(1.0 - _safe_div(num, den))
    return np.float64(np.mean(losses))


# ----------------------------------------------------------------------------
# cross-entropy family
# ----------------------------------------------------------------------------
def binary_crossentropy(y_true, y_pred):
    """Mean over all elements of -(g log p + (1-g) log(1-p)), p clipped to [1e-7, 1-1e-7]."""
    g = _as64(y_true).reshape(-1)
    p = np.clip(_as64(y_pred).reshape(-1), CLIP_EPS, 1.0 - CLIP_EPS)
    total = 0.0
    for k in range(g.size):
        total += -(g[k] * np.log(p[k]) + (1.0 - g[k]) * np.log(1.0 - p[k]))
    return np.float64(total / g.size)


def bce_dice_loss(y_true, y_pred, *, bce_weight=1.0, dice_weight=1.0, **dice_keywords):
    return np.float64(bce_weight * binary_crossentropy(y_true, y_pred)
                      + dice_weight * dice_loss(y_true, y_pred, **dice_keywords))


def bce_log_dice_loss(y_true, y_pred, **dice_keywords):
    return np.float64(binary_crossentropy(y_true, y_pred)
                      - np.log(dice_coefficient(y_true, y_pred, **dice_keywords)))


def focal_loss(y_true, y_pred, *, gamma=2.0, alpha=None):
    """Lin et al. focal loss; binary (C == 1) per element, categorical (C > 1) per pixel."""
    g_all = _as64(y_true)
    p_all = np.clip(_as64(y_pred), CLIP_EPS, 1.0 - CLIP_EPS)
    n_classes = g_all.shape[-1]
    g = g_all.reshape(-1, n_classes)
    p = p_all.reshape(-1, n_classes)
    n_pixels = g.shape[0]

    if n_classes == 1:
        if alpha is None:
            a_pos, a_neg = 1.0, 1.0
        else:
            a_pos, a_neg = float(alpha), 1.0 - float(alpha)
        total = 0.0
        for k in range(n_pixels):
            gk, pk = g[k, 0], p[k, 0]
            total += -(a_pos * gk * (1.0 - pk) ** gamma * np.log(pk)
                       + a_neg * (1.0 - gk) * pk ** gamma * np.log(1.0 - pk))
        return np.float64(total / n_pixels)

    if alpha is None:
        a = np.ones(n_classes)
    elif np.ndim(alpha) == 0:
        a = np.full(n_classes, float(alpha))
    else:
        a = np.asarray(alpha, dtype=np.float64).reshape(-1)
    total = 0.0
    for k in range(n_pixels):
        for c in range(n_classes):
            total += -a[c] * g[k, c] * (1.0 - p[k, c]) ** gamma * np.log(p[k, c])
    return np.float64(total / n_pixels)


# ----------------------------------------------------------------------------
# Lovász family (Berman, Rannen Triki & Blaschko, CVPR 2018)
# ----------------------------------------------------------------------------
def lovasz_grad(gt_sorted):
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors."""
    gs = _as64(gt_sorted).reshape(-1)
    n = np.sum(gs)
    inter = n - np.cumsum(gs)
    union = n + np.cumsum(1.0 - gs)
    jac = 1.0 - inter / union
    grad = jac.copy()
    if grad.size > 1:
        grad[1:] = jac[1:] - jac[:-1]
    return grad


def _lovasz_hinge_flat(logits, labels):
    logits = _as64(logits).reshape(-1)
    labels = _as64(labels).reshape(-1)
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    order = np.argsort(-errors, kind="stable")  # descending
    errors_sorted = errors[order]
    gt_sorted = labels[order]
    grad = lovasz_grad(gt_sorted)
    return np.float64(np.sum(np.maximum(errors_sorted, 0.0) * grad))


def lovasz_hinge(y_true, logits, *, per_image=True):
    g = _as64(y_true)
    z = _as64(logits)
    if per_image:
        values = [_lovasz_hinge_flat(z[b], g[b]) for b in range(g.shape[0])]
        return np.float64(np.mean(values))
    return _lovasz_hinge_flat(z, g)


def _lovasz_softmax_flat(probs, labels, classes):
    """probs, labels: [N, C]. Mean over counted classes; 0 when none counts."""
    n_classes = probs.shape[1]
    losses = []
    for c in range(n_classes):
        fg = labels[:, c]
        if classes == "present" and np.sum(fg) <= 0:
            continue
        errors = np.abs(fg - probs[:, c])
        order = np.argsort(-errors, kind="stable")
        losses.append(np.sum(errors[order] * lovasz_grad(fg[order])))
    if not losses:
        return 0.0
    return float(np.mean(losses))


def lovasz_softmax(y_true, probs, *, classes="present", per_image=False):
    values = [_lovasz_softmax_flat(p, g, classes)
              for g, p in _images(y_true, probs, per_image)]
    return np.float64(np.mean(values))


# ----------------------------------------------------------------------------
# hard metrics
# ----------------------------------------------------------------------------
def hard_metrics(y_true, y_pred, *, threshold=0.5, per_image=False):
    """Counts and hard Dice/IoU per class: dict of float64 arrays [C] or [B, C]."""
    rows = {k: [] for k in ("tp", "fp", "fn", "tn", "dice", "iou")}
    for g, p in _images(y_true, y_pred, per_image):
        n_pixels, n_classes = g.shape
        if n_classes == 1:
            pred_fg = [p[:, 0] >= threshold]
            true_fg = [g[:, 0] >= 0.5]
        else:
            pred_label = np.argmax(p, axis=1)
            true_label = np.argmax(g, axis=1)
            pred_fg = [pred_label == c for c in range(n_classes)]
            true_fg = [true_label == c for c in range(n_classes)]
        counts = {k: [] for k in rows}
        for c in range(n_classes):
            tp = fp = fn = tn = 0
            for k in range(n_pixels):
                pk, tk = bool(pred_fg[c][k]), bool(true_fg[c][k])
                if pk and tk:
                    tp += 1
                elif pk and not tk:
                    fp += 1
                elif tk and not pk:
                    fn += 1
                else:
                    tn += 1
            counts["tp"].append(tp)
            counts["fp"].append(fp)
            counts["fn"].append(fn)
            counts["tn"].append(tn)
            if tp + fp + fn == 0:
                counts["dice"].append(np.nan)
                counts["iou"].append(np.nan)
            else:
                counts["dice"].append(2.0 * tp / (2.0 * tp + fp + fn))
                counts["iou"].append(tp / (tp + fp + fn))
        for k in rows:
            rows[k].append(counts[k])
    out = {k: np.array(v, dtype=np.float64) for k, v in rows.items()}
    if not per_image:
        out = {k: v[0] for k, v in out.items()}
    return out
