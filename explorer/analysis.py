"""What the Explore tab shows, computed from masks and ``Settings``: the table of
numbers, the Dice formula with this mask's sums, gradient summaries by region, and
sweeps (loss vs smooth, vs object size, vs confidence). No Streamlit here."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from skimage import morphology

from explorer import gradients, losses, masks, metrics
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
    soft_dice, hard_dice, hard_iou = metrics_table_scores(truth, pred, settings)
    rows = [soft_dice, hard_dice,
            Row("iou", "IoU (soft Jaccard index)", 1 - values["jaccard_loss"], "score"),
            hard_iou]
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


@dataclass(frozen=True)
class Formula:
    """The chosen loss's formula for the Formula panel, in LaTeX."""

    general: str  # the formula in symbols
    substituted: list[str]  # this batch's sums put in: one line per class, then the loss
    note: str = ""  # one plain sentence where a setting does something unexpected


def _sums(truth, pred, settings: Settings):
    """I, P, G (float64, one per kept class) of the first image, or of the whole batch."""
    g, p = losses.prepare_inputs(np.asarray(truth, np.float64), np.asarray(pred, np.float64))
    first = 0 if settings.channels == 1 or settings.include_background else 1
    g, p = g[..., first:], p[..., first:]
    sums = losses.overlap_sums(g, p, squared=settings.squared, per_image=settings.per_image,
                               soft_label=settings.soft_label)
    return first, [x.numpy()[0] for x in sums]


def _class_prefix(c: int, count: int) -> str:
    return f"\\text{{class {c}}}: " if count > 1 else ""


def _ratio_text(num: float, den: float) -> str:
    return r"\text{undefined } (0/0)" if den == 0 else f"{num / den:.4f}"


def _index_lines(truth, pred, settings: Settings, form: str) -> list[str]:
    """One substituted line per class of the index: ``form`` "dice" (2I + s over
    P + G + s + e), "jaccard" (I + s over P + G - I + s + e) or "tversky"."""
    first, (inter, pred_sum, true_sum) = _sums(truth, pred, settings)
    s, e = settings.smooth, settings.epsilon
    lines = []
    for k in range(len(inter)):
        i, p, g = inter[k], pred_sum[k], true_sum[k]
        n = latex_number
        if form == "dice":
            num, den = 2 * i + s, p + g + s + e
            text = rf"\frac{{2 \times {n(i)} + {n(s)}}}{{{n(p)} + {n(g)} + {n(s)} + {n(e)}}}"
        elif form == "jaccard":
            num, den = i + s, p + g - i + s + e
            text = rf"\frac{{{n(i)} + {n(s)}}}{{{n(p)} + {n(g)} - {n(i)} + {n(s)} + {n(e)}}}"
        else:
            alpha, beta, fp, fn = settings.alpha, settings.beta, p - i, g - i
            num, den = i + s, (1 - alpha - beta) * i + alpha * p + beta * g + s + e
            text = (rf"\frac{{{n(i)} + {n(s)}}}{{{n(i)} + {n(alpha)} \times {n(fp)} + "
                    rf"{n(beta)} \times {n(fn)} + {n(s)} + {n(e)}}}")
        lines.append(f"{_class_prefix(first + k, len(inter))}{text} = {_ratio_text(num, den)}")
    return lines


def _cross_entropy_sums(truth, pred, softmax: bool, gamma: float, alpha):
    """The positive and negative terms of (focal) cross-entropy summed over all elements,
    and the element count the mean divides by (float64; p clipped as Keras does)."""
    g = np.asarray(truth, np.float64)
    p = np.clip(np.asarray(pred, np.float64), losses.PROB_CLIP, 1 - losses.PROB_CLIP)
    positive = g * (1 - p) ** gamma * np.log(p)
    negative = (1 - g) * p ** gamma * np.log(1 - p)
    if softmax:  # focal on softmax channels: the true class's term, one per pixel
        a = 1.0 if alpha is None else alpha
        return float((a * positive).sum()), 0.0, g[..., 0].size
    if alpha is not None:
        positive, negative = alpha * positive, (1 - alpha) * negative
    return float(positive.sum()), float(negative.sum()), g.size


def _cross_entropy_lines(truth, pred, settings: Settings, focal: bool) -> tuple[str, list[str]]:
    gamma = settings.focal_gamma if focal else 0.0
    alpha = settings.focal_alpha if focal else None
    softmax = focal and settings.channels > 1  # BCE takes every channel as binary
    pos, neg, count = _cross_entropy_sums(truth, pred, softmax, gamma, alpha)
    n = latex_number
    if focal:
        a, b = ("", "") if alpha is None else (r"\alpha\,", r"(1-\alpha)\,")
        general = (rf"\mathrm{{FL}} = -\frac{{1}}{{N}}\sum \big[{a}g\,(1-p)^\gamma \log p"
                   rf" + {b}(1-g)\,p^\gamma \log(1-p)\big]")
        if softmax:
            general = (rf"\mathrm{{FL}} = -\frac{{1}}{{N}}\sum_{{\text{{pixels}}}}\sum_c "
                       rf"{a}g_c\,(1-p_c)^\gamma \log p_c")
    else:
        general = r"\mathrm{BCE} = -\frac{1}{N}\sum \big[g \log p + (1-g)\log(1-p)\big]"
    line = (rf"-\frac{{1}}{{{count}}}\big[({n(pos)}) + ({n(neg)})\big] = "
            rf"{(-(pos + neg) / count):.4f}")
    return general, [line]


def loss_formula(truth, pred, settings: Settings) -> Formula:
    """The chosen loss's formula with this batch's sums substituted (first image when
    ``per_image``, else the whole batch; one line per kept class), for ``[B, H, W, C]``."""
    name = settings.loss_name()
    i_term = r"\sum \tfrac{p+g-|p-g|}{2}" if settings.soft_label else r"\sum p\,g"
    p_term, g_term = (r"\sum p^2", r"\sum g^2") if settings.squared else (r"\sum p", r"\sum g")
    dice = rf"\frac{{2\,{i_term} + s}}{{{p_term} + {g_term} + s + \epsilon}}"
    if name in ("dice_loss", "bce_dice_loss", "bce_log_dice_loss"):
        lines = _index_lines(truth, pred, settings, "dice")
        if name == "dice_loss":
            return Formula(rf"\mathrm{{Dice}} = {dice},\quad L = 1 - \mathrm{{Dice}}", lines)
        bce, bce_lines = _cross_entropy_lines(truth, pred, settings, focal=False)
        combined = (rf"L = {settings.bce_weight:g}\,\mathrm{{BCE}} + {settings.dice_weight:g}"
                    r"\,(1 - \mathrm{Dice})" if name == "bce_dice_loss"
                    else r"L = \mathrm{BCE} - \log \mathrm{Dice}")
        return Formula(rf"{combined},\quad \mathrm{{Dice}} = {dice}", bce_lines + lines)
    if name == "jaccard_loss":
        general = (rf"\mathrm{{IoU}} = \frac{{{i_term} + s}}{{{p_term} + {g_term} - {i_term}"
                   r" + s + \epsilon}},\quad L = 1 - \mathrm{IoU}")
        return Formula(general, _index_lines(truth, pred, settings, "jaccard"))
    if name == "tversky_loss":
        a, b, gamma = settings.alpha, settings.beta, settings.tversky_gamma
        power = "" if gamma == 1 else rf"^{{1/{gamma:g}}}"
        general = (r"\mathrm{TI} = \frac{I + s}{I + \alpha\,\mathrm{FP} + \beta\,\mathrm{FN} + s"
                   rf" + \epsilon}},\quad L = (1 - \mathrm{{TI}}){power},\quad "
                   rf"\alpha = {a:g},\ \beta = {b:g}")
        return Formula(general, _index_lines(truth, pred, settings, "tversky"))
    if name == "generalized_dice_loss":
        return _generalized_dice_formula(truth, pred, settings, i_term, p_term, g_term)
    if name in ("binary_crossentropy", "focal_loss"):
        general, lines = _cross_entropy_lines(truth, pred, settings, focal=name == "focal_loss")
        return Formula(general, lines)
    if name in _BOUNDARY_TOPOLOGY:
        return _boundary_topology_formula(truth, pred, settings, dice)
    return Formula(r"L = \sum_i e_{(i)}\,\big(J(\{1..i\}) - J(\{1..i-1\})\big)", [],
                   "Errors sorted from the largest, each weighted by how much it adds to the "
                   "Jaccard loss: the 'Lovász step by step' view walks through it.")


_BOUNDARY_TOPOLOGY = ("boundary_loss", "boundary_dice_loss", "cl_dice_loss",
                      "cl_dice_dice_loss")
BOUNDARY_NOTE = ("φ_G is the truth's signed distance map in pixels (negative inside, positive "
                 "outside, 0 on its boundary), computed from the truth by SciPy and held "
                 "constant: ∂L/∂p = φ_G/N pushes far false positives down hardest.")
SKELETON_NOTE = ("S is the soft skeleton (Shit et al. 2021): {k} steps of min-pool erosion, "
                 "each adding what an opening removes; it scores centre lines, not areas.")


def _boundary_topology_formula(truth, pred, settings: Settings, dice: str) -> Formula:
    """The boundary loss (Σ φ_G p / N), soft clDice, and their sums with Dice, over the batch
    (boundary) or per the first image's first kept class (clDice)."""
    name = settings.loss_name()
    n = latex_number
    keywords = settings.keywords()
    lines, general = [], []
    if name in ("boundary_dice_loss", "cl_dice_dice_loss"):
        lines += _index_lines(truth, pred, settings, "dice")
    if name in ("boundary_loss", "boundary_dice_loss"):
        g, p = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
        first = 0 if settings.channels == 1 or settings.include_background else 1
        phi = losses.signed_distance(g)[..., first:]
        total, count = float((phi * p[..., first:]).sum()), phi.size
        general.append(r"\mathrm{Boundary} = \frac{1}{N}\sum_i \phi_G(i)\,p_i")
        lines.append(rf"\mathrm{{Boundary}} = \frac{{{n(total)}}}{{{count}}} = "
                     rf"{total / count:.4f}")
    if name in ("cl_dice_loss", "cl_dice_dice_loss"):
        general.append(r"\mathrm{clDice} = \frac{2\,T_{prec}T_{sens}}{T_{prec} + T_{sens}},\ "
                       r"T_{prec} = \frac{\sum S(p)\,g + s}{\sum S(p) + s},\ "
                       r"T_{sens} = \frac{\sum S(g)\,p + s}{\sum S(g) + s}")
        lines += _cl_dice_lines(truth, pred, settings)
    if name == "boundary_dice_loss":
        general.insert(0, rf"L = (1 - \mathrm{{Dice}}) + {settings.boundary_weight:g}\,"
                          rf"\mathrm{{Boundary}},\quad \mathrm{{Dice}} = {dice}")
    elif name == "cl_dice_dice_loss":
        general.insert(0, rf"L = (1 - \mathrm{{Dice}}) + {settings.cl_dice_weight:g}\,"
                          rf"(1 - \mathrm{{clDice}}),\quad \mathrm{{Dice}} = {dice}")
    else:
        general.insert(0, "L = " + (r"\mathrm{Boundary}" if name == "boundary_loss"
                                    else r"1 - \mathrm{clDice}"))
    note = " ".join(text for text, used in (
        (BOUNDARY_NOTE, "boundary" in name),
        (SKELETON_NOTE.format(k=keywords.get("iterations", 0)), "cl_dice" in name)) if used)
    return Formula(r",\quad ".join(general), lines, note)


def _cl_dice_lines(truth, pred, settings: Settings) -> list[str]:
    """T_prec, T_sens and clDice of each kept class (first image, or the whole batch)."""
    keywords = settings.keywords()
    g, p = losses.prepare_inputs(np.asarray(truth, np.float64), np.asarray(pred, np.float64))
    first = 0 if settings.channels == 1 or settings.include_background else 1
    g, p = g[..., first:], p[..., first:]
    skel_p = losses.soft_skeleton(p, keywords["iterations"]).numpy()
    skel_g = losses.soft_skeleton(g, keywords["iterations"]).numpy()
    g, p = g.numpy(), p.numpy()
    rows = slice(0, 1) if settings.per_image else slice(None)
    s = keywords["smooth"]
    lines = []
    for k in range(g.shape[-1]):
        parts = [float(a[rows, ..., k].sum()) for a in (skel_p * g, skel_p, skel_g * p, skel_g)]
        precision = (parts[0] + s) / (parts[1] + s) if parts[1] + s else math.nan
        sensitivity = (parts[2] + s) / (parts[3] + s) if parts[3] + s else math.nan
        total = precision + sensitivity
        score = 2 * precision * sensitivity / total if total else math.nan
        lines.append(f"{_class_prefix(first + k, g.shape[-1])}"
                     rf"T_{{prec}} = {number_text(precision)},\ T_{{sens}} = "
                     rf"{number_text(sensitivity)},\ \mathrm{{clDice}} = {number_text(score)}")
    return lines


def _generalized_dice_formula(truth, pred, settings: Settings, i_term, p_term, g_term):
    first, (inter, pred_sum, true_sum) = _sums(truth, pred, settings)
    keywords = settings.keywords()
    s, e = keywords["smooth"], keywords["epsilon"]
    volume = true_sum
    if settings.squared:  # the weights count the truth's pixels, not its squares
        volume = _sums(truth, pred, settings.replace(squared=False))[1][2]
    weights = losses._sudre_weights(volume[None]).numpy()[0]
    num = 2 * float((weights * inter).sum()) + s
    den = float((weights * (pred_sum + true_sum)).sum()) + s + e
    n = latex_number
    general = (rf"\mathrm{{GD}} = \frac{{2\sum_c w_c {i_term} + s}}{{\sum_c w_c ({p_term} + "
               rf"{g_term}) + s + \epsilon}},\quad w_c = 1/(\textstyle\sum g_c)^2")
    lines = [", ".join(rf"w_{{{first + k}}} = {n(w)}" for k, w in enumerate(weights)),
             rf"\frac{{{n(num - s)} + {n(s)}}}{{{n(den - s - e)} + {n(s)} + {n(e)}}} = "
             rf"{_ratio_text(num, den)}"]
    note = (f"Generalized Dice uses smooth = {s:g} here, not the smooth of the settings: its "
            "class weights 1/G² shrink the sums to about 1/G, and a smooth near 1 would swamp "
            "them (the index would read about 1 whatever the prediction). Epsilon is used as set.")
    return Formula(general, lines, note)


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



# ------------------------------------------------------------ what the stage says


def soft_hard_note(truth, pred, settings: Settings) -> str:
    """One sentence where soft and hard Dice differ by more than 0.01, saying where the
    difference comes from: soft Dice counts p itself, so the p left on background pixels
    adds to Σp and the 1 − p missing on the truth lowers Σp·g, where thresholding first
    counts whole pixels. "" when they agree."""
    rows = {r.key: r.value for r in metrics_table_scores(truth, pred, settings)}
    soft, hard = rows["dice_coefficient"], rows["hard_dice"]
    if not (math.isfinite(soft) and math.isfinite(hard)) or abs(soft - hard) <= 0.01:
        return ""
    g = np.asarray(truth, np.float64)
    p = np.asarray(pred, np.float64)
    counts = confusion_counts(truth, pred, settings)
    off = float((p * (1 - g)).sum())  # soft false positives: p on background
    short = float(((1 - p) * g).sum())  # soft false negatives: 1 - p on the truth
    return (f"Soft Dice {soft:.3f} against hard Dice {hard:.3f} (threshold "
            f"{settings.threshold:g}): soft Dice counts p itself. Off the truth, p adds up to "
            f"{off:,.1f} (hard: {int(counts['fp'].sum()):,} false-positive pixels); on the "
            f"truth, 1 − p adds up to {short:,.1f} (hard: {int(counts['fn'].sum()):,} "
            "missed pixels).")


def metrics_table_scores(truth, pred, settings: Settings) -> list[Row]:
    """The score rows of the table (soft and hard Dice and IoU) without the losses."""
    hard = losses.hard_metrics(truth, pred, threshold=settings.threshold,
                               per_image=settings.per_image)
    return [
        Row("dice_coefficient", "Dice coefficient (soft)",
            float(losses.dice_coefficient(truth, pred, **settings.dice_keywords())), "score"),
        Row("hard_dice", f"Dice (hard, at {settings.threshold:g})",
            _nanmean(hard["dice"].numpy()), "score"),
        Row("hard_iou", f"IoU (hard, at {settings.threshold:g})",
            _nanmean(hard["iou"].numpy()), "score"),
    ]


# losses whose gradient w.r.t. p is a function of g and the sums I, P, G only
_SUM_LOSSES = ("dice_loss", "jaccard_loss", "tversky_loss", "generalized_dice_loss")


def piecewise_constant(settings: Settings, wrt: str) -> bool:
    """True when ∂L/∂p_i can depend on g_i and the totals only (not on p_i): the Dice
    family w.r.t. the probabilities with linear sums (squared sums bring p_i in)."""
    return (settings.loss_name() in _SUM_LOSSES and wrt == "probabilities"
            and not settings.squared)


def _single_value(values: np.ndarray) -> bool:
    return values.size == 0 or float(np.ptp(values)) <= 1e-4 * float(np.abs(values).max())


def piecewise_note(settings: Settings, wrt: str, grad, truth_fg) -> str:
    """The sentence under a Dice-family gradient map: why it redraws the truth. Said only
    where the map really takes one value on the truth and one off it (a soft truth with
    the L1 intersection, for one, does not)."""
    grad, truth_fg = np.asarray(grad), np.asarray(truth_fg, bool)
    on, off = grad[truth_fg], grad[~truth_fg]
    if not (piecewise_constant(settings, wrt) and _single_value(on) and _single_value(off)):
        return ""
    values = [f"{float(np.median(v)):.2e} {where}" for v, where in (
        (on, "on the truth"), (off, "off it")) if v.size]
    return (f"{LOSS_LABELS[settings.loss]} sums p over pixels, so ∂L/∂pᵢ depends only on "
            "whether pixel i is in the truth and on the totals I, P and G, not on pᵢ: the map "
            f"takes two values ({' and '.join(values)}) and redraws the truth whatever the "
            "prediction. Where the prediction is unsure shows in ∂L/∂logit.")


# the largest logit a clipped probability reaches: log((1 - 1e-7) / 1e-7)
_MAX_LOGIT = math.log((1 - losses.PROB_CLIP) / losses.PROB_CLIP)


def loss_range(settings: Settings) -> str:
    """The range the chosen loss can take with these settings, in words (for a guess)."""
    name = settings.loss_name()
    if name in _SUM_LOSSES:
        return f"{LOSS_LABELS[settings.loss]} runs from 0 (perfect) to 1"
    bce = f"{_MAX_LOGIT:.1f}"
    if name in ("binary_crossentropy", "focal_loss"):
        return (f"{LOSS_LABELS[settings.loss]} runs from 0 (perfect) to about {bce} (every "
                "pixel confidently wrong; p is clipped at 10⁻⁷)")
    if name == "bce_dice_loss":
        top = settings.bce_weight * _MAX_LOGIT + settings.dice_weight
        return f"BCE + Dice runs from 0 to about {top:.1f} ({settings.bce_weight:g} × {bce} + " \
               f"{settings.dice_weight:g} × 1)"
    if name == "bce_log_dice_loss":
        return ("BCE − log Dice runs from 0 upwards, without a bound: −log Dice grows "
                "without limit as Dice goes to 0")
    if name == "boundary_loss":
        return ("The boundary loss has no fixed range: it is a mean of distances in pixels, "
                "lowest (below 0) when p = 1 exactly on the truth")
    if name == "boundary_dice_loss":
        return (f"Dice + boundary is Dice's 0 to 1 plus {settings.boundary_weight:g} × the "
                "boundary loss (pixels; below 0 when the prediction is right)")
    if name == "cl_dice_loss":
        return "clDice loss runs from 0 (perfect) to 1"
    if name == "cl_dice_dice_loss":
        return f"Dice + clDice runs from 0 to {1 + settings.cl_dice_weight:g}"
    if name == "lovasz_hinge":
        return (f"Lovász runs from 0 to about {1 + _MAX_LOGIT:.1f}: its errors are hinge "
                f"errors 1 − z·(2g − 1) on logits z, up to 1 + {bce}")
    return "Lovász-Softmax runs from 0 to 1"


# ------------------------------------------------------------- beyond overlap

@dataclass(frozen=True)
class Measure:
    """One line of the "Beyond overlap" view."""

    key: str
    label: str
    value: float  # nan or inf where a mask is empty (``reason`` says why)
    counts: str  # what the value is made of, in words ("tp 3 · fp 0 · fn 12"), or ""
    sees: str  # what it sees that Dice does not, one line
    reason: str = ""  # why the value is not an ordinary number (an empty mask), or ""

    @property
    def shown(self) -> str:
        """The value in the view: four significant digits, or what it is in words."""
        if math.isnan(self.value):
            return "undefined"
        return "infinite" if math.isinf(self.value) else f"{self.value:.4g}"


class BeyondOverlap(NamedTuple):
    measures: list[Measure]
    calibration: metrics.Calibration


SEES = {
    "dice": "The overlap itself, pixels counted alike wherever they are: the others' yardstick.",
    "hd95": "How far the worst 5% of boundary points lie from the other boundary: one stray "
            "blob far away, a few pixels to Dice, is the whole distance here.",
    "asd": "The mean distance between the boundaries: where the error lies, not only how "
           "many pixels it has.",
    "nsd": "The share of both boundaries within τ of the other: a ragged edge that Dice "
           "averages away.",
    "lesion_recall": "Lesions found out of all, each counted once: many small ones missed "
                     "barely move Dice.",
    "lesion_precision": "Predicted blobs that touch a lesion: a stray blob counts as one, "
                        "whatever its size.",
    "lesion_f1": "Detection as one number: lesions counted, not pixels.",
    "cl_dice": "Centre lines, not areas: a thin branch weighs by its length, so losing it "
               "shows; thickness does not.",
    "ece": "Whether p is as sure as it is right: Dice at a threshold sees only which side "
           "of it p falls.",
}


def hard_dice(truth_fg, pred_fg) -> float:
    """2|T ∩ P| / (|T| + |P|) of two boolean masks; nan when both are empty (0/0)."""
    t, p = np.asarray(truth_fg, bool), np.asarray(pred_fg, bool)
    total = int(t.sum()) + int(p.sum())
    return 2 * int((t & p).sum()) / total if total else math.nan


def _why(metric: str, truth_fg, pred_fg) -> str:
    found = metrics.degenerate_reason(metric, truth_fg, pred_fg)
    return found.message.split(": ", 1)[1] if found else ""


def beyond_overlap(truth_fg, pred_fg, prob, *, tolerance: float = 1.0, spacing=None,
                   unit: str = "px", bins: int = 10) -> BeyondOverlap:
    """What Dice does not see, for one binary truth and hard prediction (2-D ``[H, W]`` or
    3-D ``[D, H, W]``) and the probabilities ``prob`` behind the prediction: hard Dice, then
    HD95, ASD and NSD at ``tolerance`` (in ``unit``, the units of ``spacing``), lesion recall,
    precision and F1, clDice and ECE, all from :mod:`explorer.metrics`. Each measure says in
    one line what it sees that Dice does not, and why it is undefined or infinite on an empty
    mask (``metrics.degenerate_reason``)."""
    t, p = np.asarray(truth_fg, bool), np.asarray(pred_fg, bool)
    dice = hard_dice(t, p)
    lesions = metrics.lesion_detection(t, p)
    found = f"found {lesions['tp']} · missed {lesions['fn']}"
    unit_label = f" ({unit})"
    rows = [
        Measure("dice", "Dice (hard)", dice, f"|T| = {int(t.sum()):,} · |P| = {int(p.sum()):,}",
                SEES["dice"], "truth and prediction are both empty: 0/0" if math.isnan(dice)
                else ""),
        Measure("hd95", "HD95" + unit_label,
                metrics.hausdorff_distance(t, p, percentile=95, spacing=spacing),
                "95th percentile, each direction", SEES["hd95"],
                _why("hausdorff_distance", t, p)),
        Measure("asd", "ASD" + unit_label,
                metrics.average_surface_distance(t, p, spacing=spacing), "both directions",
                SEES["asd"], _why("average_surface_distance", t, p)),
        Measure("nsd", f"NSD at τ = {tolerance:g} {unit}",
                metrics.surface_dice(t, p, tolerance=tolerance, spacing=spacing),
                "boundary points within τ", SEES["nsd"], _why("surface_dice", t, p)),
        Measure("lesion_recall", "Lesion recall", lesions["recall"], found,
                SEES["lesion_recall"], _why("lesion_detection", t, p)),
        Measure("lesion_precision", "Lesion precision", lesions["precision"],
                f"false-positive blobs {lesions['fp']}", SEES["lesion_precision"],
                _why("lesion_detection", t, p)),
        Measure("lesion_f1", "Lesion F1", lesions["f1"], "", SEES["lesion_f1"],
                _why("lesion_detection", t, p)),
        Measure("cl_dice", "clDice", metrics.cl_dice(t, p), "skeletons", SEES["cl_dice"],
                _why("cl_dice", t, p)),
    ]
    calibration = metrics.expected_calibration_error(t, np.asarray(prob, np.float64), bins=bins)
    rows.append(Measure("ece", "ECE", calibration.ece, f"{bins} bins of confidence",
                        SEES["ece"]))
    return BeyondOverlap(rows, calibration)


def slice_dice(truth_fg, pred_fg) -> tuple[np.ndarray, float]:
    """Per-slice hard Dice along the first axis of 3-D masks ``[D, H, W]`` (nan where a
    slice is empty in both: 0/0), and the volume's Dice over every voxel at once."""
    t, p = np.asarray(truth_fg, bool), np.asarray(pred_fg, bool)
    return np.array([hard_dice(a, b) for a, b in zip(t, p)]), hard_dice(t, p)


def empty_conventions(truth, pred, settings: Settings) -> tuple[str, dict[str, float]]:
    """The chosen region loss (Dice loss when the chosen one takes no ``empty``) under each
    empty-class convention of ``losses.EMPTY_CONVENTIONS``: (the loss's pick, values)."""
    key = settings.loss
    if "empty" not in losses.loss_keywords(losses.LOSSES[settings.loss_name()]):
        key = "dice_loss"
    return key, {empty: _value(settings.replace(empty=empty), key, truth, pred)
                 for empty in losses.EMPTY_CONVENTIONS}


def logits_contrast(logit: float = -30.0) -> dict[str, tuple[float, float]]:
    """BCE of one pixel of truth 1 whose model logit is ``logit``, and its derivative
    w.r.t. the logit, computed from the probability (clipped to 1e-7, as Keras) and from
    the logit (``from_logits=True``, log-sigmoid): {"probabilities": (value, grad),
    "logits": (value, grad)}."""
    import tensorflow as tf

    g = tf.ones((1, 1, 1, 1), tf.float64)
    z = tf.constant(np.full((1, 1, 1, 1), logit))
    found = {}
    for reads in ("probabilities", "logits"):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = (losses.binary_crossentropy(g, z, from_logits=True) if reads == "logits"
                     else losses.binary_crossentropy(g, tf.sigmoid(z)))
        found[reads] = (float(value), float(tape.gradient(value, z)[0, 0, 0, 0]))
    return found
