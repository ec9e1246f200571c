"""Teaching presets: each scenario is a short story and the Explore controls that tell it.

A scenario is data: the values of the Explore widgets it changes (by widget key; the
other controls in ``state.EXPLORE`` go back to their defaults) and a paragraph saying what
to look at and what to try next. ``teach`` applies it; ``preview`` builds its pair of masks
with the library's functions, as the page does. No Streamlit here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from explorer import masks
from explorer.predictions import Edits
from explorer.ui.state import BATCH_TAB, EXPLORE


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    text: str  # markdown: what is on screen and what to try
    state: dict = field(default_factory=dict)  # widget key -> value; the rest is default


SCENARIOS = (
    Scenario(
        "perfect", "Perfect overlap",
        "The prediction is the truth with full confidence: Dice loss 0, IoU 1. BCE prints "
        "as 0 but is 1e−7: p is clipped to [1e−7, 1 − 1e−7] like Keras. The gradient w.r.t. p is not zero "
        "either: Dice would still push p above 1 inside and below 0 outside. Switch the "
        "gradient to ∂L/∂logit: through a saturated sigmoid the push vanishes.",
        {"shift_x": 0, "blur": 0.0, "confidence": 1.0}),
    Scenario(
        "empty", "Empty truth, empty prediction",
        "Nothing to find and nothing found. With smooth = 0 and epsilon = 0 Dice is 0/0: "
        "**undefined**. Set smooth to 1: empty vs empty scores a perfect 1 (loss 0). Set "
        "smooth to 0 and epsilon to 1e−7: it scores 0, so a perfect empty prediction is "
        "punished with the largest loss.",
        {"truth_source": "Empty", "prediction_source": "Empty", "confidence": 1.0,
         "blur": 0.0, "smooth": 0.0, "epsilon": 0.0}),
    Scenario(
        "tiny_missed", "A tiny object missed",
        "A small object (about 180 pixels of 65,536) predicted as background. Per image its "
        "Dice loss is almost 1; open the batch view: averaged per image it weighs as much as "
        "a large object, but with whole-batch sums (untick 'Per image') the big objects "
        "drown it. Which one you train with decides whether small objects matter.",
        {"truth_radius": 0.03, "prediction_source": "Empty", "explore_tabs": BATCH_TAB}),
    Scenario(
        "shifted", "A shifted prediction",
        "The right shape in the wrong place: 16 px to the right. Dice counts the overlap "
        "only. The gradient pushes p up on the crescent the prediction misses and down on "
        "the crescent it adds; the overlap itself is left almost alone.",
        {"shift_x": 16}),
    Scenario(
        "over_under", "Over- vs under-segmentation",
        "A hard prediction grown by 6 px: false positives only. Tversky with α = 0.3 "
        "(false positives) and β = 0.7 (false negatives) forgives this more than Dice does. "
        "Set Grow to −6 (false negatives only) and watch Tversky rise above Dice.",
        {"shift_x": 0, "grow": 6, "confidence": 1.0, "blur": 0.0, "loss": "tversky_loss",
         "alpha": 0.3, "beta": 0.7}),
    Scenario(
        "imbalance", "Extreme class imbalance",
        "A tiny object and a prediction of 'nothing here' at 99% confidence. BCE is low "
        "(about 0.02): almost every pixel is right. Dice loss is almost 1: the one thing "
        "that matters was missed. This is why Dice is used for rare foregrounds.",
        {"truth_radius": 0.03, "prediction_source": "Empty", "confidence": 0.99,
         "loss": "binary_crossentropy"}),
    Scenario(
        "soft_labels", "Soft labels: product vs L1",
        "Label smoothing 0.2 makes the truth 0.9 inside and 0.1 outside, and the prediction "
        "is exactly that. The product form Σp·g still reports a loss. Tick 'Soft labels "
        "(L1)': the intersection Σ(p + g − |p − g|)/2 scores the perfect match as 0.",
        {"label_smoothing": 0.2, "shift_x": 0, "blur": 0.0, "confidence": 0.9}),
    Scenario(
        "overconfident", "Overconfident vs calibrated",
        "A shifted prediction at 99.9% confidence, gradient w.r.t. the logits. Through the "
        "sigmoid ∂L/∂z = ∂L/∂p · p(1 − p): on the wrong pixels Dice's push is about 250× "
        "smaller than at p = 0.5. Move Confidence to 0.6 to see it come back, or pick BCE, "
        "whose logit gradient p − g does not saturate.",
        {"shift_x": 12, "blur": 0.0, "confidence": 0.999, "gradient_wrt": "∂L/∂logit"}),
    Scenario(
        "batch_empty", "A batch holding an empty image",
        "The batch view adds an image with nothing in it. Per image, smooth = 1 scores it a "
        "perfect 1 and lifts the mean; whole batch, it adds nothing to the sums. Set smooth "
        "to 0 and epsilon to 1e−7: now the empty image scores 0 per image and drags the "
        "mean down.",
        {"explore_tabs": BATCH_TAB, "batch_empty": True}),
)
BY_KEY = {s.key: s for s in SCENARIOS}


def get(key: str) -> Scenario:
    if key not in BY_KEY:
        raise ValueError(f"unknown scenario {key!r}; there are {', '.join(BY_KEY)}")
    return BY_KEY[key]


def _shape(state: dict, side: str, size: int) -> np.ndarray:
    source = state[f"{side}_source"]
    if source == "Empty":
        return np.zeros((size, size), np.int32)
    return masks.shape_mask(state[f"{side}_shape"], size, radius=state[f"{side}_radius"],
                            center=(state[f"{side}_cy"], state[f"{side}_cx"]))


def preview(scenario: Scenario, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The scenario's truth and hard prediction as label maps at ``size`` (binary shapes;
    shift and grow scaled from the page's mask size), edited as the page edits them."""
    state = {**EXPLORE, **scenario.state}
    truth = _shape(state, "truth", size)
    if state["prediction_source"] == "Copy of truth":
        pred = truth.copy()
    else:
        pred = _shape(state, "prediction", size)
    scale = size / state["mask_size"]
    edits = Edits(dy=round(state["shift_y"] * scale), dx=round(state["shift_x"] * scale),
                  grow=round(state["grow"] * scale), invert=state["invert"])
    return truth, edits.hard(pred)
