"""The Explore page: the stage, then the controls, then the views below.

The stage is the lesson on one screen: the chosen loss's value (large), the truth
against the prediction (true/false positives and false negatives), the probabilities
and the gradient, with the scenario's paragraph beside them. It is drawn into a
container at the top, filled once the controls below it have been read. The whole page
is one ``st.fragment``: a change reruns this page, never the sidebar or the Train page.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import streamlit as st

from explorer import analysis, charts, gradients, losses, masks, predictions
from explorer.settings import LOSS_LABELS, Settings
from explorer.ui import mask_inputs, state, teach, views, widgets
from explorer.ui.state import BATCH_TAB, FORMULA_TAB, NONE, NUMBERS_TAB, WRT_LABELS

# the stage sits right under the page picker; in presenter mode the page's own top padding
# goes (the title and caption are folded there too), so the stage fits 1280 x 720
STAGE_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
.st-key-stage [data-testid="stMetricValue"] { font-size: 3rem; line-height: 1.1; }
</style>"""
PRESENTER_STAGE_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding: 0.5rem 1rem 1rem 1rem; }
[data-testid="stHeader"] { height: 0; }
.st-key-stage [data-testid="stCaptionContainer"] p { font-size: 0.8rem; }
</style>"""
OVERLAY_CAPTION = ("Truth vs prediction at the threshold. Blue: true positive · orange: "
                   "false positive · purple: missed (false negative)")


@st.fragment
def render() -> None:
    st.html(STAGE_CSS + (PRESENTER_STAGE_CSS if teach.presenting() else ""))
    stage = st.container(key="stage")  # filled after the controls below are read
    with st.expander("Masks, prediction and loss settings", expanded=not teach.presenting()):
        inputs = _controls()
    if inputs is None:
        stage.info("Waiting for both masks: upload or choose a source under "
                   "'Masks, prediction and loss settings'.")
        return
    truth_labels, truth, pred, edits, settings, channel = inputs
    with stage:
        rows = analysis.metrics_table(truth, pred, settings)  # once: the stage and the table
        revealed = _stage(truth_labels, truth, pred, settings, channel, rows)
    if not revealed:
        return  # the views below would give the numbers away
    pages = {
        NUMBERS_TAB: lambda: numbers_panel(truth, pred, settings, rows),
        state.BEYOND_TAB: lambda: views.beyond_panel(truth_labels, pred, settings, channel),
        state.VOLUMES_TAB: lambda: views.volume_panel(settings),
        FORMULA_TAB: lambda: views.formula_panel(truth, pred, settings),
        "Compare gradients": lambda: views.compare_panel(truth_labels, truth, pred, settings),
        BATCH_TAB: lambda: views.batch_panel(truth, pred, settings, edits),
        "Sweeps": lambda: views.sweep_panel(truth_labels, truth, pred, settings, edits),
        "Other libraries": lambda: views.libraries_panel(truth, pred, settings),
        "Lovász step by step": lambda: views.lovasz_panel(truth, pred, settings),
        "Code": lambda: views.code_panel(truth, pred, settings),
    }
    page = widgets.view_picker("More", list(pages), key="explore_tabs")
    with widgets.panel(page):
        pages[page]()


def _controls():
    """Every Explore control, in three columns (truth, prediction, loss); returns the
    masks as batches and the settings, or None while a mask is missing."""
    top = st.columns(4)
    classes = top[0].selectbox("Classes", list(state.CLASS_CHOICES),
                               **state.with_index("num_classes", state.CLASS_CHOICES),
                               format_func=lambda k: "binary" if k == 2 else f"{k} (softmax)")
    size = top[1].selectbox("Mask size", mask_inputs.SIZES,
                            **state.with_index("mask_size", mask_inputs.SIZES),
                            format_func=lambda s: f"{s}×{s}")
    with top[2]:
        channel = widgets.class_picker(classes, "prob_class")
    top[3].toggle("Hover values", **state.with_value("hover_values"),
                  help="Interactive heatmaps: hover a pixel for its x, y, truth, p and gradient. "
                       "They take a browser several times longer to draw than pictures, which "
                       "shows when a whole class shares one small server.")
    truth_col, pred_col, loss_col = st.columns(3)
    with truth_col, widgets.panel("Ground truth"):
        st.markdown("**Ground truth**")
        truth_labels = mask_inputs.truth_input(classes, size)
        smoothing = st.slider("Label smoothing", 0.0, 0.5, step=0.01,
                              **state.with_value("label_smoothing"),
                              help="Soft truth: g·(1−a) + a/K. Try it with 'Soft labels (L1)'.")
    with pred_col, widgets.panel("Prediction"):
        st.markdown("**Prediction**")
        pred = mask_inputs.prediction_input(classes, size, truth_labels)
        hard = pred is None or np.issubdtype(np.asarray(pred).dtype, np.integer)
        edits = mask_inputs.edit_widgets(hard)
    with loss_col, widgets.panel("Settings"):
        st.markdown("**Loss and gradient**")
        settings = widgets.settings_panel(classes, truth_labels)
        _gradient_controls()
    if truth_labels is None or pred is None:
        return None
    # read by "Save masks" when clicked: that button is outside this fragment
    st.session_state.setdefault(state.CURRENT_PAIR, {})["pair"] = (truth_labels, pred)
    pred = _match_size(pred, truth_labels.shape, hard)
    if pred is None:
        return None
    prob = edits.soften(edits.hard(pred), classes) if hard else pred[..., None]
    truth = predictions.truth(truth_labels, classes, label_smoothing=smoothing)
    return truth_labels, masks.to_batch(truth), masks.to_batch(prob), edits, settings, channel


def _gradient_controls() -> None:
    st.radio("Gradient with respect to", list(WRT_LABELS.values()), horizontal=True,
             **state.with_index("gradient_wrt", WRT_LABELS.values()),
             help="The logit z behind p: p = sigmoid(z) (softmax for several classes). "
                  "Saturated pixels get no push through z.")
    options = [NONE, *LOSS_LABELS]
    st.selectbox("Second gradient on the stage", options,
                 **state.with_index("stage_compare", options),
                 format_func=lambda k: "none" if k == NONE else LOSS_LABELS[k])
    widgets.scale_controls()


def _match_size(pred, shape, hard):
    if pred.shape[:2] == shape:
        return pred
    st.warning(f"The truth is {shape[0]}×{shape[1]} but the prediction is "
               f"{pred.shape[0]}×{pred.shape[1]}: the losses need equal sizes.")
    if st.checkbox("Resize the prediction to the truth's size "
                   f"({'nearest, labels stay labels' if hard else 'bilinear'})",
                   **state.with_value("resize_prediction")):
        resize = masks.resize_labels if hard else masks.resize_probability
        return resize(pred, shape)
    return None


# ------------------------------------------------------------------------- the stage


def _stage(truth_labels, truth, pred, settings: Settings, channel: int, rows) -> bool:
    """The value, the masks and the gradient together, the scenario and the notes in a
    column of their own beside them (their length never pushes the pictures down); True
    once the numbers are shown (always, unless 'Guess first' waits for a guess)."""
    chosen = next(r for r in rows if r.key == settings.loss)
    left, right = st.columns([3, 1.1])
    with left:
        value_col, scores_col = st.columns([1, 1.4])
    with value_col, widgets.panel("Value"):
        revealed = _value(truth, pred, settings, chosen)
    with right:
        told = teach.scenario_panel(revealed) if hasattr(teach, "scenario_panel") else False
        if not told:
            st.caption("Pick a scenario in the sidebar for a guided lesson, or change the masks "
                       "and settings under the stage.")
    with right, widgets.panel("Notes"):
        if revealed:
            _notes(truth, pred, settings, chosen)
    wrt = next(k for k, v in WRT_LABELS.items() if v == state.current("gradient_wrt"))
    fg = widgets.truth_fg(truth_labels, settings.num_classes, channel)
    p = pred[0, ..., channel]
    other = state.current("stage_compare")
    keys = [settings.loss] + ([other] if other in LOSS_LABELS and other != settings.loss else [])
    with left:
        columns = st.columns(2 + len(keys))
    with columns[0], widgets.panel("Overlay"):
        pred_fg = predictions.hard_labels(pred[0], settings.threshold) == \
            widgets.class_of(settings.num_classes, channel)
        widgets.figure_or_picture(
            lambda: charts.overlay_figure(fg, pred_fg, title="Truth vs prediction"),
            lambda: charts.overlay_picture(fg, pred_fg), key="overlay_figure",
            caption=OVERLAY_CAPTION)
    with columns[1], widgets.panel("Probabilities"):
        title = f"p (class {widgets.class_of(settings.num_classes, channel)})"
        widgets.figure_or_picture(
            lambda: charts.probability_figure(p, truth_fg=fg, title=title),
            lambda: charts.probability_picture(p, truth_fg=fg), key="prob_figure",
            caption=f"{title}, truth outlined in pink; bar: p from 0 to 1")
    grads = _stage_gradients(keys, truth, pred, settings, wrt, channel, revealed)
    if grads is None:
        with columns[2]:
            st.info("Guess first: where will the gradient push p up, and where down? It "
                    "appears when you reveal the numbers.")
        return revealed
    limits, log = widgets.gradient_scale([g for _, g in grads])
    for column, key, (value, grad), limit in zip(columns[2:], keys, grads, limits):
        with column, widgets.panel("Gradient"):
            st.markdown(f"**{WRT_LABELS[wrt]} of {LOSS_LABELS[key]}**")
            widgets.gradient_view(grad, p, fg, key=f"stage_gradient_{key}",
                                  wrt_label=WRT_LABELS[wrt], limit=limit, log=log,
                                  title=f"{LOSS_LABELS[key]} = {widgets.shown(value)}")
            note = analysis.piecewise_note(settings.replace(loss=key), wrt, grad, fg)
            if note:
                st.caption(note)
    with scores_col:
        _scores(rows)
        _download(fg, pred_fg, p, grads, keys, limits, log, chosen, wrt)
    return revealed


def _stage_gradients(keys, truth, pred, settings: Settings, wrt: str, channel: int,
                     revealed: bool):
    """(value, gradient map of the shown class) per loss on the stage; None while hidden
    (guess first) or [] where the chosen loss refuses these settings."""
    if not revealed:
        return None
    found = []
    for key in keys:
        refused = analysis.refusal(settings, key)
        if refused:
            st.warning(f"No gradient for {LOSS_LABELS[key]}: {refused}")
            continue
        value, grad = gradients.loss_and_gradient(settings.loss_name(key), truth, pred, wrt=wrt,
                                                  **settings.keywords(key))
        found.append((value, grad[0, ..., channel]))
    return found


def _value(truth, pred, settings: Settings, chosen) -> bool:
    """The chosen loss's value, large; with 'Guess first', the guess box until revealed."""
    if teach.guessing() and not _guess(chosen, settings, _fingerprint(truth, pred, settings)):
        return False
    if math.isnan(chosen.value) and not chosen.refused:  # short enough for the large font
        st.metric(f"{chosen.label}: undefined", "0/0")
    else:
        st.metric(chosen.label, widgets.shown(chosen.value, chosen.refused))
    return True


def _scores(rows) -> None:
    soft, hard, hard_iou = (next(r for r in rows if r.key == key)
                            for key in ("dice_coefficient", "hard_dice", "hard_iou"))
    st.markdown(f"soft Dice **{widgets.shown(soft.value)}** · hard Dice "
                f"**{widgets.shown(hard.value)}** · hard IoU **{widgets.shown(hard_iou.value)}**")


def _notes(truth, pred, settings: Settings, chosen) -> None:
    """The sentences that explain odd numbers: soft vs hard, 0/0, infinity, refusals."""
    note = analysis.soft_hard_note(truth, pred, settings)
    if note:
        st.caption(note)
    if chosen.refused:
        st.warning(chosen.refused)
    elif math.isinf(chosen.value):
        _infinite(chosen.label)
    cases = losses.degenerate_cases(truth, pred, smooth=settings.smooth,
                                    epsilon=settings.epsilon, squared=settings.squared,
                                    per_image=settings.per_image,
                                    include_background=settings.include_background,
                                    soft_label=settings.soft_label, image_names=["this image"])
    for case in cases:
        (st.warning if case.kind in ("undefined", "empty_scores_zero") else st.info)(
            case.message)
    if cases:
        key, values = analysis.empty_conventions(truth, pred, settings)
        st.caption(f"The empty class, as other libraries score it ({LOSS_LABELS[key]}): "
                   + " · ".join(f"{widgets.EMPTY_LABELS[k]} {widgets.shown(v)}"
                                for k, v in values.items())
                   + ". Pick one under the stage: 'A class empty in truth and prediction "
                     "scores'.")
    if settings.from_logits:
        st.caption(_logits_sentence())
    formula = analysis.loss_formula(truth, pred, settings)
    if formula.note:
        st.caption(formula.note)


def _logits_sentence() -> str:
    """What reading logits changes, on one pixel (the page's logits come from the
    probabilities shown, |z| ≤ 16.1, where both ways agree)."""
    contrast = analysis.logits_contrast(-30.0)
    (p_value, p_grad), (z_value, z_grad) = contrast["probabilities"], contrast["logits"]
    return ("The losses read the logits (from_logits=True). Here the logits come from the "
            "probabilities shown, within ±16.1, so the numbers are the same. Beyond, only "
            "logits keep the push: one pixel of truth 1 at logit −30 scores BCE "
            f"{p_value:.2f} with gradient {p_grad:g} from its clipped probability, but "
            f"{z_value:.2f} with gradient {z_grad:.2f} from its logit.")


def _infinite(label: str) -> None:
    st.info(f"{label} is infinite: the Dice coefficient is exactly 0 here, and −log 0 = ∞. "
            "Any overlap, or smooth > 0, makes it finite.")


def _download(fg, pred_fg, p, grads, keys, limits, log, chosen, wrt) -> None:
    """The stage as one PNG for slides (built only when clicked)."""
    def picture() -> bytes:
        panels = [("Truth vs prediction", charts.overlay_picture(fg, pred_fg)),
                  ("Probabilities", charts.probability_picture(p, truth_fg=fg))]
        panels += [(f"{WRT_LABELS[wrt]} of {LOSS_LABELS[key]}",
                    charts.gradient_picture(grad, truth_fg=fg, limit=limit, log=log))
                   for key, (_, grad), limit in zip(keys, grads, limits)]
        lines = [OVERLAY_CAPTION, "Gradient: blue, descent pushes p up; red, pushes p down."]
        headline = f"{chosen.label} = {widgets.shown(chosen.value, chosen.refused)}"
        return charts.png_bytes(charts.stage_picture(panels, headline, lines))

    st.download_button("Download PNG", picture, help="The stage as one picture, for slides.", file_name="stage.png",
                       mime="image/png", on_click="ignore", **state.keyed("download_stage"))


def _fingerprint(truth, pred, settings: Settings) -> str:
    digest = hashlib.blake2b(repr(settings).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(truth).tobytes())
    digest.update(np.ascontiguousarray(pred).tobytes())
    return digest.hexdigest()


def _guess(chosen, settings: Settings, fingerprint: str) -> bool:
    """Predict, then reveal: True once the person has guessed for exactly this view."""
    if st.session_state.get(state.REVEALED) != fingerprint:
        with st.form("guess_form", border=True):
            st.markdown(f"**Your guess: {chosen.label}**")
            st.caption(analysis.loss_range(settings) + ".")
            guess = st.number_input("Guess", min_value=0.0, max_value=100.0, step=0.01,
                                    **state.with_value("guess_value"),
                                    label_visibility="collapsed")
            if not st.form_submit_button("Reveal", type="primary"):
                return False
        st.session_state[state.REVEALED], st.session_state[state.GUESS] = fingerprint, float(guess)
    guess = st.session_state[state.GUESS]
    off = abs(guess - chosen.value)  # NaN when the truth is 0/0: no "off by"
    (st.success if off <= 0.05 else st.warning)(
        f"You guessed {guess:g}; it is {widgets.shown(chosen.value)}"
        + ("." if math.isnan(off) else f" (off by {off:.3f}).")
        + " Change anything and you guess again.")
    return True


# --------------------------------------------------------------------- below the stage


def numbers_panel(truth: np.ndarray, pred: np.ndarray, settings: Settings, rows) -> None:
    """Every loss and score in one table, the chosen one marked; per-class Dice."""
    # st.table, not st.dataframe: a data grid redraws slowly on every slider move
    st.table(pd.DataFrame({
        "metric": [r.label for r in rows],
        "value": [widgets.shown(r.value, r.refused) for r in rows],
        "kind": ["higher is better" if r.kind == "score" else "loss" for r in rows],
        "": ["◀ chosen" if r.key == settings.loss else "" for r in rows],
    }).set_index("metric"))
    for row in rows:
        if row.refused and row.key != settings.loss:
            st.caption(f"{row.label}: {row.refused}")
        elif math.isinf(row.value):
            _infinite(row.label)
    if settings.num_classes > 2:
        per_class = losses.per_class_dice(truth, pred, smooth=settings.smooth,
                                          epsilon=settings.epsilon, squared=settings.squared,
                                          per_image=False, soft_label=settings.soft_label)
        included = [settings.include_background or c > 0 for c in range(settings.num_classes)]
        st.plotly_chart(charts.class_bars(np.asarray(per_class), title="Dice per class",
                                          weights=settings.class_weights, included=included),
                        key="class_bars")
