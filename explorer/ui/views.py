"""The Explore page's views below the stage: the formula, gradients side by side, the
batch, sweeps, other libraries' Dice, exported code and the Lovász step-through. Each
reads its few widgets and shows what the library computes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from explorer import analysis, charts, codegen, conventions, gradients, losses, predictions
from explorer.predictions import Edits
from explorer.settings import LOSS_LABELS, Settings
from explorer.ui import mask_inputs, state, teach, widgets
from explorer.ui.state import WRT_LABELS


def formula_panel(truth, pred, settings: Settings) -> None:
    """The chosen loss's formula with this mask's sums, and the confusion counts."""
    left, right = st.columns(2)
    formula = analysis.loss_formula(truth, pred, settings)
    with left:
        st.caption(f"{LOSS_LABELS[settings.loss]}, with "
                   + ("the first image's sums" if settings.per_image else "the batch's sums"))
        for line in [formula.general, *formula.substituted]:
            st.latex(line)
        if formula.note:
            st.info(formula.note)
    counts = analysis.confusion_counts(truth, pred, settings)
    right.caption(f"Confusion counts at threshold {settings.threshold:g}")
    # a plain table: a data grid would redraw on every slider move for four numbers a class
    right.table(pd.DataFrame(counts, index=[f"class {widgets.class_of(settings.num_classes, c)}"
                                            for c in range(truth.shape[-1])]))


def compare_panel(truth_labels, truth, pred, settings: Settings) -> None:
    picked = st.multiselect("Losses side by side", list(LOSS_LABELS), max_selections=3,
                            format_func=LOSS_LABELS.get, **state.with_default("compare_losses"))
    shown = st.radio("With respect to", list(WRT_LABELS.values()), horizontal=True,
                     **state.with_index("compare_wrt", WRT_LABELS.values()))
    wrt = next(k for k, v in WRT_LABELS.items() if v == shown)
    channel = widgets.class_picker(settings.num_classes, "compare_class")
    fg = widgets.truth_fg(truth_labels, settings.num_classes, channel)
    computed = [gradients.loss_and_gradient(settings.loss_name(key), truth, pred, wrt=wrt,
                                            **settings.keywords(key)) for key in picked]
    limits, log = widgets.gradient_scale([grad[0, ..., channel] for _, grad in computed])
    for column, key, (value, grad), limit in zip(st.columns(max(len(picked), 1)), picked,
                                                 computed, limits):
        regions = analysis.gradient_regions(grad[0, ..., channel], fg)
        with column:
            widgets.gradient_view(grad[0, ..., channel], pred[0, ..., channel], fg,
                                  key=f"compare_{key}", wrt_label=WRT_LABELS[wrt],
                                  title=f"{LOSS_LABELS[key]} = {widgets.shown(value)}",
                                  limit=limit, log=log)
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
    c1.metric(f"{LOSS_LABELS[settings.loss]}, per image (mean)", widgets.shown(per_image))
    c2.metric(f"{LOSS_LABELS[settings.loss]}, whole batch", widgets.shown(whole))
    dice = np.asarray(losses.per_class_dice(batch_truth, batch_pred, smooth=settings.smooth,
                                            epsilon=settings.epsilon, squared=settings.squared,
                                            soft_label=settings.soft_label))
    st.dataframe(pd.DataFrame({
        "image": batch.names,
        "truth pixels Σg": batch_truth.reshape(len(batch.names), -1, batch_truth.shape[-1]).sum(1)
        .sum(-1).astype(np.float64).round(1),
        "Σp": batch_pred.reshape(len(batch.names), -1, batch_pred.shape[-1]).sum(1).sum(-1)
        .astype(np.float64).round(1),
        "Dice (mean over classes)": [widgets.shown(v) for v in dice.mean(-1)],
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
        "Dice loss": [widgets.shown(r.value) for r in rows],
        "why it differs": [r.why for r in rows],
    }).set_index("library"))
    with st.expander("Formulas, calls and mapped settings", expanded=not teach.presenting()):
        for row in rows:
            st.markdown(f"**{row.library}** · `{row.call}` → {widgets.shown(row.value)}")
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
               f"{LOSS_LABELS[settings.loss]} = {widgets.shown(value)} on these masks. The copy "
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
