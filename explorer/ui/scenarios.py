"""Teaching presets: each scenario is a short story and the Explore controls that tell it.

A scenario is data: the values of the Explore widgets it changes (by widget key; the
other controls in ``state.EXPLORE`` go back to their defaults) and a paragraph saying what
to look at and what to try next, with a question to ask before the numbers are revealed.
``teach`` applies it; ``preview`` builds its pair of masks for a thumbnail and ``inputs``
the tensors and settings the page computes on, with the library's functions, as the page
does. No Streamlit here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from explorer import masks, predictions
from explorer.predictions import Edits
from explorer.settings import Settings
from explorer.ui.state import BATCH_TAB, BEYOND_TAB, EXPLORE, VOLUMES_TAB, WRT_LABELS, pitfall_key


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str  # at most 20 characters: a sidebar button's label, whole at the default width
    question: str  # before the reveal ('Guess first'): what to look at, no numbers, no answer
    text: str  # markdown, 40 to 70 words beside the stage: what it shows and what to try
    state: dict = field(default_factory=dict)  # widget key -> value; the rest is default


# Every claim a text makes (values, signs, which is larger, what a change does) is computed
# in tests/test_scenarios.py from ``inputs`` below; a number in a text is checked there too.
# Each scenario sets the edits its story needs (shift, blur, confidence) itself, so the
# story holds whatever the opening view's defaults are.
# both masks from one pitfall pair (``masks.pitfall_pair``), as drawn: no shift, no blur
PITFALL = {"truth_source": "Pitfall", "prediction_source": "Pitfall", "shift_x": 0,
           "blur": 0.0, "confidence": 1.0, "explore_tabs": BEYOND_TAB}
SCENARIOS = (
    Scenario(
        "perfect", "Perfect overlap",
        "The prediction is the truth, fully confident. What do Dice and BCE score, and does "
        "the gradient still push anywhere?",
        "The prediction is the truth at full confidence: Dice loss 0, IoU 1. BCE shows "
        "0.000000 but is about 1e−7, because p is clipped to [1e−7, 1 − 1e−7] as in Keras. "
        "∂L/∂p is not zero: Dice would still push p above 1 inside and below 0 outside. "
        "Switch to ∂L/∂logit: through the saturated sigmoid that push becomes over a "
        "million times weaker.",
        {"shift_x": 0, "blur": 0.0, "confidence": 1.0}),
    Scenario(
        "empty", "Empty vs empty",
        "Nothing to find and nothing found, and no smoothing. What does Dice make of it, "
        "and what happens when smooth or epsilon is switched on?",
        "Nothing to find and nothing found. With smooth = 0 and epsilon = 0, Dice is 0/0: "
        "**undefined**. Set smooth to 1: empty against empty scores a perfect 1, loss 0. Set "
        "smooth back to 0 and epsilon to 1e−7: it scores 0, so the perfect empty prediction "
        "gets the largest loss, 1.",
        {"truth_source": "Empty", "prediction_source": "Empty", "shift_x": 0,
         "confidence": 1.0, "blur": 0.0, "smooth": 0.0, "epsilon": 0.0}),
    Scenario(
        "tiny_missed", "A tiny object missed",
        "A tiny object predicted as background. How large is its Dice loss, and how much "
        "does it weigh in a batch of large objects, averaged per image or summed over the "
        "whole batch?",
        "An object of 185 pixels out of 65,536, predicted as background: its Dice loss is "
        "0.99. The batch view adds two gallery images. Averaged per image, the miss counts "
        "for a third of the batch: 0.46. With whole-batch sums its pixels are 185 of 40,215, "
        "and the loss is 0.24. Which one you train with decides whether small objects matter.",
        {"truth_radius": 0.03, "prediction_source": "Empty", "shift_x": 0, "blur": 1.0,
         "confidence": 0.9, "explore_tabs": BATCH_TAB, "batch_empty": False}),
    Scenario(
        "shifted", "A shifted prediction",
        "The right shape in the wrong place. Where will BCE's gradient push p up, and where "
        "down? Will Dice's look the same?",
        "The right shape 16 px to the right, gradients w.r.t. the logits. BCE's map shows "
        "the error: it pushes p up on the crescent the prediction misses, down on the "
        "crescent it adds, and 9× more weakly everywhere else. Dice's map shows the truth "
        "instead: one even push up over the whole truth disc, overlap included, and one push "
        "down everywhere else, the added crescent no more than the background.",
        {"shift_x": 16, "blur": 0.0, "confidence": 0.9, "gradient_wrt": "∂L/∂logit",
         "stage_compare": "binary_crossentropy"}),
    Scenario(
        "over_under", "Too big vs too small",
        "A prediction a few pixels too big. Which forgives it more: Dice, or a Tversky loss "
        "that charges false negatives more than false positives? And a prediction too small?",
        "A hard prediction grown by 6 px: false positives only. Tversky with α = 0.3 on "
        "false positives and β = 0.7 on false negatives forgives it: 0.07 against Dice's "
        "0.11. Set Grow to −6 for false negatives only: now Tversky, 0.16, is above Dice, "
        "0.12.",
        {"shift_x": 0, "grow": 6, "confidence": 1.0, "blur": 0.0, "loss": "tversky_loss",
         "alpha": 0.3, "beta": 0.7, "stage_compare": "dice_loss"}),
    Scenario(
        "imbalance", "Class imbalance",
        "A tiny object, and a confident prediction of 'nothing here'. Guess BCE, then Dice: "
        "which one notices the miss?",
        "An object of 185 pixels, predicted as 'nothing here' at 99% confidence. BCE, the "
        "chosen loss, is low, about 0.02: almost every pixel is right. Dice loss is 0.99: "
        "the one thing that mattered was missed. BCE does push p up on the object, 99× "
        "harder per pixel than it pushes down elsewhere, but elsewhere has 353× as many "
        "pixels.",
        {"truth_radius": 0.03, "prediction_source": "Empty", "shift_x": 0, "confidence": 0.99,
         "blur": 0.0, "loss": "binary_crossentropy", "stage_compare": "dice_loss"}),
    Scenario(
        "soft_labels", "Soft labels",
        "A smoothed truth, and a prediction exactly equal to it. Is the Dice loss zero?",
        "Label smoothing 0.2 makes the truth 0.9 inside and 0.1 outside, and the prediction "
        "is exactly that. The product form Σp·g still reports a Dice loss of 0.45, though "
        "hard Dice is 1. Tick 'Soft labels (L1)': the intersection Σ(p + g − |p − g|)/2 "
        "scores the perfect match 0.",
        {"label_smoothing": 0.2, "shift_x": 0, "blur": 0.0, "confidence": 0.9}),
    Scenario(
        "overconfident", "Overconfident logits",
        "A shifted prediction, very confident, gradients through the logits. Which loss "
        "still pushes the wrong pixels, Dice or BCE? What if the prediction were less sure?",
        "A 12 px shift at 99.9% confidence, gradients w.r.t. the logits, colours locked. "
        "Through the sigmoid ∂L/∂z = ∂L/∂p · p(1 − p), and p(1 − p) is 0.001 here: Dice's "
        "map is nearly white. BCE's push (p − g)/N does not saturate: it is strongest on "
        "the confidently wrong crescents. Move Confidence to 0.6: Dice's push grows about "
        "170×.",
        {"shift_x": 12, "blur": 0.0, "confidence": 0.999, "gradient_wrt": "∂L/∂logit",
         "stage_compare": "binary_crossentropy", "gradient_scale": "locked"}),
    Scenario(
        "batch_empty", "Batch: empty image",
        "A batch with an empty image in it. Does the empty image raise or lower the mean "
        "loss per image? And the whole-batch loss?",
        "The batch view holds the current pair, two gallery images and an empty image. Per "
        "image, smooth = 1 scores the empty one a perfect 1: the mean loss falls from 0.23 "
        "to 0.17 (untick the empty image to compare). Whole batch, it adds nothing to the "
        "sums: 0.21 either way. Set smooth to 0 and epsilon to 1e−7: it scores 0 and the "
        "mean rises to 0.42.",
        {"shift_x": 0, "blur": 1.0, "confidence": 0.9, "smooth": 1.0, "epsilon": 0.0,
         "explore_tabs": BATCH_TAB, "batch_empty": True}),
    # Where Dice is blind: the pitfalls of Metrics Reloaded (Reinke et al. 2024), each
    # opening the "Beyond overlap" view (the last, "3-D volumes"), fully confident unless
    # calibration is the point, so that the stage's soft Dice is the hard one
    Scenario(
        "far_blob", "A far-away blob",
        "The prediction is the truth plus a small blob far away. Which notices the blob: "
        "Dice, or the distance between the boundaries?",
        "The prediction is the truth, a disc of radius 51 px, plus a 116-pixel false-positive "
        "blob in the far corner. Dice (hard) is 0.99: the blob is 1% of the pixels. HD95 is "
        "104 px: the blob holds more than 5% of the predicted boundary, all of it far away. "
        "Shrink the blob to 1 px: HD95 falls to 0, as the worst 5% "
        "are left out.",
        {**PITFALL, "pitfall": "far blob", pitfall_key("far blob"): 6}),
    Scenario(
        "rough_edge", "A ragged boundary",
        "The prediction has the right size and place but a ragged edge. Does Dice mind? Does "
        "the surface Dice?",
        "The truth is a disc of radius 77 px; the prediction's radius moves by up to 5 px "
        "every 3 px of the rim. Dice (hard) is 0.97, as the bumps in and "
        "out nearly cancel. NSD at τ = 1 px is 0.44: less than half of the boundaries lie "
        "within a pixel of the other. Set τ to 5 px: NSD is 1.",
        {**PITFALL, "pitfall": "rough edge", pitfall_key("rough edge"): 5,
         "nsd_tolerance": 1.0}),
    Scenario(
        "small_shift", "One pixel off",
        "A tiny disc, predicted one pixel off. How much Dice does that cost, and would the "
        "same pixel cost a large disc as much?",
        "A disc of 21 pixels, moved 1 px right. Dice (hard) is 0.76: one pixel costs a "
        "quarter of the score. HD95 is 1 px and NSD at τ = 1 px is 1: no "
        "boundary point is more than a pixel off. Set Size to 0.2, a disc of 8,245 pixels: "
        "the same shift leaves Dice at 0.99, HD95 at 1 px. Dice depends on size.",
        {"truth_radius": 0.01, "shift_x": 1, "blur": 0.0, "confidence": 1.0,
         "nsd_tolerance": 1.0, "explore_tabs": BEYOND_TAB}),
    Scenario(
        "lesions_missed", "Small lesions missed",
        "The large lesions are found, the small ones are not. Is Dice still high? How many "
        "lesions were found?",
        "Three large lesions are found exactly; 12 small ones are all missed. Dice (hard) is "
        "0.91: the small ones hold only 16% of the lesion pixels. Lesion recall is 0.2, 3 "
        "found of 15: counted as lesions, four in five are missed. Lesion precision stays 1: "
        "nothing predicted is false. Set Small lesions to 30: recall falls to 0.09, Dice only "
        "to 0.8.",
        {**PITFALL, "pitfall": "lesions", pitfall_key("lesions"): 12}),
    Scenario(
        "thin_branches", "Thin branches lost",
        "A vessel tree whose thin branches the prediction misses. Does Dice see the lost "
        "branches? Does clDice?",
        "A vessel tree: a wide trunk and six branches 1 px wide. The prediction is the trunk "
        "alone. Dice (hard) is 0.91: the branches hold few pixels. clDice is 0.48: it compares "
        "centre lines, and the branches are more than half of the truth's. Set Branch width "
        "to 7 px: Dice falls to 0.57 as the missed pixels grow, while clDice stays 0.48. "
        "Length, not area.",
        {**PITFALL, "pitfall": "thin branches", pitfall_key("thin branches"): 1}),
    Scenario(
        "empty_reference", "Empty reference",
        "Nothing to find, and a small false positive. How do Dice, the boundary distances "
        "and lesion counts score it, and an empty prediction?",
        "The truth is empty; the prediction is an 81-pixel false positive. Dice (hard) is 0 "
        "whatever its size, and smooth 1 gives a loss of 0.99. HD95 and ASD are infinite, NSD "
        "is 0, lesion precision 0 and recall undefined. Set the prediction to Empty: smooth 1 "
        "scores it a perfect 1, epsilon alone (smooth 0, epsilon 1e−7) scores it 0, and the "
        "boundary metrics are undefined.",
        {"truth_source": "Empty", "prediction_source": "Shape", "prediction_radius": 0.02,
         "prediction_cy": 0.3, "prediction_cx": 0.7, "shift_x": 0, "blur": 0.0,
         "confidence": 1.0, "smooth": 1.0, "epsilon": 0.0, "explore_tabs": BEYOND_TAB}),
    Scenario(
        "calibration", "Calibration (ECE)",
        "Two predictions with the same pixels above the threshold, one sure and one unsure. "
        "Does hard Dice tell them apart? Does calibration?",
        "The truth moved 4 px, every pixel at p = 0.9 on its side of the threshold. Dice "
        "(hard) is 0.95 and ECE 0.087: the prediction is 90% sure and 98.7% right. Move "
        "Confidence to 0.6: hard Dice stays 0.95, ECE rises to 0.39, and the soft Dice loss "
        "on the stage more than doubles. At 0.99, ECE is 0.003. A threshold hides how sure p "
        "is.",
        {"shift_x": 4, "blur": 0.0, "confidence": 0.9, "explore_tabs": BEYOND_TAB}),
    Scenario(
        "slices_volume", "Slices vs volume",
        "A volume scored slice by slice, then as a whole. Which is higher, the mean over the "
        "slices or the volume's Dice?",
        "Below the stage, the lesions volume: 24 slices 3 mm apart. Its Dice over all voxels "
        "is 0.86. Averaged slice by slice it is 0.55: the end slices, with slivers of the "
        "large lesions, missed small ones and the false-positive blob, score near 0 and count "
        "as much as full middle slices; 5 slices empty in both are 0/0 and left out. Per case "
        "or pooled: say which.",
        {"explore_tabs": VOLUMES_TAB, "volume_name": "lesions"}),
)
BY_KEY = {s.key: s for s in SCENARIOS}


def get(key: str) -> Scenario:
    if key not in BY_KEY:
        raise ValueError(f"unknown scenario {key!r}; there are {', '.join(BY_KEY)}")
    return BY_KEY[key]


def _shape(state: dict, side: str, size: int, scale: float = 1.0) -> np.ndarray:
    """A side's mask as the page makes it from these controls; ``scale`` shrinks a pitfall's
    pixel amount with the size (a thumbnail)."""
    if state[f"{side}_source"] == "Pitfall":
        kind = state["pitfall"]
        amount = state[pitfall_key(kind)]
        if masks.PITFALLS[kind][4]:  # in pixels
            amount = max(round(amount * scale), 1) if amount else 0
        return masks.pitfall_pair(kind, size, amount=amount)[0 if side == "truth" else 1]
    if state[f"{side}_source"] == "Empty" or state[f"{side}_radius"] == 0:
        return np.zeros((size, size), np.int32)  # as the page: a shape of size 0 is empty
    return masks.shape_mask(state[f"{side}_shape"], size, radius=state[f"{side}_radius"],
                            center=(state[f"{side}_cy"], state[f"{side}_cx"]))


def preview(scenario: Scenario, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The scenario's truth and hard prediction as label maps at ``size`` (binary shapes;
    shift and grow scaled from the page's mask size), edited as the page edits them."""
    state = {**EXPLORE, **scenario.state}
    scale = size / state["mask_size"]
    truth = _shape(state, "truth", size, scale)
    if state["prediction_source"] == "Copy of truth":
        pred = truth.copy()
    else:
        pred = _shape(state, "prediction", size, scale)
    edits = Edits(dy=round(state["shift_y"] * scale), dx=round(state["shift_x"] * scale),
                  grow=round(state["grow"] * scale), invert=state["invert"])
    return truth, edits.hard(pred)


class Inputs(NamedTuple):
    """What the Explore page computes on for a scenario."""

    truth_labels: np.ndarray  # [H, W] label map
    truth: np.ndarray  # [1, H, W, C] truth channels (label smoothing applied)
    pred: np.ndarray  # [1, H, W, C] probabilities
    settings: Settings
    wrt: str  # "probabilities" or "logits"
    hard_pred: np.ndarray  # [H, W] the edited label map before softening
    edits: Edits  # the prediction's edits (the batch view applies them to gallery truths)


def inputs(scenario: Scenario, **changes) -> Inputs:
    """The scenario's masks, settings and gradient choice as the page builds them from its
    controls (binary shapes or empty masks); ``changes`` are controls moved afterwards, as a
    scenario's "set X to Y" asks."""
    state = {**EXPLORE, **scenario.state, **changes}
    classes, size = state["num_classes"], state["mask_size"]
    if classes != 2:
        raise ValueError("scenarios are binary: num_classes must be 2")
    truth_labels = _shape(state, "truth", size)
    pred = (truth_labels.copy() if state["prediction_source"] == "Copy of truth"
            else _shape(state, "prediction", size))
    edits = Edits(dy=state["shift_y"], dx=state["shift_x"], grow=state["grow"],
                  invert=state["invert"], confidence=state["confidence"], blur=state["blur"],
                  noise=state["noise"], temperature=state["temperature"])
    hard = edits.hard(pred)
    truth = predictions.truth(truth_labels, classes, label_smoothing=state["label_smoothing"])
    settings = Settings(num_classes=classes, **{
        key: state[key] for key in (
            "loss", "smooth", "epsilon", "squared", "per_image", "soft_label", "threshold",
            "alpha", "beta", "tversky_gamma", "focal_gamma", "bce_weight", "dice_weight",
            "lovasz_classes", "boundary_weight", "cl_dice_weight", "cl_iterations")})
    wrt = next(k for k, label in WRT_LABELS.items() if label == state["gradient_wrt"])
    prob = edits.soften(hard, classes)
    return Inputs(truth_labels, masks.to_batch(truth), masks.to_batch(prob), settings, wrt, hard,
                  edits)
