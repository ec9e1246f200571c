"""Independent float64 oracle; never import explorer here.

Plain numpy re-implementations of every loss and metric in ``explorer.losses``,
written straight from the written contract (formulas, defaults, reductions,
degenerate cases) with explicit loops over images and classes. Clarity wins
over speed: this module is the yardstick the TensorFlow library is measured
against.

Conventions (same as the library): channels-last arrays ``[B, S1, ..., Sk, C]``,
every axis between batch (0) and channel (-1) is spatial; ``y_pred`` are
probabilities (``lovasz_hinge`` takes logits); ``y_true`` may be soft.

The peers' options, from their written definitions:
``from_logits`` (sigmoid for one channel, softmax over several; logs of logits by hand,
never clipped), ``ignore_index`` (a pixel whose truth equals it in any channel is removed:
p = g = 0 in the region sums, skipped in cross-entropy means, dropped from the Lovász
sort), ``class_weights`` / ``pos_weight`` of cross-entropy and focal (torch:
``sum_i w[y_i] l_i / sum_i w[y_i]``; ``pos_weight`` times the ``g log p`` term),
``weight_type`` of generalized Dice (MONAI ``w_type``) and the ``empty`` conventions
("smooth": the formula; "zero"/"one"/"nan": that loss for an entry with no truth;
"skip": the entry leaves the class mean, an image with none left the batch mean).
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
    "signed_distance",
    "soft_skeleton",
    "boundary_loss",
    "boundary_dice_loss",
    "cl_dice_loss",
    "cl_dice_dice_loss",
]

CLIP_EPS = 1e-7  # probabilities are clipped to [1e-7, 1 - 1e-7] (like Keras)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def _as64(x):
    return np.asarray(x, dtype=np.float64)


def _sigmoid(z):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def _softmax_pixels(z):
    """softmax over the last axis, pixel by pixel."""
    out = np.empty_like(z)
    for idx in np.ndindex(z.shape[:-1]):
        row = z[idx]
        e = np.exp(row - np.max(row))
        out[idx] = e / np.sum(e)
    return out


def _probabilities(y_pred, from_logits):
    x = _as64(y_pred)
    if not from_logits:
        return x
    return _sigmoid(x) if x.shape[-1] == 1 else _softmax_pixels(x)


def _log_sigmoid(z):
    """log(1 / (1 + exp(-z))) without overflow, element by element."""
    out = np.empty_like(z)
    for idx in np.ndindex(z.shape):
        v = z[idx]
        out[idx] = -np.log1p(np.exp(-v)) if v >= 0 else v - np.log1p(np.exp(v))
    return out


def _log_terms(y_pred, from_logits):
    """(log p, log(1 - p)) per element: clipped probabilities, or exact from logits."""
    x = _as64(y_pred)
    if not from_logits:
        p = np.clip(x, CLIP_EPS, 1.0 - CLIP_EPS)
        return np.log(p), np.log(1.0 - p)
    if x.shape[-1] == 1:
        return _log_sigmoid(x), _log_sigmoid(-x)
    log_p, log_q = np.empty_like(x), np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        z = x[idx]
        top = np.max(z)
        total = top + np.log(np.sum(np.exp(z - top)))
        for c in range(z.size):
            others = np.delete(z, c)
            top_o = np.max(others)
            log_p[idx + (c,)] = z[c] - total
            log_q[idx + (c,)] = top_o + np.log(np.sum(np.exp(others - top_o))) - total
    return log_p, log_q


def _ignored(y_true, ignore_index):
    """[B, S...] booleans: the pixels whose truth equals ignore_index in some channel."""
    g = _as64(y_true)
    if ignore_index is None:
        return np.zeros(g.shape[:-1], dtype=bool)
    return np.any(g == ignore_index, axis=-1)


def _region_arrays(y_true, y_pred, from_logits=False, ignore_index=None):
    """(g, p) float64 probabilities with p = g = 0 at the ignored pixels."""
    g = _as64(y_true).copy()
    p = _probabilities(y_pred, from_logits).copy()
    ignored = _ignored(y_true, ignore_index)
    g[ignored] = 0.0
    p[ignored] = 0.0
    return g, p


def _empty_value(value, empty, as_loss=True):
    """An entry with no truth under the 'zero' / 'one' / 'nan' conventions."""
    if empty == "zero":
        return 0.0 if as_loss else 1.0
    if empty == "one":
        return 1.0 if as_loss else 0.0
    if empty == "nan":
        return np.nan
    return value


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


def _reduce_scores(scores, class_weights, normalize_weights, include_background,
                   absent=None, empty="smooth", as_loss=True):
    """mean over images of sum_c w_c * scores[b, c] (/ sum_c w_c when normalized).

    Classes with weight 0 are skipped outright (so a NaN in a dropped class does
    not leak into the result). ``absent[b, c]`` marks entries with no truth, which the
    ``empty`` convention scores ("zero", "one", "nan") or leaves out ("skip": out of the
    class sum and its weights; an image with nothing left out of the mean; none left: 0).
    """
    n_images, n_classes = scores.shape
    w = _class_weights(n_classes, class_weights, include_background)
    per_image_values, counted = [], []
    for b in range(n_images):
        total, weight_sum = 0.0, 0.0
        for c in range(n_classes):
            if w[c] == 0.0:
                continue
            value = scores[b, c]
            if absent is not None and absent[b, c]:
                if empty == "skip":
                    continue
                value = _empty_value(value, empty, as_loss)
            total += w[c] * value
            weight_sum += w[c]
        if normalize_weights and weight_sum > 0:
            total = total / weight_sum
        per_image_values.append(total)
        counted.append(weight_sum > 0)
    if empty == "skip":
        kept = [v for v, k in zip(per_image_values, counted) if k]
        return np.float64(np.mean(kept)) if kept else np.float64(0.0)
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


def _absent(y_true, y_pred, per_image):
    """[B, C] (or [1, C]) booleans: no truth in that image (or the batch) and class."""
    _, _, g = overlap_sums(y_true, y_pred, per_image=per_image)
    return g == 0.0


def dice_coefficient(y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False,
                     per_image=True, class_weights=None, normalize_weights=True,
                     include_background=True, soft_label=False, from_logits=False,
                     ignore_index=None, empty="smooth"):
    y_true, y_pred = _region_arrays(y_true, y_pred, from_logits, ignore_index)
    d = _dice_matrix(y_true, y_pred, smooth, epsilon, squared, per_image, soft_label)
    return _reduce_scores(d, class_weights, normalize_weights, include_background,
                          _absent(y_true, y_pred, per_image), empty, as_loss=False)


def dice_loss(y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False,
              per_image=True, class_weights=None, normalize_weights=True,
              include_background=True, soft_label=False, from_logits=False,
              ignore_index=None, empty="smooth"):
    y_true, y_pred = _region_arrays(y_true, y_pred, from_logits, ignore_index)
    d = _dice_matrix(y_true, y_pred, smooth, epsilon, squared, per_image, soft_label)
    return _reduce_scores(1.0 - d, class_weights, normalize_weights, include_background,
                          _absent(y_true, y_pred, per_image), empty)


def jaccard_loss(y_true, y_pred, *, smooth=1.0, epsilon=0.0, squared=False,
                 per_image=True, class_weights=None, normalize_weights=True,
                 include_background=True, soft_label=False, from_logits=False,
                 ignore_index=None, empty="smooth"):
    """1 - (I + smooth) / (P + G - I + smooth + epsilon), same class reduction as Dice."""
    y_true, y_pred = _region_arrays(y_true, y_pred, from_logits, ignore_index)
    i, p, g = overlap_sums(y_true, y_pred, squared=squared, per_image=per_image,
                           soft_label=soft_label)
    losses = np.empty_like(i)
    for b in range(i.shape[0]):
        for c in range(i.shape[1]):
            jac = _safe_div(i[b, c] + smooth, p[b, c] + g[b, c] - i[b, c] + smooth + epsilon)
            losses[b, c] = 1.0 - jac
    return _reduce_scores(losses, class_weights, normalize_weights, include_background,
                          _absent(y_true, y_pred, per_image), empty)


def tversky_loss(y_true, y_pred, *, alpha=0.5, beta=0.5, gamma=1.0, smooth=1.0,
                 epsilon=0.0, squared=False, per_image=True, class_weights=None,
                 normalize_weights=True, include_background=True, soft_label=False,
                 from_logits=False, ignore_index=None, empty="smooth"):
    """(1 - TI(alpha, beta, smooth, epsilon)) ** (1 / gamma) per (b, c), then class reduction."""
    if squared and alpha != beta:  # squared FP = sum p^2 - sum p g alone can be negative
        raise ValueError("the contract rejects squared=True with alpha != beta")
    y_true, y_pred = _region_arrays(y_true, y_pred, from_logits, ignore_index)
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
    return _reduce_scores(losses, class_weights, normalize_weights, include_background,
                          _absent(y_true, y_pred, per_image), empty)


def generalized_dice_loss(y_true, y_pred, *, smooth=1e-5, epsilon=0.0, squared=False,
                          per_image=True, include_background=True, soft_label=False,
                          weight_type="square", from_logits=False, ignore_index=None,
                          empty="smooth"):
    """Sudre et al. 2017: w_c = 1 / G_c^2 (plain sum of g), guarded for absent classes;
    weight_type "simple" is 1 / G_c, "uniform" 1 (MONAI w_type)."""
    y_true, y_pred = _region_arrays(y_true, y_pred, from_logits, ignore_index)
    i, p, g = overlap_sums(y_true, y_pred, squared=squared, per_image=per_image,
                           soft_label=soft_label)
    _, _, g_plain = overlap_sums(y_true, y_pred, squared=False, per_image=per_image)
    n_classes = i.shape[1]
    if (not include_background) and n_classes > 1:
        classes = list(range(1, n_classes))
    else:
        classes = list(range(n_classes))

    losses, counted = [], []
    for b in range(i.shape[0]):
        present = [c for c in classes if g_plain[b, c] > 0]
        weights = {}
        if not present:
            for c in classes:
                weights[c] = 1.0
        else:
            for c in present:
                if weight_type == "square":
                    weights[c] = 1.0 / (g_plain[b, c] ** 2)
                elif weight_type == "simple":
                    weights[c] = 1.0 / g_plain[b, c]
                else:  # "uniform"
                    weights[c] = 1.0
            largest = max(weights[c] for c in present)
            for c in classes:
                if c not in weights:
                    weights[c] = largest
        num = 2.0 * sum(weights[c] * i[b, c] for c in classes) + smooth
        den = sum(weights[c] * (p[b, c] + g[b, c]) for c in classes) + smooth + epsilon
        loss = 1.0 - _safe_div(num, den)
        losses.append(loss if present else _empty_value(loss, empty))
        counted.append(bool(present) or empty != "skip")
    kept = [v for v, k in zip(losses, counted) if k]
    return np.float64(np.mean(kept)) if kept else np.float64(0.0)


# ----------------------------------------------------------------------------
# cross-entropy family
# ----------------------------------------------------------------------------
def _true_class_weight(g_pixel, class_weights):
    """torch's w[y_i] for one pixel's truth: sum_c w_c g_c; one channel: [w_bg, w_fg]."""
    if class_weights is None:
        return 1.0
    w = np.asarray(class_weights, dtype=np.float64).reshape(-1)
    if g_pixel.size == 1:
        return w[0] * (1.0 - g_pixel[0]) + w[1] * g_pixel[0]
    return float(np.sum(w * g_pixel))


def _weighted_pixel_mean(pixel_losses, g, class_weights, ignored):
    """sum_i w_i l_i / sum_i w_i over the pixels that are not ignored (NaN for 0/0)."""
    num = den = 0.0
    for idx in np.ndindex(g.shape[:-1]):
        if ignored[idx]:
            continue
        w = _true_class_weight(g[idx], class_weights)
        num += w * pixel_losses[idx]
        den += w
    return np.float64(_safe_div(num, den))


def binary_crossentropy(y_true, y_pred, *, from_logits=False, class_weights=None,
                        pos_weight=None, ignore_index=None):
    """-(pw g log p + (1-g) log(1-p)), mean over a pixel's channels, then (weighted) mean
    over the pixels; p clipped to [1e-7, 1-1e-7] unless from logits."""
    ignored = _ignored(y_true, ignore_index)
    g = _as64(y_true).copy()
    g[ignored] = 0.0
    log_p, log_q = _log_terms(y_pred, from_logits)
    n_classes = g.shape[-1]
    pw = np.ones(n_classes) if pos_weight is None else (
        np.asarray(pos_weight, dtype=np.float64) * np.ones(n_classes))
    pixel = np.zeros(g.shape[:-1])
    for idx in np.ndindex(g.shape[:-1]):
        terms = [-(pw[c] * g[idx + (c,)] * log_p[idx + (c,)]
                   + (1.0 - g[idx + (c,)]) * log_q[idx + (c,)]) for c in range(n_classes)]
        pixel[idx] = np.mean(terms)
    return _weighted_pixel_mean(pixel, g, class_weights, ignored)


def _shared(dice_keywords):
    return {k: dice_keywords[k] for k in ("from_logits", "ignore_index") if k in dice_keywords}


def bce_dice_loss(y_true, y_pred, *, bce_weight=1.0, dice_weight=1.0, **dice_keywords):
    return np.float64(bce_weight * binary_crossentropy(y_true, y_pred, **_shared(dice_keywords))
                      + dice_weight * dice_loss(y_true, y_pred, **dice_keywords))


def bce_log_dice_loss(y_true, y_pred, **dice_keywords):
    return np.float64(binary_crossentropy(y_true, y_pred, **_shared(dice_keywords))
                      - np.log(dice_coefficient(y_true, y_pred, **dice_keywords)))


def focal_loss(y_true, y_pred, *, gamma=2.0, alpha=None, from_logits=False,
               class_weights=None, ignore_index=None):
    """Lin et al. focal loss; binary (C == 1) per element, categorical (C > 1) per pixel;
    (weighted) mean over the pixels as in binary_crossentropy."""
    ignored = _ignored(y_true, ignore_index)
    g = _as64(y_true).copy()
    g[ignored] = 0.0
    log_p, log_q = _log_terms(y_pred, from_logits)
    p, q = np.exp(log_p), np.exp(log_q)  # 1 - p from its own log: exact from logits
    if not from_logits:
        p = np.clip(_as64(y_pred), CLIP_EPS, 1.0 - CLIP_EPS)
        q = 1.0 - p
    n_classes = g.shape[-1]
    pixel = np.zeros(g.shape[:-1])
    if n_classes == 1:
        if alpha is None:
            a_pos, a_neg = 1.0, 1.0
        else:
            a_pos, a_neg = float(alpha), 1.0 - float(alpha)
        for idx in np.ndindex(g.shape[:-1]):
            k = idx + (0,)
            pixel[idx] = -(a_pos * g[k] * q[k] ** gamma * log_p[k]
                           + a_neg * (1.0 - g[k]) * p[k] ** gamma * log_q[k])
        return _weighted_pixel_mean(pixel, g, class_weights, ignored)

    if alpha is None:
        a = np.ones(n_classes)
    elif np.ndim(alpha) == 0:
        a = np.full(n_classes, float(alpha))
    else:
        a = np.asarray(alpha, dtype=np.float64).reshape(-1)
    for idx in np.ndindex(g.shape[:-1]):
        pixel[idx] = sum(-a[c] * g[idx + (c,)] * q[idx + (c,)] ** gamma * log_p[idx + (c,)]
                         for c in range(n_classes))
    return _weighted_pixel_mean(pixel, g, class_weights, ignored)


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


def lovasz_hinge(y_true, logits, *, per_image=True, from_logits=True, ignore_index=None):
    """Ignored pixels are removed before the sort; from_logits=False: clipped logits of p."""
    g = _as64(y_true)
    z = _as64(logits)
    if not from_logits:
        p = np.clip(z, CLIP_EPS, 1.0 - CLIP_EPS)
        z = np.log(p) - np.log1p(-p)
    kept = ~_ignored(y_true, ignore_index)
    if per_image:
        values = [_lovasz_hinge_flat(z[b][kept[b]], g[b][kept[b]]) for b in range(g.shape[0])]
        return np.float64(np.mean(values))
    return _lovasz_hinge_flat(z[kept], g[kept])


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


def lovasz_softmax(y_true, probs, *, classes="present", per_image=False, from_logits=False,
                   ignore_index=None):
    """Ignored pixels are removed before the sort; from_logits: softmax (sigmoid) first."""
    probs = _probabilities(probs, from_logits)
    kept = ~_ignored(y_true, ignore_index)
    g_all, p_all = _as64(y_true), _as64(probs)
    if per_image:
        pairs = [(g_all[b][kept[b]], p_all[b][kept[b]]) for b in range(g_all.shape[0])]
    else:
        pairs = [(g_all[kept], p_all[kept])]
    values = [_lovasz_softmax_flat(p, g, classes) for g, p in pairs]
    return np.float64(np.mean(values))


# ----------------------------------------------------------------------------
# boundary (Kervadec et al. 2019) and clDice (Shit et al. 2021)
# ----------------------------------------------------------------------------
def signed_distance(y_true):
    """Kervadec's signed distance map per image and channel, by brute force: outside the
    object (g < 0.5) the euclidean distance (in pixels) to the nearest object pixel; inside,
    minus (the distance to the nearest background pixel, less 1); 0 in a channel with no
    object or no background."""
    g = _as64(y_true) >= 0.5
    phi = np.zeros(g.shape)
    for b in range(g.shape[0]):
        for c in range(g.shape[-1]):
            inside = g[b, ..., c]
            if not inside.any() or inside.all():
                continue
            points_in = np.argwhere(inside).astype(np.float64)
            points_out = np.argwhere(~inside).astype(np.float64)
            for idx in np.ndindex(inside.shape):
                here = np.array(idx, np.float64)
                if inside[idx]:
                    nearest = np.sqrt(((points_out - here) ** 2).sum(1)).min()
                    phi[(b, *idx, c)] = -(nearest - 1.0)
                else:
                    phi[(b, *idx, c)] = np.sqrt(((points_in - here) ** 2).sum(1)).min()
    return phi


def boundary_loss(y_true, y_pred, *, include_background=True, from_logits=False,
                  ignore_index=None):
    """Mean over the counted pixels and the kept classes of phi_G * p (phi_G from the truth
    with the ignored pixels as background)."""
    g = _as64(y_true).copy()
    p = _probabilities(y_pred, from_logits)
    ignored = _ignored(y_true, ignore_index)
    g[ignored] = 0.0
    phi = signed_distance(g)
    if not include_background and g.shape[-1] > 1:
        phi, p = phi[..., 1:], p[..., 1:]
    pixel = (phi * p).mean(axis=-1)
    counted = ~ignored
    if not counted.any():
        return np.float64(np.nan)
    return np.float64(pixel[counted].sum() / counted.sum())


def boundary_dice_loss(y_true, y_pred, *, boundary_weight=0.01, **dice_keywords):
    shared = {k: dice_keywords[k] for k in ("from_logits", "ignore_index", "include_background")
              if k in dice_keywords}
    dice = dice_loss(y_true, y_pred, **dice_keywords)
    if boundary_weight == 0:
        return np.float64(dice)
    return np.float64(dice + boundary_weight * boundary_loss(y_true, y_pred, **shared))


def _neighbour(x, axis, pick):
    """Per pixel, ``pick`` (np.minimum or np.maximum) of itself and its two neighbours
    along ``axis``; outside the array there is no neighbour."""
    out = x.copy()
    n = x.shape[axis]
    for shift in (-1, 1):
        moved = np.take(x, np.clip(np.arange(n) + shift, 0, n - 1), axis=axis)
        out = pick(out, moved)  # at the edge the clipped index is the pixel itself
    return out


def soft_skeleton(x, iterations):
    """Shit et al.'s soft skeleton: erosion is the min over a cross (one axis at a time),
    dilation the max over the full box; skel = relu(x - open(x)), then ``iterations`` times
    x = erode(x), delta = relu(x - open(x)), skel += relu(delta - skel * delta)."""
    axes = range(1, x.ndim - 1)

    def erode(a):
        return np.minimum.reduce([_neighbour(a, axis, np.minimum) for axis in axes])

    def dilate(a):
        for axis in axes:
            a = _neighbour(a, axis, np.maximum)
        return a

    def relu(a):
        return np.maximum(a, 0.0)

    x = _as64(x)
    skel = relu(x - dilate(erode(x)))
    for _ in range(int(iterations)):
        x = erode(x)
        delta = relu(x - dilate(erode(x)))
        skel = skel + relu(delta - skel * delta)
    return skel


def cl_dice_loss(y_true, y_pred, *, iterations=3, smooth=1.0, per_image=True,
                 include_background=True, from_logits=False, ignore_index=None):
    """1 - soft clDice per image (or over the batch) and kept class, averaged."""
    g, p = _region_arrays(y_true, y_pred, from_logits, ignore_index)
    if not include_background and g.shape[-1] > 1:
        g, p = g[..., 1:], p[..., 1:]
    skel_p, skel_g = soft_skeleton(p, iterations), soft_skeleton(g, iterations)
    rows = [slice(b, b + 1) for b in range(g.shape[0])] if per_image else [slice(None)]
    losses = []
    for rows_of in rows:
        per_class = []
        for c in range(g.shape[-1]):
            sp, sg = skel_p[rows_of, ..., c], skel_g[rows_of, ..., c]
            gc, pc = g[rows_of, ..., c], p[rows_of, ..., c]
            precision = _safe_div((sp * gc).sum() + smooth, sp.sum() + smooth)
            sensitivity = _safe_div((sg * pc).sum() + smooth, sg.sum() + smooth)
            score = _safe_div(2 * precision * sensitivity, precision + sensitivity)
            per_class.append(1.0 - score)
        losses.append(np.mean(per_class))
    return np.float64(np.mean(losses))


def cl_dice_dice_loss(y_true, y_pred, *, cl_dice_weight=1.0, iterations=3, **dice_keywords):
    shared = {k: dice_keywords[k] for k in ("smooth", "per_image", "include_background",
                                            "from_logits", "ignore_index")
              if k in dice_keywords}
    dice = dice_loss(y_true, y_pred, **dice_keywords)
    if cl_dice_weight == 0:
        return np.float64(dice)
    return np.float64(dice + cl_dice_weight * cl_dice_loss(y_true, y_pred, iterations=iterations,
                                                           **shared))


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
