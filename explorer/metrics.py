"""What Dice cannot see: boundary, lesion, topology and calibration metrics (NumPy/SciPy).

Inputs are single binary masks, 2-D ``[H, W]`` or 3-D ``[D, H, W]`` (bool, or numbers that
are all 0 or 1); ``truth`` comes first, then ``pred``. ``spacing`` is the physical size of a
pixel along each axis (``[D, H, W]`` order), or one number for all axes; distances are in
those units (index x spacing), and ``None`` means 1 per axis.

Boundary metrics, defined as MONAI 1.6's ``compute_hausdorff_distance``,
``compute_average_surface_distance`` and ``compute_surface_dice`` with their defaults
(euclidean distance, no sub-voxel areas):

* The boundary of a mask is its inner boundary, ``mask XOR binary_erosion(mask)``, eroded with
  the face-connected structure (4-connectivity in 2-D, 6 in 3-D) and background outside the
  array, so mask pixels on the array's edge are boundary. A one-pixel mask is its own boundary.
* ``d(a -> B)``: for each boundary point ``a`` of one mask, the euclidean distance to the
  nearest boundary point of the other mask (its boundary, not the mask).
* HD_q (:func:`hausdorff_distance`): the q-th percentile (linear interpolation, NumPy's
  default) of the pred -> truth distances and of the truth -> pred distances, taken
  separately; HD_q is the larger of the two. q = 100 is the Hausdorff distance, q = 95 the HD95.
* ASD (:func:`average_surface_distance`): symmetric, the sum of both directions' distances
  over the number of boundary points of both masks (a mean over the pooled distances, not the
  mean of two means); ``symmetric=False`` is the mean of the pred -> truth distances (MONAI's
  direction for its non-symmetric default).
* NSD_tau (:func:`surface_dice`, normalized surface Dice): (pred boundary points within tau of
  the truth boundary + truth boundary points within tau of the pred boundary) / (boundary
  points of both), "within" meaning distance <= tau. Boundary length is a count of boundary
  pixels, as in MONAI without sub-voxels (DeepMind's surface-distance package weighs surface
  elements by area instead, and gives other numbers).

Empty masks are scored, never refused; the boundary metrics give MONAI's values
(:func:`degenerate_reason` says why in words):

==========================  ==========  ===========================================
metric                      both empty  one empty
==========================  ==========  ===========================================
hausdorff_distance          nan         inf
average_surface_distance    nan         inf (symmetric or not)
surface_dice                nan         0.0
cl_dice                     nan         0.0 (a ratio is 0; harmonic mean)
lesion_detection recall     nan         truth empty: nan; prediction empty: 0.0
lesion_detection precision  nan         prediction empty: nan; truth empty: 0.0
lesion_detection f1         nan         0.0 (harmonic mean with a 0)
==========================  ==========  ===========================================

Beyond the boundary:

* :func:`lesion_detection`: connected components with full connectivity (8 in 2-D, 26 in
  3-D) are lesions; a lesion is detected when any predicted pixel overlaps it (the most
  permissive localization criterion in Metrics Reloaded's terms).
* :func:`cl_dice`: centerline Dice, Shit et al., "clDice - a novel topology-preserving loss
  function for tubular structure segmentation", CVPR 2021. Skeletons are
  ``skimage.morphology.skeletonize`` (2-D and 3-D).
* :func:`expected_calibration_error`: top-label ECE of Guo et al., "On calibration of modern
  neural networks", ICML 2017, over pixels, with its reliability-diagram data.

Where MONAI 1.6.1 differs, on purpose (both are artefacts of its code, not definitions):

* ``percentile=0``: MONAI reads 0 as "no percentile" and returns the maximum; here it is the
  0-th percentile (the larger of the two directions' minimum distances).
* One mask empty, with a percentile given (95, or even 100): MONAI returns nan (its
  ``torch.quantile`` interpolates ``inf - inf``), but inf with ``percentile=None``; here
  every percentile gives inf.
* ``distance <= tolerance`` allows a relative 1e-9 for rounding (5 pixels of 0.58 mm is
  2.9000000000000004 mm); MONAI rounds the distances to float32 before comparing.

References: L. Maier-Hein, A. Reinke et al., "Metrics reloaded: recommendations for image
analysis validation", Nature Methods 2024, with A. Reinke et al., "Understanding
metric-related pitfalls in image analysis validation", Nature Methods 2024; MONAI 1.6
(``monai.metrics``); S. Nikolov et al., "Clinically applicable segmentation of head and neck
anatomy for radiotherapy", J Med Internet Res 2021 (surface Dice); Shit et al. 2021; Guo et
al. 2017.

Example::

    hausdorff_distance(truth, pred, percentile=95, spacing=(3.0, 1.0, 1.0))  # mm, [D, H, W]
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.spatial import KDTree
from skimage.morphology import skeletonize

__all__ = [
    "hausdorff_distance", "average_surface_distance", "surface_dice", "lesion_detection",
    "cl_dice", "expected_calibration_error", "Calibration",
    "boundary", "surface_distances", "degenerate_reason", "Degenerate", "DEGENERATE_METRICS",
]


# ------------------------------------------------------------------------ input checks

def _binary(fn: str, name: str, value) -> np.ndarray:
    """``value`` as a bool array of rank 2 or 3, or a one-sentence ``ValueError``."""
    a = np.asarray(value)
    if a.ndim not in (2, 3):
        raise ValueError(f"{fn}: {name} must be a 2-D [H, W] or 3-D [D, H, W] mask, "
                         f"got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{fn}: {name} must have at least one pixel, got shape {a.shape}")
    if a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.number) or not np.all((a == 0) | (a == 1)):
        raise ValueError(f"{fn}: {name} must be binary (bool, or numbers that are all 0 or 1); "
                         f"threshold probabilities first")
    return a.astype(bool)


def _masks(fn: str, truth, pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _binary(fn, "truth", truth), _binary(fn, "pred", pred)
    if t.shape != p.shape:
        raise ValueError(f"{fn}: truth and pred must have the same shape, "
                         f"got {t.shape} and {p.shape}")
    return t, p


def _number(value) -> float | None:
    """A real, non-bool scalar as a float, else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _spacing(fn: str, spacing, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    single = _number(spacing)
    values = [single] * ndim if single is not None else (
        [_number(s) for s in spacing] if isinstance(spacing, (list, tuple, np.ndarray)) else None)
    if values is None or len(values) != ndim or any(v is None for v in values):
        raise ValueError(f"{fn}: spacing must be one number or {ndim} numbers (one per axis of "
                         f"the {ndim}-D mask), got {spacing!r}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{fn}: spacing must be finite and > 0 along every axis, got {spacing!r}")
    return np.asarray(values, dtype=np.float64)


def _bounded(fn: str, name: str, value, low: float, high: float = math.inf) -> float:
    v = _number(value)
    if v is None or not math.isfinite(v) or not low <= v <= high:
        bound = f"between {low:g} and {high:g}" if math.isfinite(high) else f">= {low:g}"
        raise ValueError(f"{fn}: {name} must be a finite number {bound}, got {value!r}")
    return v


# ------------------------------------------------------------------------ empty cases

class Degenerate(NamedTuple):
    """Why a metric is NaN, inf or a forced 0 on these masks, in words."""

    metric: str
    kind: str  # "both_empty", "empty_truth", "empty_prediction"; cl_dice also "empty_skeleton"
    message: str


_SURFACE_WHY = {
    "both_empty": "truth and prediction are both empty, so there is no boundary to measure: "
                  "undefined (nan), as in MONAI",
    "empty_truth": "the truth is empty: the predicted boundary has no truth boundary to be near",
    "empty_prediction": "nothing is predicted: the truth boundary has no predicted boundary to "
                        "be near",
}
_DISTANCE_ONE_EMPTY = ", so the distance is infinite (inf), as in MONAI"
_NSD_ONE_EMPTY = ", so no boundary point is within tolerance: 0, as in MONAI"
_HARMONIC_ZERO = "; the harmonic mean of a 0 with anything is 0, so the score is 0"

_REASONS = {
    "hausdorff_distance": {k: v + (_DISTANCE_ONE_EMPTY if k != "both_empty" else "")
                           for k, v in _SURFACE_WHY.items()},
    "average_surface_distance": {k: v + (_DISTANCE_ONE_EMPTY if k != "both_empty" else "")
                                 for k, v in _SURFACE_WHY.items()},
    "surface_dice": {k: v + (_NSD_ONE_EMPTY if k != "both_empty" else "")
                     for k, v in _SURFACE_WHY.items()},
    "lesion_detection": {
        "both_empty": "no lesion in the truth and none predicted: recall, precision and f1 are "
                      "0/0 (nan)",
        "empty_truth": "no lesion in the truth: recall is 0/0 (nan), every predicted component "
                       "is a false positive so precision is 0" + _HARMONIC_ZERO,
        "empty_prediction": "nothing is predicted: precision is 0/0 (nan), every lesion is "
                            "missed so recall is 0" + _HARMONIC_ZERO,
    },
}
DEGENERATE_METRICS = (*_REASONS, "cl_dice")


def _empty_kind(t: np.ndarray, p: np.ndarray) -> str | None:
    if not t.any():
        return "both_empty" if not p.any() else "empty_truth"
    return None if p.any() else "empty_prediction"


def degenerate_reason(metric: str, truth, pred) -> Degenerate | None:
    """Why ``metric(truth, pred)`` is not an ordinary number (an empty mask, or for
    ``cl_dice`` an empty skeleton), or ``None`` when it is. ``metric`` is one of
    ``DEGENERATE_METRICS``; :func:`expected_calibration_error` is always defined."""
    if metric not in DEGENERATE_METRICS:
        raise ValueError(f"degenerate_reason: metric must be one of "
                         f"{', '.join(DEGENERATE_METRICS)}, got {metric!r}")
    t, p = _masks("degenerate_reason", truth, pred)
    if metric == "cl_dice":
        return _cl_dice_reason(t, p)
    kind = _empty_kind(t, p)
    return None if kind is None else Degenerate(metric, kind, f"{metric}: {_REASONS[metric][kind]}")


def _cl_dice_reason(t: np.ndarray, p: np.ndarray) -> Degenerate | None:
    tprec, tsens = _cl_dice_ratios(t, p)
    if not (math.isnan(tprec) or math.isnan(tsens)):
        return None
    why = []
    for ratio, name, mask, whose in ((tprec, "topology precision", p, "prediction"),
                                     (tsens, "topology sensitivity", t, "truth")):
        if not math.isnan(ratio):
            why.append(f"{name} is {ratio:.3g}")
        elif not mask.any():
            why.append(f"{name} is 0/0 because the {whose} is empty")
        else:
            why.append(f"{name} is 0/0 because the {whose}'s skeleton is empty (skeletonize "
                       f"erases objects as small as a 2x2x2 cube)")
    verdict = (_HARMONIC_ZERO if _harmonic(tprec, tsens) == 0 else
               ", so clDice is undefined (nan)")
    kind = _empty_kind(t, p) or "empty_skeleton"
    return Degenerate("cl_dice", kind, f"cl_dice: {'; '.join(why)}{verdict}")


def _ratio(part: np.ndarray, whole: np.ndarray) -> float:
    n = int(np.count_nonzero(whole))
    return np.count_nonzero(part) / n if n else math.nan


def _harmonic(a: float, b: float) -> float:
    """2ab / (a + b); 0 when either is 0 (even if the other is nan), nan otherwise when one is."""
    if a == 0 or b == 0:
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return 2 * a * b / (a + b)


# ------------------------------------------------------------------------ surfaces

_TIE = 1e-9  # relative slack for "distance <= tolerance" (MONAI compares in float32)

def boundary(mask) -> np.ndarray:
    """The inner boundary of a binary mask: mask pixels with a face neighbour (4-connectivity
    in 2-D, 6 in 3-D) in the background or outside the array; ``mask XOR erosion(mask)``."""
    m = _binary("boundary", "mask", mask)
    faces = ndimage.generate_binary_structure(m.ndim, 1)
    return m & ~ndimage.binary_erosion(m, structure=faces, border_value=0)


def _directed(from_edges: np.ndarray, to_edges: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance from each boundary point of one mask to the nearest of the other's."""
    starts = np.argwhere(from_edges) * spacing
    if not to_edges.any():
        return np.full(len(starts), np.inf)
    if not len(starts):
        return np.zeros(0)
    return KDTree(np.argwhere(to_edges) * spacing).query(starts, k=1)[0]


def surface_distances(truth, pred, *, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """``(pred -> truth, truth -> pred)``: for each boundary point of one mask (in
    ``np.argwhere`` order), the distance to the nearest boundary point of the other, in
    spacing units. An empty mask has no points; a point facing an empty mask gets ``inf``."""
    t, p = _masks("surface_distances", truth, pred)
    s = _spacing("surface_distances", spacing, t.ndim)
    et, ep = boundary(t), boundary(p)
    return _directed(ep, et, s), _directed(et, ep, s)


def _surface(metric: str, truth, pred, spacing):
    """``((pred -> truth, truth -> pred), None)``, or ``(None, MONAI's value)`` when a mask is
    empty."""
    t, p = _masks(metric, truth, pred)
    s = _spacing(metric, spacing, t.ndim)
    kind = _empty_kind(t, p)
    if kind is not None:
        one_empty = 0.0 if metric == "surface_dice" else math.inf
        return None, math.nan if kind == "both_empty" else one_empty
    et, ep = boundary(t), boundary(p)
    return (_directed(ep, et, s), _directed(et, ep, s)), None


def hausdorff_distance(truth, pred, *, percentile=100.0, spacing=None) -> float:
    """Hausdorff distance at a percentile: ``max(P_q(pred -> truth), P_q(truth -> pred))``
    over boundary-to-boundary distances, P_q NumPy's linearly interpolated percentile;
    ``percentile=100`` (default) is the maximum, 95 the HD95. Both masks empty: nan; one
    empty: inf (:func:`degenerate_reason`). MONAI 1.6: ``compute_hausdorff_distance``."""
    q = _bounded("hausdorff_distance", "percentile", percentile, 0.0, 100.0)
    distances, empty = _surface("hausdorff_distance", truth, pred, spacing)
    if distances is None:
        return empty
    return float(max(np.percentile(d, q) for d in distances))


def average_surface_distance(truth, pred, *, symmetric=True, spacing=None) -> float:
    """Average surface distance. Symmetric (default): the sum of the distances of both
    directions over the number of boundary points of both masks (the mean of the pooled
    distances). ``symmetric=False``: the mean of the pred -> truth distances (MONAI's
    direction). Both masks empty: nan; one empty: inf, either way (:func:`degenerate_reason`).
    MONAI 1.6: ``compute_average_surface_distance`` (whose default is ``symmetric=False``)."""
    if not isinstance(symmetric, (bool, np.bool_)):
        raise ValueError(f"average_surface_distance: symmetric must be True or False, "
                         f"got {symmetric!r}")
    distances, empty = _surface("average_surface_distance", truth, pred, spacing)
    if distances is None:
        return empty
    pooled = np.concatenate(distances if symmetric else distances[:1])
    return float(pooled.mean())


def surface_dice(truth, pred, *, tolerance, spacing=None) -> float:
    """Normalized surface Dice at ``tolerance`` (spacing units, >= 0): the boundary points of
    both masks whose distance to the other mask's boundary is ``<= tolerance``, over all
    boundary points of both. Both masks empty: nan; one empty: 0 (:func:`degenerate_reason`).
    MONAI 1.6: ``compute_surface_dice`` (``use_subvoxels=False``)."""
    tau = _bounded("surface_dice", "tolerance", tolerance, 0.0)
    distances, empty = _surface("surface_dice", truth, pred, spacing)
    if distances is None:
        return empty
    pooled = np.concatenate(distances)
    # a hair of slack: 5 pixels of 0.58 mm is 2.9000000000000004 in floats, and is within 2.9
    return float(np.count_nonzero(pooled <= tau * (1 + _TIE)) / pooled.size)


# ------------------------------------------------------------------------ lesions

def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components with full connectivity (8 in 2-D, 26 in 3-D)."""
    labels, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    return labels, int(count)


def lesion_detection(truth, pred) -> dict:
    """Lesion-wise detection counts and scores.

    Lesions are connected components with full connectivity (8 in 2-D, 26 in 3-D); a lesion
    is detected when any predicted pixel overlaps it:

    * ``tp``: truth components that some predicted component overlaps (one prediction merging
      three lesions gives tp = 3);
    * ``fn``: truth components that no predicted component overlaps;
    * ``fp``: predicted components that overlap no truth component;
    * ``recall = tp / #truth components``;
    * ``precision = (#pred components - fp) / #pred components``, counted on the prediction's
      side (the share of predicted components that touch a lesion; not tp / (tp + fp), which
      would mix truth and prediction counts and exceed 1 with merges);
    * ``f1 = 2 * precision * recall / (precision + recall)``, and 0 when either is 0.

    Empty masks: both empty gives nan for all three scores; an empty truth gives recall nan,
    precision 0, f1 0; an empty prediction gives precision nan, recall 0, f1 0
    (:func:`degenerate_reason`). Counts are ints, scores floats."""
    t, p = _masks("lesion_detection", truth, pred)
    t_labels, n_truth = _components(t)
    p_labels, n_pred = _components(p)
    tp = int(np.count_nonzero(np.unique(t_labels[p])))  # lesion labels under the prediction
    hits = int(np.count_nonzero(np.unique(p_labels[t])))  # predicted labels touching a lesion
    recall = tp / n_truth if n_truth else math.nan
    precision = hits / n_pred if n_pred else math.nan
    return {"tp": tp, "fp": n_pred - hits, "fn": n_truth - tp, "recall": recall,
            "precision": precision, "f1": _harmonic(precision, recall)}


# ------------------------------------------------------------------------ topology

def _skeleton(mask: np.ndarray) -> np.ndarray:
    return skeletonize(mask).astype(bool) if mask.any() else mask


def _cl_dice_ratios(t: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(Tprec, Tsens); a ratio over an empty skeleton is nan."""
    st, sp = _skeleton(t), _skeleton(p)
    return _ratio(sp & t, sp), _ratio(st & p, st)


def cl_dice(truth, pred) -> float:
    """Centerline Dice (Shit et al. 2021) with ``S = skimage.morphology.skeletonize``::

        Tprec = |S(pred) & truth| / |S(pred)|      Tsens = |S(truth) & pred| / |S(truth)|
        clDice = 2 Tprec Tsens / (Tprec + Tsens)

    It scores centerlines, not areas: it sees breaks and spurs in thin structures and is blind
    to their thickness (skeletons are taken in index space; spacing plays no part). A ratio
    over an empty skeleton is 0/0 (nan), and clDice is 0 when either ratio is 0, even if the
    other is nan. So: both masks empty, nan; one empty, 0; a non-empty mask whose skeleton is
    empty (skeletonize erases a 2x2x2 cube), nan unless the other ratio is 0
    (:func:`degenerate_reason` says which)."""
    t, p = _masks("cl_dice", truth, pred)
    return _harmonic(*_cl_dice_ratios(t, p))


# ------------------------------------------------------------------------ calibration

class Calibration(NamedTuple):
    """ECE and its reliability diagram: per bin ``(edges[i], edges[i+1]]`` the mean
    confidence, the fraction of pixels predicted right, and the pixel count (empty bins have
    count 0 and nan confidence and accuracy)."""

    ece: float
    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def expected_calibration_error(truth, prob, *, bins=10) -> Calibration:
    """Top-label expected calibration error over pixels (Guo et al. 2017; Metrics Reloaded's
    ECE). Each pixel predicts foreground when ``prob >= 0.5`` (the explorer's hard threshold)
    with confidence ``max(prob, 1 - prob)``, and is right when that matches ``truth``.
    Confidences fall into ``bins`` equal-width bins ``((m - 1)/M, m/M]`` of [0, 1] (so with
    M = 10 only the upper five can fill: a top-label confidence is at least 0.5)::

        ECE = sum over bins of  (n_bin / N) * |accuracy_bin - mean confidence_bin|

    This is not the positive-class (class-wise) reliability of ``prob`` against the
    frequency of ``truth == 1``; the two differ when the errors in mirrored bins (p and 1 - p)
    have opposite signs. ``truth`` is binary, ``prob`` in [0, 1], same 2-D or 3-D shape.
    Always defined (at least one pixel)."""
    fn = "expected_calibration_error"
    t = _binary(fn, "truth", truth)
    p = np.asarray(prob)
    if p.shape != t.shape:
        raise ValueError(f"{fn}: truth and prob must have the same shape, "
                         f"got {t.shape} and {p.shape}")
    if not np.issubdtype(p.dtype, np.number) or np.issubdtype(p.dtype, np.complexfloating) \
            or not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"{fn}: prob must hold probabilities in [0, 1] (no nan)")
    if isinstance(bins, (bool, np.bool_)) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"{fn}: bins must be a whole number >= 1, got {bins!r}")
    p = p.astype(np.float64).ravel()
    confidence = np.maximum(p, 1 - p)
    right = ((p >= 0.5) == t.ravel()).astype(np.float64)
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, int(bins) - 1)
    count = np.bincount(which, minlength=int(bins))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, confidence, int(bins)) / count
        accuracy = np.bincount(which, right, int(bins)) / count
    gaps = np.where(count > 0, np.abs(accuracy - mean_conf), 0.0)
    return Calibration(float(np.sum(count * gaps) / p.size), edges, mean_conf, accuracy, count)
