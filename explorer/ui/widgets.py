"""Widgets that fill a ``Settings`` and produce masks. They only read input and call
``explorer``; every number shown elsewhere comes from the library."""

from __future__ import annotations

import logging
import traceback
from contextlib import contextmanager

import numpy as np
import streamlit as st

from explorer import analysis, charts, losses
from explorer.settings import LOSS_LABELS, Settings
from explorer.ui import state
from explorer.ui.state import GRADIENT_SCALES

# smooth/epsilon on a log scale with an exact 0
LOG_GRID = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0,
            30.0, 100.0, 300.0, 1000.0)
LOG = logging.getLogger("explorer")
EMPTY_LABELS = {"smooth": "what smooth and epsilon give (ours)", "zero": "loss 0 (smp)",
                "one": "loss 1 (Keras 3)", "nan": "undefined (NaN)",
                "skip": "left out of the mean"}
WEIGHTS_PER_ROW = 3  # class weight inputs a row: readable in a 250 px column


def view_picker(label: str, views: list[str], *, key: str) -> str:
    """Which of several views to draw (only that one runs). A segmented control rather
    than ``st.tabs``: tabs send a block per tab, and the browser walks the tab's whole
    panel after every change; measured here, a fifth of the page's drawing per rerun."""
    return st.segmented_control(label, views, required=True, label_visibility="collapsed",
                                **state.with_default(key, views))


def shown(value: float, refused: str = "") -> str:
    """A number as the page shows it: six decimals, 0/0 and infinity named."""
    return "not defined here" if refused else analysis.number_text(value, ".6f")


def figure_or_picture(figure, picture, *, key: str, caption: str) -> None:
    """An interactive plotly figure when "Hover values" is on, else the same view as a
    picture (cheap to draw), as wide as its column. Both are callables, so only the shown
    one is built."""
    if state.current("hover_values"):
        st.plotly_chart(figure(), key=key)
    else:
        st.image(charts.png_bytes(picture()), caption=caption, width="stretch")


def gradient_scale(maps, view: str = "stage") -> tuple[list[float], bool]:
    """The colour-scale half-width of each gradient map shown together, and whether the
    scale is symmetric log: one per map, one shared by all, or the shared one locked when
    the lock was set (so a change that shrinks the push shows as paler colours). Each
    ``view`` (the stage, the compare panels) keeps its own lock: the stage's one map would
    otherwise saturate the compare panels' larger pushes."""
    mode = state.current("gradient_scale")
    own = [charts.gradient_limit(m) for m in maps]
    if mode != GRADIENT_SCALES[2]:
        st.session_state.pop(state.GRADIENT_LOCK, None)
    if mode == GRADIENT_SCALES[0]:
        return own, bool(state.current("gradient_log"))
    shared = max(own, default=1e-12)
    if mode == GRADIENT_SCALES[2]:  # {view: half-width when locked}
        shared = st.session_state.setdefault(state.GRADIENT_LOCK, {}).setdefault(view, shared)
    return [shared] * len(own), bool(state.current("gradient_log"))


def gradient_view(grad, pred, fg, *, key: str, title: str, wrt_label: str, limit: float,
                  log: bool) -> None:
    """One gradient map, with its colour scale spelled out under the picture."""
    scale = "Symmetric log " if log else ""
    figure_or_picture(
        lambda: charts.gradient_figure(grad, prob=pred, truth_fg=fg, wrt_label=wrt_label,
                                       title=title, limit=limit, log=log),
        lambda: charts.gradient_picture(grad, truth_fg=fg, limit=limit, log=log), key=key,
        caption=f"{title}. Blue: descent pushes p up; red: pushes it down. {scale}Bar: "
                f"{wrt_label} from −{limit:.1e} to +{limit:.1e}; truth outlined.")


def scale_controls() -> None:
    """How gradient colours are scaled: per map, shared, locked; linear or symmetric log."""
    st.radio("Gradient colours", GRADIENT_SCALES, horizontal=True,
             **state.with_index("gradient_scale", GRADIENT_SCALES),
             help="Per map: each map's largest push is full colour. Shared: one scale for all "
                  "maps shown. Locked: the shared scale stays as it was when you locked it, "
                  "so a smaller push shows paler.")
    st.toggle("Symmetric log colours", **state.with_value("gradient_log"),
              help="Colours on a log scale over four decades below the largest push.")


def class_picker(classes: int, key: str) -> int:
    """The channel to show: the only one when binary, a chosen class otherwise."""
    if classes == 2:
        return 0
    return st.selectbox("Class shown", list(range(classes)),
                        **state.with_index(key, range(classes)))


def class_of(classes: int, channel: int) -> int:
    return 1 if classes == 2 else channel


def truth_fg(truth_labels: np.ndarray, classes: int, channel: int) -> np.ndarray:
    return truth_labels == class_of(classes, channel)


def folded(label: str):
    """Where advanced controls go: folded away in presenter mode, in plain view otherwise."""
    return st.expander(label) if state.current("presenter") else st.container()


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


def log_stops(value: float) -> list[float]:
    """The log slider's stops: ``LOG_GRID`` with the exact ``value`` added where it falls,
    so the slider always shows the number typed (0.5 sits between 0.3 and 1)."""
    return sorted({*LOG_GRID, float(value)})


def log_number(label: str, key: str, help: str) -> float:
    """A log-scale slider with an exact 0, and a number input for exact values; the
    number input is the value (and the one in the URL). The slider moves it along the grid
    and shows it exactly: a typed value off the grid becomes one more stop."""
    grid_key = key + "_grid"
    slider_slot = st.container()  # the slider shows above but is drawn after the number

    def from_slider():
        st.session_state[key] = st.session_state[grid_key]

    value = st.number_input(f"{label}, exact", min_value=0.0, max_value=1e6,
                            **state.with_value(key), format="%g", step=0.1,
                            label_visibility="collapsed")
    st.session_state[grid_key] = float(value)
    slider_slot.select_slider(label, options=log_stops(value), **state.keyed(grid_key),
                              on_change=from_slider,
                              format_func=lambda v: "0" if v == 0 else f"{v:g}", help=help)
    return float(value)


def settings_panel(num_classes: int, truth_labels: np.ndarray) -> Settings:
    """Every loss setting; returns the ``Settings`` they describe."""
    loss = st.selectbox("Chosen loss", list(LOSS_LABELS), format_func=LOSS_LABELS.get,
                        **state.with_index("loss", LOSS_LABELS),
                        help="Highlighted in the table; its gradient is shown.")
    smooth = log_number("smooth", "smooth",
                        "Added to numerator and denominator: empty vs empty scores 1, and "
                        "the penalty softens.")
    epsilon = log_number("epsilon", "epsilon",
                         "Added to the denominator only: it just guards 0/0.")
    # check boxes side by side at their full width, wrapping in a narrow column: labels
    # in half a column were cut ("Squared …")
    boxes = st.container(horizontal=True)
    # the L1 intersection and the squared denominator together would score above 1: one
    # locks the other (never both locked, so a link asking for both can be undone)
    soft_on = bool(state.current("soft_label"))
    squared_on = bool(state.current("squared"))
    squared = boxes.checkbox("Squared denominator", **state.with_value("squared"),
                             disabled=soft_on and not squared_on,
                             help="V-Net: Σp² + Σg². Not with soft labels (L1)." if not soft_on
                             else "Off while 'Soft labels (L1)' is on: together they exceed 1.")
    per_image = boxes.checkbox("Per image", **state.with_value("per_image"),
                               help="Dice per image, then the mean; off: sums over the whole "
                                    "batch.")
    soft_label = boxes.checkbox("Soft labels (L1)", **state.with_value("soft_label"),
                                disabled=squared and not soft_on,
                                help="Intersection Σ(p+g−|p−g|)/2: a soft target matches "
                                     "itself.")
    from_logits = boxes.checkbox("Loss reads logits", **state.with_value("from_logits"),
                                 help="from_logits=True: the loss takes the logits z behind p "
                                      "and computes log σ(z) itself, with no clip of p.")
    threshold = st.slider("Threshold", 0.0, 1.0, step=0.01, **state.with_value("threshold"),
                          help="For the hard metrics (argmax with several classes).")
    empty = st.selectbox("A class empty in truth and prediction scores",
                         losses.EMPTY_CONVENTIONS, format_func=EMPTY_LABELS.get,
                         **state.with_index("empty", losses.EMPTY_CONVENTIONS),
                         help="empty=…: what a region loss gives a class with nothing to find "
                              "and nothing found (other libraries differ).")
    class_weights, normalize, include_background = None, True, True
    if num_classes > 2:
        class_weights, normalize, include_background = _class_weight_widgets(num_classes,
                                                                             truth_labels)
    with st.expander("Tversky, focal, Lovász, BCE + Dice"):
        alpha = st.slider("Tversky α (false positives)", 0.0, 2.0, step=0.05,
                          **state.with_value("alpha"))
        beta = st.slider("Tversky β (false negatives)", 0.0, 2.0, step=0.05,
                         **state.with_value("beta"))
        tversky_gamma = st.slider("Focal Tversky γ", 0.5, 3.0, step=0.05,
                                  **state.with_value("tversky_gamma"),
                                  help="Loss (1 − TI)^(1/γ); γ = 1 is plain Tversky.")
        focal_gamma = st.slider("Focal γ", 0.0, 5.0, step=0.1, **state.with_value("focal_gamma"),
                                help="γ = 0 is plain cross-entropy.")
        focal_alpha = None
        if st.toggle("Focal α", **state.with_value("focal_alpha_on"),
                     help="Off: both terms weigh 1. On: α on the positive term."):
            focal_alpha = st.slider("α", 0.0, 1.0, step=0.05, **state.with_value("focal_alpha"))
        classes = ["present", "all"]
        lovasz_classes = st.radio("Lovász-Softmax classes", classes, horizontal=True,
                                  **state.with_index("lovasz_classes", classes))
        bce_weight = st.slider("BCE weight (BCE + Dice)", 0.0, 2.0, step=0.1,
                               **state.with_value("bce_weight"))
        dice_weight = st.slider("Dice weight (BCE + Dice)", 0.0, 2.0, step=0.1,
                                **state.with_value("dice_weight"))
        boundary_weight = st.slider("Boundary weight (Dice + boundary)", 0.0, 0.2, step=0.005,
                                    **state.with_value("boundary_weight"),
                                    help="The boundary loss is in pixels: a small weight "
                                         "(Kervadec et al. start at 0.01).")
        cl_dice_weight = st.slider("clDice weight (Dice + clDice)", 0.0, 2.0, step=0.1,
                                   **state.with_value("cl_dice_weight"))
        cl_iterations = st.slider("clDice skeleton steps", 0, 10,
                                  **state.with_value("cl_iterations"),
                                  help="Soft-skeleton iterations: about the largest radius of "
                                       "the thin structures.")
    return Settings(
        loss=loss, num_classes=num_classes, smooth=smooth, epsilon=epsilon, squared=squared,
        per_image=per_image, soft_label=soft_label, class_weights=class_weights,
        normalize_weights=normalize, include_background=include_background, alpha=alpha,
        beta=beta, tversky_gamma=tversky_gamma, focal_gamma=focal_gamma, focal_alpha=focal_alpha,
        lovasz_classes=lovasz_classes, threshold=threshold, bce_weight=bce_weight,
        dice_weight=dice_weight, empty=empty, from_logits=from_logits,
        boundary_weight=boundary_weight, cl_dice_weight=cl_dice_weight,
        cl_iterations=cl_iterations,
    )


def _class_weight_widgets(num_classes: int, truth_labels: np.ndarray):
    keys = [f"weight_{c}" for c in range(num_classes)]

    def inverse_frequency():
        weights = analysis.inverse_frequency_weights(truth_labels, num_classes)
        for key, w in zip(keys, weights):
            st.session_state[key] = w

    def reset():
        for key in keys:
            st.session_state[key] = state.default(key)

    for key in keys:  # defaults in the session, never value=: the buttons set these keys
        st.session_state.setdefault(key, state.default(key))
    st.caption("Class weights")
    # three to a row: six in one row of a narrow column left "clas / s 0" and slivers
    cells = [cell for _ in range(0, num_classes, WEIGHTS_PER_ROW)
             for cell in st.columns(WEIGHTS_PER_ROW)]
    weights = tuple(
        float(cell.number_input(f"class {c}", min_value=0.0, max_value=1000.0, step=0.1,
                                **state.keyed(keys[c]), format="%g"))
        for c, cell in zip(range(num_classes), cells))
    buttons = st.container(horizontal=True)
    buttons.button("Inverse frequency", on_click=inverse_frequency,
                   **state.keyed("inverse_frequency"),
                   help="w = 1 / class frequency in the truth, scaled to mean 1.")
    buttons.button("All 1", on_click=reset, **state.keyed("weights_reset"))
    boxes = st.container(horizontal=True)
    normalize = boxes.checkbox("Normalise weights", **state.with_value("normalize_weights"),
                               help="On: Σ w·L / Σ w, a weighted mean. Off: Σ w·L, as seed "
                                    "000's weighted loss.")
    include_background = boxes.checkbox("Include background",
                                        **state.with_value("include_background"),
                                        help="Class 0 counts in the loss (off: MONAI's "
                                             "include_background=False).")
    return weights, normalize, include_background
