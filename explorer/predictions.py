"""A prediction made from a label map, and the tensors the losses take: the edits that move
and soften a hard prediction, label smoothing of the truth, hard labels back from
probabilities, and a batch of pairs. No Streamlit.

The Explore page and the scenarios' thumbnails build their predictions here, so what a
thumbnail shows is what the page computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple

import numpy as np

from explorer import masks


@dataclass(frozen=True)
class Edits:
    """How a hard prediction is moved and softened into probabilities. The defaults change
    nothing but the softening (see :func:`explorer.masks.soften`)."""

    dy: int = 0
    dx: int = 0
    grow: int = 0  # > 0 dilates, < 0 erodes, in pixels
    invert: bool = False
    confidence: float = 0.9
    blur: float = 0.0
    noise: float = 0.0
    temperature: float = 1.0

    def hard(self, labels: np.ndarray) -> np.ndarray:
        """The label map moved by (dy, dx), grown or shrunk by ``grow`` pixels, then
        inverted if asked (before softening)."""
        edited = masks.shift(labels, self.dy, self.dx)
        if self.grow > 0:
            edited = masks.dilate(edited, self.grow)
        elif self.grow < 0:
            edited = masks.erode(edited, -self.grow)
        return masks.invert(edited) if self.invert else edited

    def soften(self, edited: np.ndarray, num_classes: int) -> np.ndarray:
        """Probabilities ``[H, W, C]`` from an (already edited) label map."""
        return masks.soften(edited, num_classes, confidence=self.confidence,
                            blur_sigma=self.blur, noise=self.noise,
                            temperature=self.temperature)

    def apply(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """Probabilities ``[H, W, C]`` from a label map: :meth:`hard`, then :meth:`soften`."""
        return self.soften(self.hard(labels), num_classes)


def truth(labels: np.ndarray, num_classes: int, *, label_smoothing: float = 0.0) -> np.ndarray:
    """The truth channels ``[H, W, C]`` of a label map, smoothed to g·(1 − a) + a/K with
    a = ``label_smoothing`` and K = ``num_classes`` (a binary page has K = 2)."""
    channels = masks.one_hot(labels, num_classes)
    if not label_smoothing:
        return channels
    return channels * (1 - label_smoothing) + label_smoothing / max(num_classes, 2)


def hard_labels(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """A label map back from probabilities ``[H, W, C]``: p ≥ threshold for one channel
    (as ``losses.hard_metrics``), the most probable class (argmax) for several."""
    if prob.shape[-1] == 1:
        return (prob[..., 0] >= threshold).astype(np.int32)
    return prob.argmax(-1).astype(np.int32)


class Batch(NamedTuple):
    names: list[str]
    truth: np.ndarray  # [B, H, W, C]
    pred: np.ndarray  # [B, H, W, C]


def batch(current: tuple[np.ndarray, np.ndarray], truths: Mapping[str, np.ndarray],
          edits: Edits, num_classes: int, *, add_empty: bool) -> Batch:
    """A batch around the current pair (truth and prediction channels ``[H, W, C]``): each
    label map of ``truths`` (by name) resized to the pair's size and predicted with the
    same ``edits``, then, if asked, an image whose truth and prediction are both empty."""
    size = current[0].shape[:2]
    pairs = [("current", *current)]
    for name, labels in truths.items():
        labels = masks.resize_labels(masks.fit_classes(labels, num_classes), size)
        pairs.append((name, masks.one_hot(labels, num_classes), edits.apply(labels, num_classes)))
    if add_empty:
        empty = np.zeros(size, np.int32)
        pairs.append(("empty", masks.one_hot(empty, num_classes),
                      masks.soften(empty, num_classes, confidence=1.0)))
    return Batch([name for name, _, _ in pairs], masks.to_batch(*[g for _, g, _ in pairs]),
                 masks.to_batch(*[p for _, _, p in pairs]))
