"""Widgets that fill a ``Settings`` and produce masks. They only read input and call
``explorer``; every number shown elsewhere comes from the library."""

from __future__ import annotations

import functools
import gc
import logging
import math
import traceback
from contextlib import contextmanager

import numpy as np
import streamlit as st

from explorer import analysis, masks
from explorer.settings import LOSS_LABELS, Settings

# smooth/epsilon on a log scale with an exact 0
LOG_GRID = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0,
            30.0, 100.0, 300.0, 1000.0)
DEFAULTS = Settings()
LOG = logging.getLogger("explorer")


# Streamlit forgets the value of a widget a run does not draw (the other main tab, a
# closed sub-tab, presenter mode); these keep it for the session
KEEP = {"persist_state": "session"}
# every Explore control also lives in the URL: a copied link reopens the view
SHARE = {"bind": "query-params", **KEEP}


@functools.cache  # once per process; gc.get_freeze_count() would walk the list (~40 ms a run)
def freeze_imported_objects() -> None:
    """A full garbage collection walks every object, TensorFlow's and Streamlit's included:
    about 250 ms with the GIL held, a stall for every session at once. What the imports made
    lives as long as the server, so the collector is told to leave it alone."""
    gc.collect()
    gc.freeze()


def view_picker(label: str, views: list[str], *, key: str) -> str:
    """Which of several views to draw (only that one runs). A segmented control rather
    than ``st.tabs``: tabs send a block per tab, and the browser walks the tab's whole
    panel after every change; measured here, a fifth of the page's drawing per rerun."""
    return st.segmented_control(label, views, default=views[0], required=True, key=key,
                                label_visibility="collapsed", **SHARE)


def folded(label: str):
    """Where advanced controls go: folded away in presenter mode, in plain view otherwise."""
    return st.expander(label) if st.session_state.get("presenter") else st.container()


@contextmanager
def panel(name: str):
    """Error boundary: a failure in one panel shows a short message, not a traceback,
    and the rest of the page keeps working."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - the boundary is the point
        LOG.exception("panel %r failed", name)  # the server log keeps the traceback
        st.error(f"{name} could not be shown: {error}")
        with st.expander("Details"):
            st.code(traceback.format_exc())


def _nearest(value: float) -> float:
    if value <= 0:
        return 0.0
    positive = np.array(LOG_GRID[1:])
    return float(positive[np.argmin(np.abs(np.log10(positive) - math.log10(value)))])


def log_number(label: str, key: str, default: float, help: str) -> float:
    """A log-scale slider with an exact 0, and a number input for exact values; the
    number input is the value (and the one in the URL), the slider moves it to the
    nearest grid point and follows it."""
    grid_key = key + "_grid"
    slider_slot = st.container()  # the slider shows above but is drawn after the number

    def from_slider():
        st.session_state[key] = st.session_state[grid_key]

    value = st.number_input(f"{label}, exact", min_value=0.0, max_value=1e6, value=float(default),
                            **SHARE, key=key, format="%g", step=0.1,
                            label_visibility="collapsed")
    st.session_state[grid_key] = _nearest(value)
    slider_slot.select_slider(label, options=LOG_GRID, key=grid_key, on_change=from_slider,
                              format_func=lambda v: "0" if v == 0 else f"{v:g}", help=help)
    return float(value)


def settings_panel(num_classes: int, truth_labels: np.ndarray) -> Settings:
    """Every loss setting; returns the ``Settings`` they describe."""
    loss = st.selectbox("Chosen loss", list(LOSS_LABELS), format_func=LOSS_LABELS.get,
                        **SHARE, key="loss", help="Highlighted in the table; its gradient is shown.")
    smooth = log_number("smooth", "smooth", DEFAULTS.smooth,
                        "Added to numerator and denominator: empty vs empty scores 1, and "
                        "the penalty softens.")
    epsilon = log_number("epsilon", "epsilon", DEFAULTS.epsilon,
                         "Added to the denominator only: it just guards 0/0.")
    c1, c2 = st.columns(2)
    # the L1 intersection and the squared denominator together would score above 1: one
    # locks the other (never both locked, so a link asking for both can be undone)
    soft_on = bool(st.session_state.get("soft_label"))
    squared_on = bool(st.session_state.get("squared"))
    squared = c1.checkbox("Squared denominator", **SHARE, key="squared",
                          disabled=soft_on and not squared_on,
                          help="V-Net: Σp² + Σg². Not with soft labels (L1)." if not soft_on
                          else "Off while 'Soft labels (L1)' is on: together they exceed 1.")
    per_image = c2.checkbox("Per image", value=True, **SHARE, key="per_image",
                            help="Dice per image, then the mean; off: sums over the whole batch.")
    soft_label = c1.checkbox("Soft labels (L1)", **SHARE, key="soft_label",
                             disabled=squared and not soft_on,
                             help="Intersection Σ(p+g−|p−g|)/2: a soft target matches itself.")
    threshold = c2.slider("Threshold", 0.0, 1.0, 0.5, 0.01, **SHARE, key="threshold",
                          help="For the hard metrics (argmax with several classes).")
    class_weights, normalize, include_background = None, True, True
    if num_classes > 2:
        class_weights, normalize, include_background = _class_weight_widgets(num_classes,
                                                                             truth_labels)
    with st.expander("Tversky, focal, Lovász, BCE + Dice"):
        alpha = st.slider("Tversky α (false positives)", 0.0, 2.0, 0.5, 0.05, **SHARE, key="alpha")
        beta = st.slider("Tversky β (false negatives)", 0.0, 2.0, 0.5, 0.05, **SHARE, key="beta")
        tversky_gamma = st.slider("Focal Tversky γ", 0.5, 3.0, 1.0, 0.05, **SHARE, key="tversky_gamma",
                                  help="Loss (1 − TI)^(1/γ); γ = 1 is plain Tversky.")
        focal_gamma = st.slider("Focal γ", 0.0, 5.0, 2.0, 0.1, **SHARE, key="focal_gamma",
                                help="γ = 0 is plain cross-entropy.")
        focal_alpha = None
        if st.toggle("Focal α", **SHARE, key="focal_alpha_on",
                     help="Off: both terms weigh 1. On: α on the positive term."):
            focal_alpha = st.slider("α", 0.0, 1.0, 0.25, 0.05, **SHARE, key="focal_alpha")
        lovasz_classes = st.radio("Lovász-Softmax classes", ["present", "all"],
                                  horizontal=True, **SHARE, key="lovasz_classes")
        bce_weight = st.slider("BCE weight (BCE + Dice)", 0.0, 2.0, 1.0, 0.1, **SHARE, key="bce_weight")
        dice_weight = st.slider("Dice weight (BCE + Dice)", 0.0, 2.0, 1.0, 0.1,
                                **SHARE, key="dice_weight")
    return Settings(
        loss=loss, num_classes=num_classes, smooth=smooth, epsilon=epsilon, squared=squared,
        per_image=per_image, soft_label=soft_label, class_weights=class_weights,
        normalize_weights=normalize, include_background=include_background, alpha=alpha,
        beta=beta, tversky_gamma=tversky_gamma, focal_gamma=focal_gamma, focal_alpha=focal_alpha,
        lovasz_classes=lovasz_classes, threshold=threshold, bce_weight=bce_weight,
        dice_weight=dice_weight,
    )


def _class_weight_widgets(num_classes: int, truth_labels: np.ndarray):
    keys = [f"weight_{c}" for c in range(num_classes)]

    def inverse_frequency():
        weights = analysis.inverse_frequency_weights(truth_labels, num_classes)
        for key, w in zip(keys, weights):
            st.session_state[key] = w

    def reset():
        for key in keys:
            st.session_state[key] = 1.0

    for key in keys:  # defaults in state, never value=: the buttons set these keys
        st.session_state.setdefault(key, 1.0)
    st.caption("Class weights")
    columns = st.columns(num_classes)
    weights = tuple(
        float(col.number_input(f"class {c}", min_value=0.0, max_value=1000.0, step=0.1,
                               **SHARE, key=keys[c], format="%g"))
        for c, col in enumerate(columns))
    b1, b2 = st.columns(2)
    b1.button("Inverse frequency", on_click=inverse_frequency, key="inverse_frequency",
              help="w = 1 / class frequency in the truth, scaled to mean 1.")
    b2.button("All 1", on_click=reset, key="weights_reset")
    c1, c2 = st.columns(2)
    normalize = c1.checkbox("Normalise (Σw·L / Σw)", value=True, **SHARE, key="normalize_weights")
    include_background = c2.checkbox("Include background", value=True,
                                     **SHARE, key="include_background")
    return weights, normalize, include_background
