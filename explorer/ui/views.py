"""The Explore page's views below the stage: the formula, gradients side by side, the
batch, sweeps, other libraries' Dice, exported code and the Lovász step-through. Each
reads its few widgets and shows what the library computes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from explorer import (analysis, charts, codegen, conventions, gradients, losses, masks,
                      predictions)
from explorer.predictions import Edits
from explorer.settings import LOSS_LABELS, Settings
from explorer.ui import mask_inputs, state, teach, widgets
from explorer.ui.state import GRADIENT_SCALES, WRT_LABELS


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


SCALE_WORDS = dict(zip(GRADIENT_SCALES, (
    "Each map's largest push is full colour: compare shapes, not sizes.",
    "One scale for every map: a paler map pushes less.",
    "The scale stays as it was when locked: change a setting and a smaller push shows paler.")))


def compare_panel(truth_labels, truth, pred, settings: Settings) -> None:
    picked = st.multiselect("Losses side by side", list(LOSS_LABELS), max_selections=3,
                            format_func=LOSS_LABELS.get, **state.with_default("compare_losses"))
    shown = st.radio("With respect to", list(WRT_LABELS.values()), horizontal=True,
                     **state.with_index("compare_wrt", WRT_LABELS.values()))
    wrt = next(k for k, v in WRT_LABELS.items() if v == shown)
    channel = widgets.class_picker(settings.num_classes, "compare_class")
    fg = widgets.truth_fg(truth_labels, settings.num_classes, channel)
    refused = {key: analysis.refusal(settings, key) for key in picked}
    computed = {key: gradients.loss_and_gradient(settings.loss_name(key), truth, pred, wrt=wrt,
                                                 **settings.keywords(key))
                for key in picked if not refused[key]}
    limits, log = widgets.gradient_scale([grad[0, ..., channel] for _, grad in
                                          computed.values()], view="compare")
    limit_of = dict(zip(computed, limits))
    # the scale's control is drawn once, with the settings (a second copy would clash)
    mode = state.current("gradient_scale")
    st.caption(f"Colour scale: {mode}{', symmetric log' if log else ''}. "
               f"{SCALE_WORDS[mode]} Change it with 'Gradient colours' in the settings.")
    for column, key in zip(st.columns(max(len(picked), 1)), picked):
        if refused[key]:  # said, not computed: as the table says it
            column.warning(f"{LOSS_LABELS[key]}: {refused[key]}")
            continue
        (value, grad), limit = computed[key], limit_of[key]
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
    names = batch_names(batch.names)
    _batch_pictures(names, batch_truth, batch_pred)
    dice = np.asarray(losses.per_class_dice(batch_truth, batch_pred, smooth=settings.smooth,
                                            epsilon=settings.epsilon, squared=settings.squared,
                                            soft_label=settings.soft_label))
    st.dataframe(pd.DataFrame({
        "image": names,
        "truth pixels Σg": batch_truth.reshape(len(batch.names), -1, batch_truth.shape[-1]).sum(1)
        .sum(-1).astype(np.float64).round(1),
        "Σp": batch_pred.reshape(len(batch.names), -1, batch_pred.shape[-1]).sum(1).sum(-1)
        .astype(np.float64).round(1),
        "Dice (mean over classes)": [widgets.shown(v) for v in dice.mean(-1)],
    }), hide_index=True, key="batch_table")
    for case in losses.degenerate_cases(batch_truth, batch_pred, smooth=settings.smooth,
                                        epsilon=settings.epsilon, per_image=True,
                                        image_names=[n.split(":")[0] for n in names]):
        st.info(case.message)


BATCH_ROW = 6  # pictures a row in the batch view
FRAME_GREY = 173  # a frame round each picture: an empty image is all pale otherwise


def batch_names(names) -> list[str]:
    """The batch's images as the page names them, counted from 1: "image 1: current pair",
    "image 2: coins", …, "image 4: empty"."""
    shown = {"current": "current pair"}
    return [f"image {i}: {shown.get(name, name)}" for i, name in enumerate(names, 1)]


def _batch_pictures(names, batch_truth, batch_pred) -> None:
    """Each image of the batch, truth against hard prediction (true positives, false
    positives, false negatives), named as in the table."""
    st.caption("Truth vs prediction at 0.5 (argmax for several classes), any class as "
               "foreground: " + " · ".join(f"{kind} {colour}" for kind, colour in (
                   ("true positives", "blue"), ("false positives", "orange"),
                   ("false negatives", "purple"))))
    for start in range(0, len(names), BATCH_ROW):
        for column, b in zip(st.columns(BATCH_ROW), range(start, min(start + BATCH_ROW,
                                                                     len(names)))):
            truth_fg = predictions.hard_labels(batch_truth[b]) > 0
            pred_fg = predictions.hard_labels(batch_pred[b]) > 0
            picture = charts.overlay_picture(truth_fg, pred_fg)
            framed = np.pad(picture, ((2, 2), (2, 2), (0, 0)), constant_values=FRAME_GREY)
            column.image(charts.png_bytes(framed), caption=names[b], width="stretch")


@st.cache_data(show_spinner="Sweeping…", max_entries=32)
def _sweeps(truth_labels, truth, pred, pred_labels, settings: Settings, picked: tuple):
    return (analysis.sweep_smooth(truth, pred, settings, picked),
            analysis.sweep_object_size(settings, picked),
            analysis.sweep_confidence(truth_labels, pred_labels, settings, picked)
            if pred_labels is not None else None)


def sweep_losses(chosen: str, picked) -> tuple[str, ...]:
    """The losses a sweep draws: the others picked, then the chosen loss, always, last so
    that it is drawn on top (Tversky with α = β = ½ would hide under Dice otherwise)."""
    return (*(key for key in picked if key != chosen), chosen)


def sweep_panel(truth_labels, truth, pred, settings: Settings, edits: Edits) -> None:
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    picked = sweep_losses(settings.loss, c1.multiselect(
        "Losses beside the chosen one", list(LOSS_LABELS), format_func=LOSS_LABELS.get,
        **state.with_default("sweep_losses")))
    log_y = c2.toggle("Log y axis", **state.with_value("sweep_log_y"),
                      help="Lovász reaches about 5 where the Dice family stays below 1: on a "
                           "log axis every curve keeps its shape.")
    pred_labels = predictions.hard_labels(pred[0])
    smooth_curve, size_curve, confidence_curve = _sweeps(truth_labels, truth, pred, pred_labels,
                                                         settings, picked)
    st.caption(f"The chosen loss, {LOSS_LABELS[settings.loss]}, is always drawn, on top; "
               "each loss keeps its colour on every chart. "
               + ("The y axes are logarithmic: equal steps are equal ratios, and a loss of "
                  "exactly 0 leaves a gap." if log_y else
                  "Linear y axes: turn on 'Log y axis' when one loss flattens the others."))
    colors = {LOSS_LABELS[key]: charts.LOSS_COLORS[key] for key in picked}

    def curves(data, suffix=""):
        return {LOSS_LABELS[k]: data[k + suffix] for k in picked}

    def figure(x, data, **keywords):
        return charts.sweep_figure(x, data, colors=colors, log_y=log_y, **keywords)

    c1, c2 = st.columns(2)
    c1.plotly_chart(figure(smooth_curve["smooth"], curves(smooth_curve), current=settings.smooth,
                           x_title="smooth", y_title="loss", log_x=True,
                           title="Loss vs smooth"), key="sweep_smooth")
    if confidence_curve is not None:
        c2.plotly_chart(figure(confidence_curve["confidence"], curves(confidence_curve),
                               current=edits.confidence, x_title="confidence of the prediction",
                               y_title="loss", title="Loss vs confidence"),
                        key="sweep_confidence")
    c3, c4 = st.columns(2)
    c3.plotly_chart(figure(size_curve["radius"], curves(size_curve),
                           x_title="object radius (px), prediction 2 px off", y_title="loss",
                           log_x=True, title="Small objects: loss vs size"), key="sweep_size")
    c4.plotly_chart(figure(size_curve["radius"], curves(size_curve, ":grad"),
                           x_title="object radius (px)", y_title="mean |∂L/∂p| on object",
                           log_x=True, title="Small objects: gradient per pixel"),
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
    def fit_step():  # a smaller mask has fewer pixels to take
        st.session_state["lovasz_step"] = min(state.current("lovasz_step"),
                                              st.session_state["lovasz_side"] ** 2)

    c1, c2, c3 = st.columns(3)
    side = c1.select_slider("Small mask side (px)", [6, 8, 12, 16, 24], on_change=fit_step,
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
    taken = c3.slider("Pixels taken (largest error first)", 1, count,
                      **state.with_value("lovasz_step"),
                      help="Step through the sorted pixels one at a time; the last is the "
                           "full loss.")
    step = taken - 1  # the figures take the 0-based index of the last pixel taken
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


# --------------------------------------------------------------- beyond overlap

BEYOND_CAPTION = (
    "The hard prediction at the threshold (the most probable class for several classes) "
    "against the truth, class {cls}: boundary distances in pixels (MONAI 1.6's "
    "definitions), lesions as connected components (8-connected), clDice on skeletons, ECE "
    "on p. Each line says what it sees that Dice does not.")


def measures_table(found: analysis.BeyondOverlap) -> pd.DataFrame:
    """The measures as the views show them: value (or what it is in words), what it is
    made of, and what it sees that Dice does not."""
    rows = found.measures
    return pd.DataFrame({"value": [m.shown for m in rows], "made of": [m.counts for m in rows],
                         "what it sees that Dice does not": [m.sees for m in rows]},
                        index=[m.label for m in rows])


def _measures(found, left, right, caption: str, *, key: str) -> None:
    """The measures table with its empty-case reasons, and the reliability curve beside it."""
    with left:
        st.caption(caption)
        st.table(measures_table(found))
        _reasons(found)
    ece = next(m for m in found.measures if m.key == "ece")
    right.plotly_chart(charts.reliability_figure(found.calibration,
                                                 title=f"Reliability · ECE {ece.shown}"),
                       key=key)


def _reasons(found: analysis.BeyondOverlap) -> None:
    """Why a value is undefined or infinite, said once for the measures sharing a reason."""
    said: dict[str, list[str]] = {}
    for m in found.measures:
        if m.reason:
            said.setdefault(m.reason, []).append(m.label)
    for reason, labels in said.items():
        st.info(f"{', '.join(labels)}: {reason}.")


def beyond_panel(truth_labels, pred, settings: Settings, channel: int) -> None:
    """HD95, ASD, NSD at τ, lesion detection, clDice and ECE of the shown class
    (``analysis.beyond_overlap``), with the reliability diagram behind the ECE."""
    cls = widgets.class_of(settings.num_classes, channel)
    truth_fg = np.asarray(truth_labels) == cls
    pred_fg = predictions.hard_labels(pred[0], settings.threshold) == cls
    left, right = st.columns([2.3, 1])
    tolerance = right.slider("NSD tolerance τ (px)", 0.0, 20.0, step=0.5,
                             **state.with_value("nsd_tolerance"),
                             help="A boundary point within τ of the other boundary counts as "
                                  "right (≤ τ). Clinical practice picks τ from how far two "
                                  "experts' outlines differ.")
    found = analysis.beyond_overlap(truth_fg, pred_fg, pred[0, ..., channel],
                                    tolerance=tolerance)
    _measures(found, left, right, BEYOND_CAPTION.format(cls=cls), key="reliability")
    right.caption("Bars: the share of pixels predicted right in each confidence bin; on the "
                  "dashed line, p is as sure as it is right. ECE is the bars' pixel-weighted "
                  "distance from it.")


# ------------------------------------------------------------------ 3-D volumes

VOLUME_PROB = {"confidence": 0.9, "blur_sigma": 1.0}  # p behind the shipped hard predictions


@st.cache_resource(show_spinner=False)
def _volumes() -> dict:
    return masks.load_volumes()


@st.cache_data(show_spinner="Measuring the volume…", max_entries=16)
def _volume_numbers(name: str, spacing: tuple, tolerance: float, smooth: float,
                    epsilon: float):
    truth, pred = _volumes()[name]
    prob = masks.soften(pred.astype(np.int32), 2, **VOLUME_PROB)[..., 0]
    found = analysis.beyond_overlap(truth, pred, prob, tolerance=tolerance, spacing=spacing,
                                    unit="mm")
    per_slice, volume = analysis.slice_dice(truth, pred)
    g = truth.astype(np.float32)[..., None]
    p = prob[..., None]
    keywords = dict(smooth=smooth, epsilon=epsilon)
    whole = gradients.loss_value("dice_loss", g[None], p[None], **keywords)  # [1, D, H, W, 1]
    slices = gradients.loss_value("dice_loss", g, p, per_image=True, **keywords)  # [D, H, W, 1]
    return found, per_slice, volume, whole, slices


def _stretched(picture_rows: np.ndarray, times: int) -> np.ndarray:
    """Rows repeated ``times``: a side view drawn to scale when slices are thicker."""
    return np.repeat(picture_rows, max(1, times), axis=0)


def volume_panel(settings: Settings) -> None:
    """The shipped synthetic volumes: a slice, maximum-intensity projections, Dice per slice
    against the volume's, and the metrics with the voxel spacing."""
    top = st.columns([1.2, 2, 1, 1, 1, 1.2])
    name = top[0].selectbox("Volume", list(masks.VOLUME_NAMES),
                            **state.with_index("volume_name", masks.VOLUME_NAMES))
    depth = masks.VOLUME_SHAPE[0]
    index = top[1].slider("Slice", 0, depth - 1, **state.with_value("volume_slice"))
    spacing = tuple(top[k].number_input(f"{axis} (mm)", 0.1, 10.0, step=0.1,
                                        **state.with_value(f"spacing_{key}"))
                    for k, axis, key in ((2, "Slice gap D", "d"), (3, "Row H", "h"),
                                         (4, "Column W", "w")))
    tolerance = top[5].slider("NSD τ (mm)", 0.0, 10.0, step=0.5,
                              **state.with_value("volume_tolerance"))
    truth, pred = _volumes()[name]
    found, per_slice, volume, whole, slices = _volume_numbers(
        name, spacing, tolerance, settings.smooth, settings.epsilon)
    side = round(spacing[0] / spacing[2])  # side views: each slice this many rows tall
    pictures = (
        (f"Slice {index}", charts.overlay_picture(truth[index], pred[index])),
        ("Projection along D (top)", charts.overlay_picture(truth.any(0), pred.any(0))),
        ("Projection along H (side)", charts.overlay_picture(
            _stretched(truth.any(1), side), _stretched(pred.any(1), side))),
    )
    columns = st.columns([1, 1, 1, 1.6])
    for column, (title, picture) in zip(columns, pictures):
        column.image(charts.png_bytes(picture), caption=title, width="stretch")
    mean = float(np.nanmean(per_slice)) if np.isfinite(per_slice).any() else float("nan")
    columns[3].plotly_chart(charts.slice_dice_figure(per_slice, volume, current=index,
                                                     mean=mean), key="slice_dice")
    st.caption("Pictures: " + OVERLAY_CAPTION_3D + " Projections are the maximum over the "
               "axis (any voxel); the side view is drawn to scale (slices are "
               f"{spacing[0]:g} mm apart). Its p: the hard prediction at confidence "
               f"{VOLUME_PROB['confidence']:g}, blurred by {VOLUME_PROB['blur_sigma']:g} "
               "voxel.")
    st.markdown(
        f"**Per slice vs per volume:** averaging slices weighs a sliver at the end like the "
        f"full middle slice, and a slice empty in both is 0/0: the mean over the "
        f"{int(np.isfinite(per_slice).sum())} defined slices is "
        f"**{analysis.number_text(mean, '.3f')}**, the volume's Dice "
        f"**{analysis.number_text(volume, '.3f')}**. Dice loss "
        f"(`explorer.losses`, smooth {settings.smooth:g}) on the volume as one "
        f"[1, {', '.join(map(str, masks.VOLUME_SHAPE))}, 1] tensor: "
        f"**{widgets.shown(whole)}**; on its slices as a batch of {depth} images, per image: "
        f"**{widgets.shown(slices)}**.")
    left, right = st.columns([2.3, 1])
    _measures(found, left, right,
              f"Metrics of the whole volume in millimetres, voxel {spacing[0]:g} × "
              f"{spacing[1]:g} × {spacing[2]:g} mm ([D, H, W]): lesions 26-connected.",
              key="volume_reliability")


OVERLAY_CAPTION_3D = ("true positives blue, false positives orange, missed (false negatives) "
                      "purple.")
