"""Validation metrics of a training run, per epoch, pooled over the validation set.

- ``val_dice`` / ``val_iou``: hard Dice (pixel F1) and IoU of the predictions
  thresholded at 0.5 (logit 0 for a logits model), pooled over the whole
  validation set (as ``explorer.losses.hard_metrics(per_image=False)``).
- ``val_dice_small``: the same hard Dice restricted to *small objects*: the truth's
  8-connected components of at most ``small_area`` pixels (default 1 % of the image,
  41 px at 64x64, a disc of radius 3.6 px). Pixels counted: the small objects
  themselves (TP and FN) plus predicted pixels within ``SMALL_MARGIN`` (2) pixels of
  a small object that are not part of a larger truth object (FP). Pooled over the
  validation set; ``None`` when the validation set has no small object.

NumPy and SciPy only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SMALL_AREA_FRACTION = 0.01  # small object: at most 1 % of the image's pixels
SMALL_MARGIN = 2  # px around a small object where predicted pixels count as its FPs


def _dice(tp, fp, fn):
    den = 2 * tp + fp + fn
    return None if den == 0 else float(2 * tp / den)


def small_object_mask(truth, max_area):
    """Boolean ``[N, H, W]``: pixels of the truth's 8-connected components of at most
    ``max_area`` pixels (``truth`` is ``[N, H, W]`` or ``[N, H, W, 1]``)."""
    truth = np.asarray(truth).reshape(len(truth), *np.shape(truth)[1:3]) >= 0.5
    out = np.zeros_like(truth)
    structure = np.ones((3, 3), bool)
    for i, t in enumerate(truth):
        labels, count = ndimage.label(t, structure)
        if count:
            areas = np.bincount(labels.ravel())
            small = areas <= max_area
            small[0] = False
            out[i] = small[labels]
    return out


def small_object_regions(truth, small_area):
    """``(small, near)`` boolean ``[N, H, W]`` for :func:`validation_metrics`: the small
    truth objects, and the pixels within ``SMALL_MARGIN`` of one that are not part of a
    larger truth object (where a predicted pixel is a false positive of a small object).
    ``None`` when there is no small object."""
    truth = np.asarray(truth)[..., 0] >= 0.5
    small = small_object_mask(truth, small_area)
    if not small.any():
        return None
    near = ndimage.binary_dilation(small, np.ones((1, 3, 3), bool),
                                   iterations=SMALL_MARGIN) & ~(truth & ~small)
    return small, near


def validation_metrics(truth, predicted, *, small_area, threshold=0.5, regions=False) -> dict:
    """``val_dice``, ``val_iou`` and ``val_dice_small`` (see the module docstring) of
    arrays ``[N, H, W, 1]``: ``predicted`` is the thresholded prediction when boolean,
    else probabilities thresholded at ``threshold``. ``regions``: the result of
    :func:`small_object_regions` when already computed."""
    truth = np.asarray(truth)[..., 0] >= 0.5
    predicted = np.asarray(predicted)[..., 0]
    if predicted.dtype != bool:
        predicted = predicted >= threshold
    tp = int(np.count_nonzero(truth & predicted))
    fp = int(np.count_nonzero(predicted)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    iou = None if tp + fp + fn == 0 else tp / (tp + fp + fn)
    if regions is False:
        regions = small_object_regions(truth[..., None], small_area)
    small_dice = None
    if regions is not None:
        small, near = regions
        small_tp = int(np.count_nonzero(small & predicted))
        small_dice = _dice(small_tp, int(np.count_nonzero(near & predicted)) - small_tp,
                           int(np.count_nonzero(small)) - small_tp)
    return {"val_dice": _dice(tp, fp, fn), "val_iou": iou, "val_dice_small": small_dice}
