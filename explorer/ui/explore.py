"""The Explore tab: masks in, settings, live numbers and gradient heatmaps.

Two nested ``st.fragment``s keep each rerun small (every element a rerun sends costs the
server and, more, the browser): a mask edit reruns this tab but not the sidebar, title
or the Train tab; a loss setting reruns only the numbers and gradients, not the masks.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import streamlit as st

from explorer import (analysis, charts, codegen, conventions, gradients, losses, masks,
                      predictions)
from explorer.predictions import Edits
from explorer.settings import LOSS_LABELS, Settings
from explorer.ui import mask_inputs, state, teach, widgets
from explorer.ui.state import BATCH_TAB, FORMULA_TAB, WRT_LABELS

PICTURE_WIDTH = 300  # screen pixels: about the interactive figures' size (>= PICTURE_SIDE)


@st.fragment
def render() -> None:
    teach.banner()
    top = st.columns([1, 1, 2])
    classes = top[0].selectbox("Classes", list(state.CLASS_CHOICES),
                               **state.with_index("num_classes", state.CLASS_CHOICES),
                               format_func=lambda k: "binary" if k == 2 else f"{k} (softmax)")
    size = top[1].selectbox("Mask size", mask_inputs.SIZES,
                            **state.with_index("mask_size", mask_inputs.SIZES),
                            format_func=lambda s: f"{s}×{s}")
    top[2].caption("Draw, generate, pick or upload a truth and a prediction; the numbers and "
                   "the gradient below follow every change.")
    top[2].toggle("Hover values", **state.with_value("hover_values"),
                  help="Interactive heatmaps: hover a pixel for its x, y, truth, p and gradient. "
                       "They take a browser several times longer to draw than pictures, which "
                       "shows when a whole class shares one small server.")
    truth_col, pred_col, prob_col = st.columns(3)
    with truth_col, widgets.panel("Ground truth"):
        st.subheader("Ground truth")
        truth_labels = mask_inputs.truth_input(classes, size)
        smoothing = st.slider("Label smoothing", 0.0, 0.5, step=0.01,
                              **state.with_value("label_smoothing"),
                              help="Soft truth: g·(1−a) + a/K. Try it with 'Soft labels (L1)'.")
        if truth_labels is not None:
            _view(lambda: charts.mask_figure(truth_labels, num_classes=classes, title="Truth"),
                  lambda: charts.mask_picture(truth_labels, num_classes=classes),
                  key="truth_figure", caption="Truth")
    with pred_col, widgets.panel("Prediction"):
        st.subheader("Prediction")
        pred = mask_inputs.prediction_input(classes, size, truth_labels)
        hard = pred is None or np.issubdtype(np.asarray(pred).dtype, np.integer)
        edits = mask_inputs.edit_widgets(hard)
    if truth_labels is None or pred is None:
        st.info("Waiting for both masks: upload or choose a source above.")
        return
    # read by "Save masks" when clicked: that button is outside this fragment
    st.session_state.setdefault(state.CURRENT_PAIR, {})["pair"] = (truth_labels, pred)
    pred = _match_size(pred, truth_labels.shape, hard)
    if pred is None:
        return
    edited = edits.hard(pred) if hard else None
    prob = edits.soften(edited, classes) if hard else pred[..., None]
    with prob_col, widgets.panel("Probability map"):
        st.subheader("Probabilities")
        channel = _class_picker(classes, "prob_class")
        fg, title = _fg(truth_labels, classes, channel), f"p (class {_class_of(classes, channel)})"
        _view(lambda: charts.probability_figure(prob[..., channel], truth_fg=fg, title=title),
              lambda: charts.probability_picture(prob[..., channel], truth_fg=fg),
              key="prob_figure", caption=f"{title}, truth outlined in pink; the bar runs "
                                         "from p = 0 (left) to 1")
        if hard:
            title = "Hard prediction, truth outlined"
            _view(lambda: charts.mask_figure(edited, num_classes=classes, title=title,
                                             outline=truth_labels),
                  lambda: charts.mask_picture(edited, num_classes=classes, outline=truth_labels),
                  key="pred_figure", caption=f"{title} in white")
    truth = predictions.truth(truth_labels, classes, label_smoothing=smoothing)
    results(truth_labels, masks.to_batch(truth), masks.to_batch(prob), edits)


def _view(figure, picture, *, key: str, caption: str) -> None:
    """An interactive plotly figure when "Hover values" is on, else the same view as a
    picture (cheap to draw). Both are callables, so only the shown one is built."""
    if state.current("hover_values"):
        st.plotly_chart(figure(), key=key)
    else:
        st.image(charts.png_bytes(picture()), caption=caption, width=PICTURE_WIDTH)


def _gradient_view(grad, pred, fg, *, key: str, title: str, wrt_label: str) -> None:
    """One gradient map, with its colour scale spelled out under the picture."""
    limit = charts.gradient_limit(grad)
    _view(lambda: charts.gradient_figure(grad, prob=pred, truth_fg=fg, wrt_label=wrt_label,
                                         title=title),
          lambda: charts.gradient_picture(grad, truth_fg=fg), key=key,
          caption=f"{title}. Bar: {wrt_label} from −{limit:.2e} (blue: descent pushes p up) "
                  f"through 0 (white) to +{limit:.2e} (red: pushes p down); truth outlined.")


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


def _class_picker(classes: int, key: str) -> int:
    """The channel to show: the only one when binary, a chosen class otherwise."""
    if classes == 2:
        return 0
    return st.selectbox("Class shown", list(range(classes)),
                        **state.with_index(key, range(classes)))


def _class_of(classes: int, channel: int) -> int:
    return 1 if classes == 2 else channel


def _fg(truth_labels: np.ndarray, classes: int, channel: int) -> np.ndarray:
    return truth_labels == _class_of(classes, channel)


@st.fragment
def results(truth_labels: np.ndarray, truth: np.ndarray, pred: np.ndarray,
            edits: Edits) -> None:
    classes = 2 if truth.shape[-1] == 1 else truth.shape[-1]
    settings_col, numbers_col, grad_col = st.columns([1, 1.3, 1.4])
    with settings_col, widgets.panel("Settings"):
        st.subheader("Loss settings")
        settings = widgets.settings_panel(classes, truth_labels)
    revealed = False  # stays so if the numbers panel fails
    with numbers_col, widgets.panel("Numbers"):
        st.subheader("Numbers")
        revealed = numbers(truth, pred, settings)
    with grad_col, widgets.panel("Gradient"):
        st.subheader("Gradient of the chosen loss")
        refused = analysis.refusal(settings, settings.loss)
        if refused:
            st.warning(f"No gradient: {refused}")
        elif revealed:
            gradient_panel(truth_labels, truth, pred, settings)
        else:
            st.info("Guess first: where will the gradient push p up, and where down? It "
                    "appears when you reveal the numbers.")
    if not revealed:
        return  # the tabs below would give the numbers away
    views = {
        FORMULA_TAB: lambda: formula_panel(truth, pred, settings),
        "Compare gradients": lambda: compare_panel(truth_labels, truth, pred, settings),
        BATCH_TAB: lambda: batch_panel(truth, pred, settings, edits),
        "Sweeps": lambda: sweep_panel(truth_labels, truth, pred, settings, edits),
        "Other libraries": lambda: libraries_panel(truth, pred, settings),
        "Lovász step by step": lambda: lovasz_panel(truth, pred, settings),
        "Code": lambda: code_panel(truth, pred, settings),
    }
    view = widgets.view_picker("More", list(views), key="explore_tabs")
    with widgets.panel(view):
        views[view]()


def _shown(value: float, refused: str = "") -> str:
    if refused:
        return "not defined here"
    if math.isinf(value):
        return "∞"
    return "undefined (0/0)" if math.isnan(value) else f"{value:.6f}"


def _fingerprint(truth, pred, settings: Settings) -> str:
    digest = hashlib.blake2b(repr(settings).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(truth).tobytes())
    digest.update(np.ascontiguousarray(pred).tobytes())
    return digest.hexdigest()


def _guess(chosen, fingerprint: str) -> bool:
    """Predict, then reveal: True once the person has guessed for exactly this view."""
    if st.session_state.get(state.REVEALED) != fingerprint:
        with st.form("guess_form", border=True):
            st.markdown(f"**Your guess: {chosen.label}** (losses here run from 0 to about 1; "
                        "BCE and focal can be larger)")
            guess = st.number_input("Guess", min_value=0.0, max_value=100.0, step=0.01,
                                    **state.with_value("guess_value"),
                                    label_visibility="collapsed")
            if not st.form_submit_button("Reveal", type="primary"):
                return False
        st.session_state[state.REVEALED], st.session_state[state.GUESS] = fingerprint, float(guess)
    guess = st.session_state[state.GUESS]
    off = abs(guess - chosen.value)  # NaN when the truth is 0/0: no "off by"
    (st.success if off <= 0.05 else st.warning)(
        f"You guessed {guess:g}; it is {_shown(chosen.value)}"
        + ("." if math.isnan(off) else f" (off by {off:.3f}).")
        + " Change anything and you guess again.")
    return True


def numbers(truth: np.ndarray, pred: np.ndarray, settings: Settings) -> bool:
    """The table of numbers, or (guess first) the guess box; True when they are shown."""
    rows = analysis.metrics_table(truth, pred, settings)
    chosen = next(r for r in rows if r.key == settings.loss)
    if teach.guessing() and not _guess(chosen, _fingerprint(truth, pred, settings)):
        return False
    st.metric(f"{chosen.label} (chosen)", _shown(chosen.value, chosen.refused))
    # st.table, not st.dataframe: a data grid redraws slowly on every slider move
    st.table(pd.DataFrame({
        "metric": [r.label for r in rows],
        "value": [_shown(r.value, r.refused) for r in rows],
        "kind": ["higher is better" if r.kind == "score" else "loss" for r in rows],
        "": ["◀ chosen" if r is chosen else "" for r in rows],
    }).set_index("metric"))
    for row in rows:
        if row.refused:
            st.warning(f"{row.label}: {row.refused}")
        elif math.isinf(row.value):
            st.info(f"{row.label} is infinite: the Dice coefficient is exactly 0 here, and "
                    "−log 0 = ∞. Any overlap, or smooth > 0, makes it finite.")
    for case in losses.degenerate_cases(truth, pred, smooth=settings.smooth,
                                        epsilon=settings.epsilon, squared=settings.squared,
                                        per_image=settings.per_image,
                                        include_background=settings.include_background,
                                        soft_label=settings.soft_label):
        (st.warning if case.kind in ("undefined", "empty_scores_zero") else st.info)(
            case.message)
    if settings.num_classes > 2:
        per_class = losses.per_class_dice(truth, pred, smooth=settings.smooth,
                                          epsilon=settings.epsilon, squared=settings.squared,
                                          per_image=False, soft_label=settings.soft_label)
        included = [settings.include_background or c > 0 for c in range(settings.num_classes)]
        st.plotly_chart(charts.class_bars(np.asarray(per_class), title="Dice per class",
                                          weights=settings.class_weights, included=included),
                        key="class_bars")
    return True


def formula_panel(truth, pred, settings: Settings) -> None:
    """The Dice formula with this mask's sums, and the confusion counts."""
    left, right = st.columns(2)
    with left:
        for line in analysis.dice_formula(truth, pred, settings):
            st.latex(line)
    counts = analysis.confusion_counts(truth, pred, settings)
    right.caption(f"Confusion counts at threshold {settings.threshold:g}")
    # a plain table: a data grid would redraw on every slider move for four numbers a class
    right.table(pd.DataFrame(counts, index=[f"class {_class_of(settings.num_classes, c)}"
                                            for c in range(truth.shape[-1])]))


def gradient_panel(truth_labels, truth, pred, settings: Settings) -> None:
    channel = _class_picker(settings.num_classes, "grad_class")
    shown = st.radio("With respect to", list(WRT_LABELS.values()), horizontal=True,
                     **state.with_index("gradient_wrt", WRT_LABELS.values()),
                     help="The logit z behind p: p = sigmoid(z) (softmax for several classes). "
                     "Saturated pixels get no push through z.")
    fg = _fg(truth_labels, settings.num_classes, channel)
    name = settings.loss_name()
    summary = {}
    for wrt, label in WRT_LABELS.items():
        _, grad = gradients.loss_and_gradient(name, truth, pred, wrt=wrt, **settings.keywords())
        summary[label] = analysis.gradient_regions(grad[0, ..., channel], fg)
        if label == shown:  # one map on the page: half the work per slider move
            _gradient_view(grad[0, ..., channel], pred[0, ..., channel], fg,
                           key="gradient_heatmap", wrt_label=label,
                           title=f"{label}, {LOSS_LABELS[settings.loss]}")
    st.caption("Mean |gradient| by region (boundary: one pixel either side of the truth's edge)")
    st.table(pd.DataFrame(summary).T.map(lambda v: f"{v:.3e}"))


def compare_panel(truth_labels, truth, pred, settings: Settings) -> None:
    picked = st.multiselect("Losses side by side", list(LOSS_LABELS), max_selections=3,
                            format_func=LOSS_LABELS.get, **state.with_default("compare_losses"))
    shown = st.radio("With respect to", list(WRT_LABELS.values()), horizontal=True,
                     **state.with_index("compare_wrt", WRT_LABELS.values()))
    wrt = next(k for k, v in WRT_LABELS.items() if v == shown)
    channel = _class_picker(settings.num_classes, "compare_class")
    fg = _fg(truth_labels, settings.num_classes, channel)
    columns = st.columns(max(len(picked), 1))
    for column, key in zip(columns, picked):
        value, grad = gradients.loss_and_gradient(settings.loss_name(key), truth, pred, wrt=wrt,
                                                  **settings.keywords(key))
        regions = analysis.gradient_regions(grad[0, ..., channel], fg)
        with column:
            _gradient_view(grad[0, ..., channel], pred[0, ..., channel], fg,
                           key=f"compare_{key}", wrt_label=WRT_LABELS[wrt],
                           title=f"{LOSS_LABELS[key]} = {_shown(value)}")
            st.caption(" · ".join(f"{k}: {v:.2e}" for k, v in regions.items()))


def batch_panel(truth, pred, settings: Settings, edits: Edits) -> None:
    st.caption("The current pair plus gallery truths, each predicted with the same shift and "
               "softening. One image may be empty: watch per-image and whole-batch differ.")
    entries = mask_inputs.gallery_for(settings.num_classes)
    names = [e["name"] for e in entries]
    chosen = st.multiselect("Add gallery truths", names,
                            **state.with_default("batch_gallery", names))
    add_empty = st.checkbox("Add an empty image (empty truth and prediction)",
                            **state.with_value("batch_empty"))
    batch = predictions.batch((truth[0], pred[0]),
                              {e["name"]: e["labels"] for e in entries if e["name"] in chosen},
                              edits, settings.num_classes, add_empty=add_empty)
    batch_truth, batch_pred = batch.truth, batch.pred
    name = settings.loss_name()
    per_image = gradients.loss_value(name, batch_truth, batch_pred,
                                     **settings.replace(per_image=True).keywords())
    whole = gradients.loss_value(name, batch_truth, batch_pred,
                                 **settings.replace(per_image=False).keywords())
    c1, c2 = st.columns(2)
    c1.metric(f"{LOSS_LABELS[settings.loss]}, per image (mean)", _shown(per_image))
    c2.metric(f"{LOSS_LABELS[settings.loss]}, whole batch", _shown(whole))
    dice = np.asarray(losses.per_class_dice(batch_truth, batch_pred, smooth=settings.smooth,
                                            epsilon=settings.epsilon, squared=settings.squared,
                                            soft_label=settings.soft_label))
    st.dataframe(pd.DataFrame({
        "image": batch.names,
        "truth pixels Σg": batch_truth.reshape(len(batch.names), -1, batch_truth.shape[-1]).sum(1)
        .sum(-1).astype(np.float64).round(1),
        "Σp": batch_pred.reshape(len(batch.names), -1, batch_pred.shape[-1]).sum(1).sum(-1)
        .astype(np.float64).round(1),
        "Dice (mean over classes)": [_shown(v) for v in dice.mean(-1)],
    }), hide_index=True, key="batch_table")
    for case in losses.degenerate_cases(batch_truth, batch_pred, smooth=settings.smooth,
                                        epsilon=settings.epsilon, per_image=True):
        st.info(case.message)


@st.cache_data(show_spinner="Sweeping…", max_entries=32)
def _sweeps(truth_labels, truth, pred, pred_labels, settings: Settings, picked: tuple):
    return (analysis.sweep_smooth(truth, pred, settings, picked),
            analysis.sweep_object_size(settings, picked),
            analysis.sweep_confidence(truth_labels, pred_labels, settings, picked)
            if pred_labels is not None else None)


def sweep_panel(truth_labels, truth, pred, settings: Settings, edits: Edits) -> None:
    picked = tuple(st.multiselect("Losses", list(LOSS_LABELS), format_func=LOSS_LABELS.get,
                                  **state.with_default("sweep_losses")))
    if not picked:
        st.info("Pick at least one loss.")
        return
    pred_labels = predictions.hard_labels(pred[0])
    smooth_curve, size_curve, confidence_curve = _sweeps(truth_labels, truth, pred, pred_labels,
                                                         settings, picked)

    def curves(data, suffix=""):
        return {LOSS_LABELS[k]: data[k + suffix] for k in picked}

    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.sweep_figure(smooth_curve["smooth"], curves(smooth_curve),
                                        current=settings.smooth, x_title="smooth",
                                        y_title="loss", log_x=True, title="Loss vs smooth"),
                    key="sweep_smooth")
    if confidence_curve is not None:
        c2.plotly_chart(charts.sweep_figure(confidence_curve["confidence"],
                                            curves(confidence_curve), current=edits.confidence,
                                            x_title="confidence of the prediction",
                                            y_title="loss", title="Loss vs confidence"),
                        key="sweep_confidence")
    c3, c4 = st.columns(2)
    c3.plotly_chart(charts.sweep_figure(size_curve["radius"], curves(size_curve),
                                        x_title="object radius (px), prediction 2 px off",
                                        y_title="loss", log_x=True,
                                        title="Small objects: loss vs size"),
                    key="sweep_size")
    c4.plotly_chart(charts.sweep_figure(size_curve["radius"], curves(size_curve, ":grad"),
                                        x_title="object radius (px)",
                                        y_title="mean |∂L/∂p| on the object", log_x=True,
                                        title="Small objects: gradient per pixel"),
                    key="sweep_size_grad")


def libraries_panel(truth, pred, settings: Settings) -> None:
    """These masks scored as each library defines its Dice loss, and why they differ."""
    rows = conventions.translate(truth, pred, ours=settings.dice_keywords())
    st.caption("The same masks, the Dice loss as each library defines it, every number "
               "computed by `explorer.losses` with the library's settings mapped to ours.")
    st.table(pd.DataFrame({
        "library": [r.library for r in rows],
        "Dice loss": [_shown(r.value) for r in rows],
        "why it differs": [r.why for r in rows],
    }).set_index("library"))
    with st.expander("Formulas, calls and mapped settings", expanded=not teach.presenting()):
        for row in rows:
            st.markdown(f"**{row.library}** · `{row.call}` → {_shown(row.value)}")
            st.latex(row.formula)
            st.caption("In our terms: " + ", ".join(f"{k} = {v}" for k, v in row.mapped.items()))


CODE_FRAMEWORKS = {"tensorflow": "TensorFlow / Keras", "pytorch": "PyTorch"}


def code_panel(truth, pred, settings: Settings) -> None:
    """Self-contained code for the chosen loss with these settings, to paste anywhere."""
    framework = st.radio("Framework", list(CODE_FRAMEWORKS), format_func=CODE_FRAMEWORKS.get,
                         horizontal=True, **state.with_index("code_framework", CODE_FRAMEWORKS))
    name = settings.loss_name()
    value = gradients.loss_value(name, truth, pred, **settings.keywords())
    st.caption(f"`loss_fn(y_true, y_pred)` on channels-last probabilities reproduces "
               f"{LOSS_LABELS[settings.loss]} = {_shown(value)} on these masks. The copy "
               "button is at the code's top right.")
    st.code(codegen.snippet(framework, loss=name, **settings.keywords()), language="python")


def lovasz_panel(truth, pred, settings: Settings) -> None:
    """The Lovász extension on a small copy of the masks, one sorted pixel at a time."""
    c1, c2, c3 = st.columns(3)
    side = c1.select_slider("Small mask side (px)", [6, 8, 12, 16, 24],
                            **state.with_value("lovasz_side"),
                            help="The masks area-averaged down; the truth stays hard.")
    binary = settings.num_classes == 2
    classes = list(range(settings.num_classes))
    channel = 0 if binary else c2.selectbox("Class", classes,
                                            **state.with_index("lovasz_class", classes))
    small_truth, small_pred = analysis.small_pair(truth, pred, side=side)
    steps = analysis.lovasz_steps(small_truth, small_pred, kind="hinge" if binary else "softmax",
                                  channel=channel)
    count = len(steps["errors"])
    step = c3.slider("Step (pixels taken, largest error first)", 1, count,
                     **state.with_value("lovasz_step", range(1, count + 1))) - 1
    st.caption(
        ("Hinge errors 1 − z·(2g − 1) on the logits z" if binary else
         f"Errors |g − p| of class {channel}")
        + ", sorted from the largest. Taking pixels in that order, the running Jaccard loss "
        "rises; each pixel's weight is how much it rose, and the loss is Σ relu(error)·weight. "
        f"Here it is {steps['loss']:.6f} ({steps['reference']}).")
    st.plotly_chart(charts.lovasz_figure(steps, step=step), key="lovasz_steps")
    left, right = st.columns(2)
    left.plotly_chart(charts.lovasz_pixels_figure(steps, steps["shape"], step=step,
                                                  title="Order in which pixels are taken"),
                      key="lovasz_pixels")
    right.plotly_chart(charts.gradient_figure(
        steps["gradient"], prob=small_pred[0, ..., channel],
        truth_fg=small_truth[0, ..., channel] > 0.5, wrt_label=steps["wrt"],
        title="The resulting gradient"), key="lovasz_gradient")
