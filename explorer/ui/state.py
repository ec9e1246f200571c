"""Every key the app keeps in ``st.session_state``, and every control's default, once.

A control's key is also its name in the page's address (``bind="query-params"``): links
carry these names and values, so they never change. Widgets take their key, default and
persistence from here (``with_value``, ``with_index``, ``with_default``, ``keyed``); a
key that is not here is a ``KeyError``. Scenarios set the ``EXPLORE`` controls.
"""

from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

from explorer import masks, training
from explorer.predictions import Edits
from explorer.settings import Settings
from explorer.ui import runtime

# Streamlit forgets the value of a widget a run does not draw (the other main tab, a
# closed sub-tab, presenter mode); these keep it for the session
KEEP = {"persist_state": "session"}
# every Explore control also lives in the URL: a copied link reopens the view
SHARE = {"bind": "query-params", **KEEP}

SIDES = ("truth", "prediction")
CLASS_CHOICES = (2, 3, 4, 5, 6)  # the page's classes: 2 is binary
NONE = "none"  # no scenario: free exploration
WRT_LABELS = {"probabilities": "∂L/∂p", "logits": "∂L/∂logit"}
NUMBERS_TAB = "All numbers"
BEYOND_TAB = "Beyond overlap"
VOLUMES_TAB = "3-D volumes"
FORMULA_TAB = "Formula and counts"
BATCH_TAB = "Batch: per image vs whole batch"
COMPARED = ("dice_loss", "binary_crossentropy", "lovasz")  # the losses side by side at first
GRADIENT_SCALES = ("per map", "shared", "locked")

_SETTINGS, _EDITS = Settings(), Edits()


def pitfall_key(kind: str) -> str:
    """The key of a pitfall's amount (``masks.PITFALLS``): "pitfall_far_blob", …"""
    return "pitfall_" + kind.replace(" ", "_")


# ----------------------------------------------------------------- in the URL

# The Explore controls a scenario sets: it starts from these, so it looks the same
# whatever was on screen before.
EXPLORE = {
    "num_classes": 2, "mask_size": 256, "label_smoothing": 0.0,
    "truth_source": "Shape", "truth_shape": "circle", "truth_radius": 0.2,
    "truth_cy": 0.5, "truth_cx": 0.5,
    "prediction_source": "Copy of truth", "prediction_shape": "circle",
    "prediction_radius": 0.18, "prediction_cy": 0.5, "prediction_cx": 0.5,
    # the opening view moves the truth 8 px right with soft edges; the rest is no edit
    "shift_x": 8, "shift_y": _EDITS.dy, "grow": _EDITS.grow, "invert": _EDITS.invert,
    "confidence": _EDITS.confidence, "blur": 1.0, "noise": _EDITS.noise,
    "temperature": _EDITS.temperature,
    **{key: getattr(_SETTINGS, key) for key in (
        "loss", "smooth", "epsilon", "squared", "per_image", "soft_label", "threshold", "alpha",
        "beta", "tversky_gamma", "focal_gamma", "bce_weight", "dice_weight", "lovasz_classes",
        "empty", "from_logits", "boundary_weight", "cl_dice_weight", "cl_iterations")},
    "gradient_wrt": WRT_LABELS["probabilities"], "explore_tabs": NUMBERS_TAB,
    "batch_empty": True, "stage_compare": NONE, "gradient_scale": GRADIENT_SCALES[1],
    "gradient_log": False,
    # the pitfall pairs ("Pitfall" as a source), the surface tolerance of "Beyond overlap"
    # in pixels, and the volume of "3-D volumes"
    "pitfall": next(iter(masks.PITFALLS)),
    **{pitfall_key(kind): spec[3] for kind, spec in masks.PITFALLS.items()},
    "nsd_tolerance": 1.0, "volume_name": masks.VOLUME_NAMES[0],
    "volume_slice": masks.VOLUME_SHAPE[0] // 2,
    **dict(zip(("spacing_d", "spacing_h", "spacing_w"), masks.VOLUME_SPACING)),  # mm
    "volume_tolerance": 2.0,  # mm
}

# Defaults that depend on what is on offer are rules: functions of the options.
SHARED = {
    **EXPLORE,
    "main_tabs": "Explore", "scenario": NONE, "presenter": False, "guess": False,
    "hover_values": False,
    **{f"{side}_{key}": value for side in SIDES for key, value in (
        ("blob_count", 4), ("blob_seed", 0))},
    "truth_background": "none",
    "truth_gallery": lambda names: names[0],
    # the second sample, so that truth and prediction differ
    "prediction_gallery": lambda names: names[1] if len(names) > 1 else names[0],
    "prediction_is_probability": False, "resize_prediction": False,
    "prob_class": 1, "grad_class": 1, "compare_class": 1, "lovasz_class": 1,
    "focal_alpha_on": False, "focal_alpha": 0.25,
    **{f"weight_{c}": 1.0 for c in range(max(CLASS_CHOICES))},
    "normalize_weights": _SETTINGS.normalize_weights,
    "include_background": _SETTINGS.include_background,
    "compare_losses": COMPARED, "compare_wrt": WRT_LABELS["probabilities"],
    "batch_gallery": lambda names: names[:2], "sweep_losses": COMPARED, "sweep_log_y": False,
    "code_framework": "tensorflow",
    "lovasz_side": 12, "lovasz_step": 1,  # pixels taken: the first, then step on
}

# ------------------------------------------------------- for the session only

KEPT = {
    **{f"{side}_{key}": value for side in SIDES for key, value in (
        ("brush", "class 1"), ("brush_size", 14))},
    "train_dataset": training.DATASETS[0], "train_fg": 0.1, "train_count": 4,
    "train_size": 64, "train_epochs": training.TrainConfig.epochs, "train_batch": 16,
    "train_lr": training.TrainConfig.learning_rate, "train_width": 8, "train_depth": 3,
    "train_seed": 0, "train_flips": True, "train_compare": False,
    "train_losses": ("dice_loss", "binary_crossentropy", "bce_dice_loss"),
    # the Train tab's results: a recorded run (instant, for a class) or this session's own
    "train_view": "Replay", "train_seeds": 1,
    "train_replay": lambda options: "tiny-objects" if "tiny-objects" in options else options[0],
}
# a GPU trains a larger model on larger images in the same minute (mixed precision on)
ON_GPU = {"train_size": 128, "train_batch": 64, "train_width": 16}

# ----------------------------------- widgets whose value lasts a run (buttons, uploads)

PLAIN = {
    "smooth_grid": None, "epsilon_grid": None,  # follow their number inputs (set each run)
    "guess_value": 0.5,
    **{key: None for key in (
        "inverse_frequency", "weights_reset", "scenario_reset", "scenario_previous",
        "scenario_next", "download_masks", "download_stage",
        "masks_file_upload", "truth_upload", "prediction_upload", "train_start", "train_stop",
        "download_curves", "download_model")},
}
# keys made per scenario or per page shape: scenario_button_<scenario>, <side>_canvas_<classes>;
# a replay's epoch, train_replay_epoch_<replay> (replays differ in their epochs)
FAMILIES = ("scenario_button_", *(f"{side}_canvas_" for side in SIDES), "train_replay_epoch_")

# ------------------------------------------------ what the app keeps for itself

CURRENT_PAIR = "_current_pair"  # the masks shown, for "Save masks" (outside the fragment)
SHARED_MASKS = "shared_masks"  # the pair from an opened masks file
MASKS_FILE_ERROR = "_masks_file_error"
LINK_IN = "_link_in"  # the query parameters the session was opened with
LINK_CHECKED = "_link_checked"
GRADIENT_LOCK = "_gradient_lock"  # {view: the shared colour scale's half-width when locked}
REVEALED, GUESS = "_revealed", "_guess"  # the view the person has guessed for, and the guess
STEPPED = "_scenario_stepped"  # ◀ Previous / Next ▶ was clicked: redraw the sidebar too
TRAIN_JOB, TRAIN_OWNER, TRAIN_POLLING = "train_job", "train_owner", "train_polling"

DEFAULTS = {**SHARED, **KEPT, **PLAIN}


def _known(key: str) -> str:
    if key not in DEFAULTS and not key.startswith(FAMILIES):
        raise KeyError(f"{key!r} is not a key of explorer/ui/state.py")
    return key


def default(key: str, options: Sequence = ()) -> Any:
    """A control's opening value; a rule is applied to the options on offer."""
    value = ON_GPU[key] if key in ON_GPU and runtime.has_gpu() else DEFAULTS[_known(key)]
    value = value(list(options)) if callable(value) else value
    return list(value) if isinstance(value, tuple) else value


def keyed(key: str) -> dict:
    """A widget's key and where its value is kept: the URL and the session, the session
    only, or (buttons, uploads) nowhere beyond the run."""
    return {"key": _known(key), **(SHARE if key in SHARED else KEEP if key in KEPT else {})}


def with_value(key: str, options: Sequence = ()) -> dict:
    """Keywords of a slider, number input, checkbox or toggle: its default as ``value``."""
    return {"value": default(key, options), **keyed(key)}


def with_index(key: str, options: Sequence) -> dict:
    """Keywords of a selectbox or radio: its default as an ``index`` into ``options``."""
    options = list(options)
    return {"index": options.index(default(key, options)), **keyed(key)}


def with_default(key: str, options: Sequence = ()) -> dict:
    """Keywords of a multiselect or segmented control: its default as ``default``."""
    return {"default": default(key, options), **keyed(key)}


def current(key: str) -> Any:
    """A control's value now: what the session holds, else its default."""
    return st.session_state.get(key, default(key))
