"""Plotly figures for the explorer: masks, probabilities and gradients as heatmaps
with the truth outline drawn over them, per-class bars, sweep and training curves, the
Lovász steps; the same mask, probability and gradient views as plain RGB pictures
(``*_picture``), which a browser draws in a fraction of a heatmap's time (what a full
classroom needs); and the scenarios' thumbnails and the training samples' strip.

Pure functions of numpy arrays (no Streamlit, no TensorFlow). Images are shown at
most ``max_side`` pixels a side by integer stride sampling, so every displayed
value is the exact value of a real pixel and hover gives its original x, y.
Arrays go on the wire as small dtypes (uint8 labels, float32 values), which
plotly sends base64-encoded. Per-pixel hover extras ride in the heatmap's own
arrays: the truth (0/1 or class) in ``text``, p in ``customdata`` (gradient figure).
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from skimage import segmentation

from explorer.masks import CLASS_COLORS, hex_to_rgb

IMAGE_HEIGHT = 300
CHART_HEIGHT = 300
MARGIN = dict(l=10, r=10, t=40, b=10)
BACKGROUND_BAR = "#868e96"  # class 0 is black in images; grey so its bar shows
_COLORBAR = dict(thickness=12, len=0.9)
# one colour per loss, everywhere (sweeps, compare, training): Okabe-Ito, told apart with
# the common colour-vision deficiencies; Lovász and the four below from Paul Tol's muted
LOSS_COLORS = {
    "dice_loss": "#0072B2", "binary_crossentropy": "#D55E00", "jaccard_loss": "#009E73",
    "tversky_loss": "#CC79A7", "generalized_dice_loss": "#56B4E9", "bce_dice_loss": "#E69F00",
    "bce_log_dice_loss": "#999999", "focal_loss": "#000000", "lovasz": "#882255",
    # the boundary and clDice losses: purple, olive, indigo and rose
    "boundary_loss": "#AA4499", "boundary_dice_loss": "#999933", "cl_dice_loss": "#332288",
    "cl_dice_dice_loss": "#CC6677",
}
# true positives, false positives, false negatives in the overlay; true negatives light
OVERLAY_COLORS = {"TP": "#0072B2", "FP": "#E69F00", "FN": "#CC79A7", "TN": "#f1f3f5"}


# ------------------------------------------------------------------------ helpers


def downsample(array2d, max_side: int = 128) -> tuple[np.ndarray, int]:
    """Every ``step``-th pixel of a 2-D array (exact values, no averaging) and the step."""
    a = np.asarray(array2d)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {a.shape}")
    step = max(1, math.ceil(max(a.shape) / max_side))
    return a[::step, ::step], step


def _coords(shape: tuple[int, int], step: int) -> tuple[np.ndarray, np.ndarray]:
    """Original-pixel x and y of the sampled columns and rows."""
    return np.arange(0, shape[1], step), np.arange(0, shape[0], step)


def _runs(edges: np.ndarray):
    """(row, start, stop) of each run of True along the rows of a 2-D bool array."""
    d = np.diff(np.pad(edges, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(d == 1)
    _, stops = np.nonzero(d == -1)
    return rows, starts, stops


def _outline_trace(labels: np.ndarray, step: int, color: str) -> go.Scatter:
    """Lines along the pixel edges where ``labels`` (already sampled) changes class."""
    labels = np.asarray(labels)
    r, a, b = _runs(labels[:-1] != labels[1:])  # horizontal edges below row r
    hx = np.stack([a - 0.5, b - 0.5], -1)
    hy = np.stack([r + 0.5, r + 0.5], -1)
    r, a, b = _runs((labels[:, :-1] != labels[:, 1:]).T)  # vertical edges right of col r
    vx = np.stack([r + 0.5, r + 0.5], -1)
    vy = np.stack([a - 0.5, b - 0.5], -1)
    gap = np.full((len(hx) + len(vx), 1), np.nan)
    x = np.concatenate([np.concatenate([hx, vx]), gap], 1).ravel() * step
    y = np.concatenate([np.concatenate([hy, vy]), gap], 1).ravel() * step
    return go.Scatter(x=x.astype(np.float32), y=y.astype(np.float32), mode="lines",
                      line=dict(color=color, width=1.5), hoverinfo="skip",
                      showlegend=False, name="truth outline")


def _image_figure(traces, title: str) -> go.Figure:
    """A figure laid out for an image: square pixels, y down, no ticks or grid."""
    axis = dict(showticklabels=False, ticks="", showgrid=False, zeroline=False,
                constrain="domain")
    fig = go.Figure([t for t in traces if t is not None])
    fig.update_layout(title=title, height=IMAGE_HEIGHT, margin=MARGIN,
                      xaxis=axis, yaxis=dict(axis, autorange="reversed", scaleanchor="x"))
    return fig


def _same_shape(*arrays) -> list[np.ndarray]:
    """The inputs as arrays, after checking they are 2-D and of one shape."""
    arrays = [np.asarray(a) for a in arrays]
    if any(a.ndim != 2 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"expected 2-D arrays of one shape, got "
                         f"{[a.shape for a in arrays]}")
    return arrays


def _class_colorscale(num_classes: int) -> list:
    """Stepped colorscale giving label k (with zmin 0, zmax n-1) the colour of class k."""
    top = max(num_classes - 1, 1)
    scale = []
    for k in range(num_classes):
        lo, hi = max(0.0, (k - 0.5) / top), min(1.0, (k + 0.5) / top)
        scale += [[lo, CLASS_COLORS[k]], [hi, CLASS_COLORS[k]]]
    scale[-1][0] = 1.0  # n=1: stretch the one colour over the whole scale
    return scale


# ------------------------------------------------------------------------ figures


def mask_figure(labels, *, num_classes: int, title: str, outline=None,
                max_side: int = 128) -> go.Figure:
    """A label map in the class colours, optionally with the truth's outline over it."""
    arrays = _same_shape(labels) if outline is None else _same_shape(labels, outline)
    z, step = downsample(arrays[0].astype(np.uint8), max_side)
    x, y = _coords(arrays[0].shape, step)
    hover = "x %{x}, y %{y}<br>class %{z}"
    extra, line = {}, None
    if outline is not None:
        truth = downsample(arrays[1].astype(np.uint8), max_side)[0]
        extra = dict(text=truth)
        hover += " (truth %{text})"
        line = _outline_trace(truth, step, "white")
    heat = go.Heatmap(z=z, x=x, y=y, zmin=0, zmax=max(num_classes - 1, 1),
                      colorscale=_class_colorscale(num_classes), showscale=False,
                      hovertemplate=hover + "<extra></extra>", **extra)
    return _image_figure([heat, line], title)


def probability_figure(prob, *, truth_fg, title: str, max_side: int = 128) -> go.Figure:
    """Predicted probability p per pixel (0..1) with the truth outline over it."""
    prob, truth_fg = _same_shape(prob, truth_fg)
    z, step = downsample(prob.astype(np.float32), max_side)
    truth = downsample(truth_fg.astype(np.uint8), max_side)[0]
    x, y = _coords(prob.shape, step)
    heat = go.Heatmap(z=z, x=x, y=y, zmin=0, zmax=1, colorscale="Viridis",
                      text=truth, colorbar=dict(_COLORBAR, title="p"),
                      hovertemplate="x %{x}, y %{y}<br>truth %{text}"
                                    "<br>p %{z:.4f}<extra></extra>")
    return _image_figure([heat, _outline_trace(truth, step, "#ff3d7f")], title)


def gradient_scaled(grad, limit: float, log: bool = False) -> np.ndarray:
    """The gradient on the colour scale's axis, in [-1, 1] for |grad| <= limit: linear, or
    symmetric log (``log``): sign(g) log(1 + |g|/t) / log(1 + limit/t) with t = limit/10^4,
    so pushes down to 10^-4 of the largest still show."""
    grad = np.asarray(grad, np.float64)
    if not log:
        return grad / limit
    t = limit * 1e-4
    return np.sign(grad) * np.log1p(np.abs(grad) / t) / np.log1p(limit / t)


def gradient_figure(grad, *, prob, truth_fg, title: str, wrt_label: str = "∂L/∂p",
                    max_side: int = 128, limit: float | None = None,
                    log: bool = False) -> go.Figure:
    """Signed gradient per pixel on a diverging scale (blue: descent pushes up, red: down),
    from -limit to +limit (default: this map's largest |gradient|), linear or symmetric log;
    hover gives the gradient itself either way."""
    grad, prob, truth_fg = _same_shape(grad, prob, truth_fg)
    limit = gradient_limit(grad) if limit is None else limit
    raw, step = downsample(grad.astype(np.float32), max_side)
    x, y = _coords(grad.shape, step)
    truth = downsample(truth_fg.astype(np.uint8), max_side)[0]
    p = downsample(prob.astype(np.float32), max_side)[0]
    title_bar = f"{wrt_label}<br>blue: pushed up<br>red: pushed down"
    if log:  # colours on the log axis; hover still gives the gradient itself
        heat = go.Heatmap(
            z=gradient_scaled(raw, limit, log=True).astype(np.float32), x=x, y=y, zmid=0,
            zmin=-1, zmax=1, colorscale="RdBu_r", text=truth, customdata=np.stack([p, raw], -1),
            colorbar=dict(_COLORBAR, title=title_bar + "<br>(symmetric log)",
                          tickvals=[-1, 0, 1], ticktext=[f"−{limit:.1e}", "0", f"+{limit:.1e}"]),
            hovertemplate=f"x %{{x}}, y %{{y}}<br>truth %{{text}}<br>p %{{customdata[0]:.4f}}"
                          f"<br>{wrt_label} %{{customdata[1]:.3e}}<extra></extra>")
    else:
        heat = go.Heatmap(
            z=raw, x=x, y=y, zmid=0, zmin=-limit, zmax=limit, colorscale="RdBu_r", text=truth,
            customdata=p, colorbar=dict(_COLORBAR, title=title_bar),
            hovertemplate=f"x %{{x}}, y %{{y}}<br>truth %{{text}}<br>p %{{customdata:.4f}}"
                          f"<br>{wrt_label} %{{z:.3e}}<extra></extra>")
    return _image_figure([heat, _outline_trace(truth, step, "black")], title)


def class_bars(values, *, title: str, class_names=None, weights=None,
               included=None) -> go.Figure:
    """One bar per class in its colour; NaN (0/0) labelled, excluded classes faded."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    names = list(class_names) if class_names is not None else (
        ["background"] + [f"class {c}" for c in range(1, n)])
    included = [True] * n if included is None else [bool(i) for i in included]
    names = [name if inc else f"{name} (excluded)" for name, inc in zip(names, included)]
    nan = np.isnan(values)
    text = ["0/0" if bad else f"{v:.3f}" for v, bad in zip(values, nan)]
    hover = [f"value {t}" + ("" if weights is None else f"<br>weight {weights[c]:.4g}")
             for c, t in enumerate(text)]
    colors = [BACKGROUND_BAR if c == 0 else CLASS_COLORS[c % len(CLASS_COLORS)]
              for c in range(n)]
    top = max(1.0, float(np.nanmax(values))) if not nan.all() else 1.0
    fig = go.Figure(go.Bar(
        x=names, y=np.where(nan, 0.0, values), text=text, textposition="outside",
        cliponaxis=False, hovertext=hover, hovertemplate="%{x}<br>%{hovertext}<extra></extra>",
        marker=dict(color=colors, opacity=[1.0 if i else 0.3 for i in included])))
    fig.update_layout(title=title, height=CHART_HEIGHT, margin=MARGIN,
                      yaxis=dict(range=[0, top]), showlegend=False)
    return fig


def _log_ticks(values: np.ndarray) -> list[float]:
    """Ticks for a log axis over these positive values, each labelled in full: 1, 2, 5 in
    every decade over two decades or less, else powers of ten (every other one past six)."""
    lo, hi = float(values.min()), float(values.max())
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    span = math.log10(hi / lo)
    mantissas = (1, 2, 5) if span <= 2 else (1,)
    decades = range(first, last + 1, 1 if span <= 6 else 2)
    ticks = [m * 10.0 ** k for k in decades for m in mantissas]
    return [t for t in ticks if lo / 1.3 <= t <= hi * 1.3] or [lo, hi]


def sweep_figure(x, curves: dict, *, current=None, x_title: str, y_title: str,
                 log_x: bool = False, title: str = "", colors: dict | None = None,
                 log_y: bool = False) -> go.Figure:
    """Curves against a swept parameter, with a dashed line at the current value.

    One trace per curve, in ``colors[name]`` when given (``LOSS_COLORS`` by loss, so a
    loss has one colour everywhere), then (if ``current`` is given) a trace named
    "current": a dashed vertical line spanning the curves' y range. NaN values leave
    gaps. Hover gives each point's exact x and y. On a log x axis, x <= 0 (smooth = 0)
    is drawn at a stand-in 1.5 decades left of the smallest positive x, and that
    tick is labelled "0"; the other ticks are powers of ten. ``log_y`` puts y on a log
    axis (a loss reaching 5 then leaves the others' shapes readable); values <= 0 have
    no place there and leave gaps, and the y title ends in "(log)".
    """
    x = np.asarray(x, dtype=float)
    xaxis, zero_at = dict(title=x_title), None
    if log_x:
        positive = x[x > 0]
        if not positive.size:
            raise ValueError("a log x axis needs some x > 0")
        lo, hi = math.log10(positive.min()), math.log10(positive.max())
        zero_at = 10 ** (math.floor(lo) - 1.5)
        decades = list(range(math.ceil(lo), math.floor(hi) + 1))
        decades = decades[::max(1, math.ceil(len(decades) / 6))]
        ticks = [10.0 ** k for k in decades]
        labels = [f"{t:g}" if -3 < k < 4 else f"1e{k}" for k, t in zip(decades, ticks)]
        if len(ticks) < 2:  # less than a decade: label the ends instead
            ticks = [positive.min(), positive.max()]
            labels = [f"{t:.3g}" for t in ticks]
        if (x <= 0).any():
            ticks, labels = [zero_at] + ticks, ["0"] + labels
        xaxis.update(type="log", tickmode="array", tickvals=ticks, ticktext=labels)
    shown = x if zero_at is None else np.where(x > 0, x, zero_at)
    hover = f"{x_title} = %{{customdata:.3g}}<br>{y_title} = %{{y:.4g}}"
    ys = {label: np.asarray(y, dtype=float) for label, y in curves.items()}
    if log_y:
        ys = {label: np.where(y > 0, y, np.nan) for label, y in ys.items()}
    colors = colors or {}
    fig = go.Figure([go.Scatter(x=shown, y=y, customdata=x, name=str(label),
                                mode="lines+markers", connectgaps=False, hovertemplate=hover,
                                line=dict(color=colors.get(label)))
                     for label, y in ys.items()])
    if current is not None:  # a trace, not a shape: shapes on log axes differ by version
        every = np.concatenate([[]] + [np.ravel(y) for y in ys.values()])
        every = every[np.isfinite(every)] if np.isfinite(every).any() else np.array([0.0, 1.0])
        if log_y:  # padded by a factor: the axis is in decades
            low, high = (every.min() / 1.2, every.max() * 1.2) if every.min() > 0 else (0.1, 1.0)
        else:
            pad = 0.05 * ((every.max() - every.min()) or 1.0)
            low, high = every.min() - pad, every.max() + pad
        at = zero_at if zero_at is not None and current <= 0 else float(current)
        fig.add_trace(go.Scatter(
            x=[at, at], y=[low, high], mode="lines+text",
            text=["", "current"], textposition="top center", cliponaxis=False,
            line=dict(color="grey", dash="dash"), hoverinfo="skip", showlegend=False,
            name="current"))
    yaxis = dict(title=y_title)
    positive = np.concatenate([[]] + [y[y > 0] for y in ys.values()])
    if log_y and positive.size:  # ticks of our own: plotly labels 0.8 "8" and 1e-4 "100µ"
        ticks = _log_ticks(positive)
        yaxis = dict(title=f"{y_title} (log)", type="log", tickmode="array", tickvals=ticks,
                     ticktext=[f"{t:g}" for t in ticks])
    elif log_y:
        yaxis = dict(title=f"{y_title} (log)", type="log")
    fig.update_layout(title=title, height=CHART_HEIGHT, margin=MARGIN, xaxis=xaxis,
                      yaxis=yaxis, legend=dict(orientation="h", y=-0.3, yanchor="top"))
    return fig


# the training records' columns drawn, with their legend names
TRAINING_CURVES = {"loss": "training loss", "val_dice": "validation Dice",
                   "val_iou": "validation IoU", "val_dice_small": "validation Dice, small objects"}


def training_curves_figure(records) -> go.Figure:
    """Training loss and validation metrics per epoch, one line per run and metric: the
    training loss dotted, the validation metrics solid. ``records`` is a pandas DataFrame
    with the columns ``run``, ``loss_name``, ``epoch`` and those of ``TRAINING_CURVES``."""
    figure = go.Figure()
    for (run, loss), frame in records.groupby(["run", "loss_name"]):
        for key, label in TRAINING_CURVES.items():
            if key in frame and frame[key].notna().any():
                figure.add_scatter(x=frame["epoch"], y=frame[key], mode="lines+markers",
                                   name=f"{run + 1}. {loss}: {label}",
                                   line_dash="dot" if key == "loss" else "solid")
    figure.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10),
                         xaxis_title="epoch", yaxis_title="value",
                         legend=dict(font=dict(size=10)))
    return figure


# the panels of a training comparison, side by side: the metric and its title
COMPARISON_PANELS = {"val_dice": "validation Dice", "val_small_dice": "small-object Dice",
                     "val_iou": "validation IoU", "loss": "training loss"}


def _rgba(color: str, alpha: float) -> str:
    return "rgba({}, {}, {}, {})".format(*hex_to_rgb(color), alpha)


def training_comparison_figure(summary, *, epoch=None,
                               panels=("val_dice", "val_small_dice")) -> go.Figure:
    """Training runs compared: one panel per metric (``COMPARISON_PANELS``), side by side;
    per loss its mean over seeds per epoch in its fixed colour (``LOSS_COLORS``) and, with
    several seeds, a band from the lowest to the highest seed. ``summary`` is
    ``explorer.training.summarize(comparison)``; ``epoch`` draws a dotted line there
    (the epoch a replay shows)."""
    figure = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.08,
                           subplot_titles=[COMPARISON_PANELS[p] for p in panels])
    for group in summary:
        color = LOSS_COLORS.get(group["loss_key"], "#444444")
        label, seeds = group["label"], len(group["seeds"])
        for col, metric in enumerate(panels, start=1):
            curve = group["curves"][metric]
            x, mean = curve["epoch"], curve["mean"]
            if seeds > 1:
                kept = [i for i, v in enumerate(mean) if v is not None]
                xs = [x[i] for i in kept]
                figure.add_scatter(
                    x=xs + xs[::-1], y=[curve["high"][i] for i in kept]
                    + [curve["low"][i] for i in kept][::-1], fill="toself",
                    fillcolor=_rgba(color, 0.12), line=dict(width=0), hoverinfo="skip",
                    showlegend=False, legendgroup=label, row=1, col=col)
            spread = ("" if seeds == 1 else
                      f"<br>mean of {seeds} seeds; lowest %{{customdata[0]:.3f}}, "
                      "highest %{customdata[1]:.3f}")
            figure.add_scatter(
                x=x, y=mean, mode="lines+markers", name=label, legendgroup=label,
                showlegend=col == 1, line=dict(color=color, width=2), marker=dict(size=5),
                customdata=np.column_stack([curve["low"], curve["high"]]).tolist(),
                hovertemplate=f"{label}<br>epoch %{{x}}: %{{y:.3f}}{spread}<extra></extra>",
                row=1, col=col)
    if epoch is not None:
        for col in range(1, len(panels) + 1):
            figure.add_vline(x=epoch, line=dict(color="#868e96", dash="dot", width=1),
                             row=1, col=col)
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(rangemode="tozero")
    figure.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10),
                         legend=dict(orientation="h", yanchor="bottom", y=-0.45, x=0))
    return figure


GRID_CELL = 128  # about this many screen pixels a side per grid cell (integer zoom)
GRID_GAP = 6  # light pixels between the cells of a column
GRID_GAP_RGB = (255, 255, 255)


def _zoomed(rgb: np.ndarray, side: int) -> np.ndarray:
    factor = max(1, round(side / max(rgb.shape[:2])))
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def _column(cells) -> np.ndarray:
    """RGB cells stacked top to bottom with ``GRID_GAP`` pixels between them."""
    gap = np.full((GRID_GAP, cells[0].shape[1], 3), GRID_GAP_RGB, np.uint8)
    parts = []
    for i, cell in enumerate(cells):
        parts += [gap, cell] if i else [cell]
    return np.concatenate(parts, axis=0)


def prediction_grid(grid, epoch_index: int = -1, *, threshold: float = 0.5,
                    side: int = GRID_CELL) -> list[np.ndarray]:
    """A comparison's prediction grid as pictures, one per column: the validation
    images, their truth, then one column per run in ``grid["runs"]`` with its prediction
    after the epoch at ``epoch_index`` (of that run's epochs; the last it has when
    shorter) as a TP/FP/FN overlay in ``OVERLAY_COLORS``. Each column holds one cell per
    validation image, top to bottom, so rows line up across columns. ``grid`` is the
    ``"grid"`` of an ``explorer.training`` comparison."""
    truth = np.asarray(grid["truth"]) >= 0.5
    grey = (np.clip(np.asarray(grid["image"]), 0, 1) * 255).round().astype(np.uint8)
    images = [_zoomed(np.repeat(g[..., None], 3, axis=-1), side) for g in grey]
    palette = np.array([hex_to_rgb(OVERLAY_COLORS[k]) for k in ("TN", "TP", "FP", "FN")],
                       np.uint8)
    truths = [_zoomed(palette[np.where(t, 1, 0)], side) for t in truth]
    columns = [_column(images), _column(truths)]
    for prediction in grid["prediction"]:
        at = min(epoch_index, len(prediction) - 1) if epoch_index >= 0 else epoch_index
        shown = np.asarray(prediction[at]) >= threshold
        columns.append(_column([_zoomed(palette[confusion_map(t, p)], side)
                                for t, p in zip(truth, shown)]))
    return columns


def overlay_rgb(labels, num_classes: int) -> np.ndarray:
    """A label map as an RGB uint8 image in the class colours (for thumbnails)."""
    palette = np.array([hex_to_rgb(c) for c in CLASS_COLORS[:num_classes]], dtype=np.uint8)
    return palette[np.clip(np.asarray(labels), 0, num_classes - 1)]


# ------------------------------------------------------------------------ pictures
# The heatmaps' views as RGB uint8 arrays, with the figures' colours and sampling: every
# cell is one real pixel (``downsample``), blown up to whole blocks of screen pixels.

# pixels a side at most (at least half of it): the page shows pictures a little larger,
# scaled without smoothing; any larger than shown and Streamlit would resample them,
# blurring the cells' edges
PICTURE_SIDE = 256
BAR_HEIGHT, BAR_GAP = 12, 6  # the colour bar under probability and gradient pictures
NAN_RGB = (206, 212, 218)  # 0/0 cells: the heatmaps leave them blank


@functools.lru_cache(maxsize=None)
def _lut(colorscale: str) -> np.ndarray:
    """256 RGB colours sampled from a plotly colour scale (the heatmaps' own)."""
    samples = plotly.colors.sample_colorscale(colorscale, list(np.linspace(0, 1, 256)))
    rgb = [plotly.colors.unlabel_rgb(c) for c in samples]
    return np.rint(np.asarray(rgb, dtype=float)).clip(0, 255).astype(np.uint8)


def _colored(values: np.ndarray, colorscale: str, lo: float, hi: float) -> np.ndarray:
    """Values in [lo, hi] through a colour scale; non-finite values grey."""
    finite = np.isfinite(values)
    t = np.where(finite, (np.nan_to_num(values) - lo) / (hi - lo), 0.0)
    rgb = _lut(colorscale)[np.rint(np.clip(t, 0, 1) * 255).astype(np.intp)]
    rgb[~finite] = NAN_RGB
    return rgb


def _blown_up(cells: np.ndarray, outline, color) -> np.ndarray:
    """RGB cells as blocks of whole screen pixels, with a 2-pixel line on each edge where
    the (sampled) ``outline`` labels change: the figures' outline trace, drawn in."""
    factor = max(1, PICTURE_SIDE // max(cells.shape[:2]))
    image = np.repeat(np.repeat(cells, factor, 0), factor, 1)
    if outline is not None:
        labels = np.repeat(np.repeat(outline, factor, 0), factor, 1)
        edge = np.zeros(labels.shape, bool)
        rows, cols = labels[:-1] != labels[1:], labels[:, :-1] != labels[:, 1:]
        edge[:-1] |= rows
        edge[1:] |= rows
        edge[:, :-1] |= cols
        edge[:, 1:] |= cols
        image[edge] = hex_to_rgb(color)
    return image


def _with_bar(image: np.ndarray, colorscale: str) -> np.ndarray:
    """The picture with its colour bar (low on the left) underneath, on white."""
    width = image.shape[1]
    bar = np.repeat(_lut(colorscale)[np.linspace(0, 255, width).round().astype(np.intp)]
                    [None], BAR_HEIGHT, 0)
    gap = np.full((BAR_GAP, width, 3), 255, np.uint8)
    return np.concatenate([image, gap, bar])


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB picture as PNG, compressed lightly: large flat areas shrink well anyway, and
    it is encoded on every slider move (the default level takes several times longer)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(out, "PNG", compress_level=1)
    return out.getvalue()


THUMBNAIL_BACKGROUND, THUMBNAIL_FILL, THUMBNAIL_OUTLINE = 245, (99, 140, 220), (230, 120, 20)


def thumbnail(truth, pred) -> np.ndarray:
    """A small RGB uint8 picture of a pair of label maps: the prediction filled in blue,
    the truth's outline (its inner boundary pixels) in orange, on light grey."""
    truth, pred = _same_shape(truth, pred)
    image = np.full((*truth.shape, 3), THUMBNAIL_BACKGROUND, np.uint8)
    image[pred > 0] = THUMBNAIL_FILL
    image[segmentation.find_boundaries(truth > 0, mode="inner")] = THUMBNAIL_OUTLINE
    return image


def sample_strip(samples: dict) -> np.ndarray:
    """Rows of (image | truth | prediction) tiles, as one grey picture in [0, 1]:
    ``samples`` holds equal-length lists of 2-D arrays under those three names."""
    rows = [np.concatenate([image, truth, prediction], axis=1)
            for image, truth, prediction in zip(samples["image"], samples["truth"],
                                                samples["prediction"])]
    return np.concatenate(rows, axis=0).clip(0, 1)


def mask_picture(labels, *, num_classes: int, outline=None, max_side: int = 128) -> np.ndarray:
    """``mask_figure`` as an RGB picture: class colours, the truth outlined in white."""
    arrays = _same_shape(labels) if outline is None else _same_shape(labels, outline)
    cells = overlay_rgb(downsample(arrays[0], max_side)[0], max(num_classes, 2))
    line = None if outline is None else downsample(arrays[1], max_side)[0]
    return _blown_up(cells, line, "#ffffff")


def probability_picture(prob, *, truth_fg, max_side: int = 128) -> np.ndarray:
    """``probability_figure`` as an RGB picture: Viridis from p = 0 to 1, truth outlined,
    the colour bar underneath."""
    prob, truth_fg = _same_shape(prob, truth_fg)
    cells = _colored(downsample(prob.astype(np.float64), max_side)[0], "Viridis", 0.0, 1.0)
    line = downsample(truth_fg.astype(np.uint8), max_side)[0]
    return _with_bar(_blown_up(cells, line, "#ff3d7f"), "Viridis")


def gradient_limit(grad) -> float:
    """The colour scale's half-width: the largest finite |gradient| (tiny when all are 0)."""
    grad = np.asarray(grad)
    finite = np.abs(grad[np.isfinite(grad)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1e-12


def gradient_picture(grad, *, truth_fg, max_side: int = 128, limit: float | None = None,
                     log: bool = False) -> np.ndarray:
    """``gradient_figure`` as an RGB picture: RdBu from −limit (blue, descent pushes p up)
    through white at 0 to +limit (red, pushed down), linear or symmetric log, truth
    outlined in black, bar below. Beyond a given ``limit`` the colours saturate."""
    grad, truth_fg = _same_shape(grad, truth_fg)
    limit = gradient_limit(grad) if limit is None else limit
    scaled = gradient_scaled(downsample(grad, max_side)[0], limit, log)
    cells = _colored(scaled, "RdBu_r", -1.0, 1.0)
    line = downsample(truth_fg.astype(np.uint8), max_side)[0]
    return _with_bar(_blown_up(cells, line, "#000000"), "RdBu_r")


def confusion_map(truth_fg, pred_fg) -> np.ndarray:
    """Per pixel 0 = true negative, 1 = true positive, 2 = false positive, 3 = false
    negative, of two boolean masks of one shape."""
    truth_fg, pred_fg = (np.asarray(a, bool) for a in _same_shape(truth_fg, pred_fg))
    return np.select([truth_fg & pred_fg, pred_fg, truth_fg], [1, 2, 3], 0).astype(np.uint8)


def overlay_figure(truth_fg, pred_fg, *, title: str, max_side: int = 128) -> go.Figure:
    """``overlay_picture`` as a heatmap: hover names each pixel's kind."""
    kinds, step = downsample(confusion_map(truth_fg, pred_fg), max_side)
    x, y = _coords(np.shape(truth_fg), step)
    names = np.array(["true negative", "true positive", "false positive", "false negative"])
    order = ("TN", "TP", "FP", "FN")
    scale = [[edge, OVERLAY_COLORS[order[k]]] for k in range(4)
             for edge in (k / 4, (k + 1) / 4)]
    heat = go.Heatmap(z=kinds, x=x, y=y, zmin=-0.5, zmax=3.5, colorscale=scale,
                      showscale=False, text=names[kinds],
                      hovertemplate="x %{x}, y %{y}<br>%{text}<extra></extra>")
    return _image_figure([heat], title)


def overlay_picture(truth_fg, pred_fg, *, max_side: int = 128) -> np.ndarray:
    """Truth against hard prediction as an RGB picture: true positives, false positives and
    false negatives in ``OVERLAY_COLORS`` (colour-blind safe), true negatives light."""
    kinds = downsample(confusion_map(truth_fg, pred_fg), max_side)[0]
    palette = np.array([hex_to_rgb(OVERLAY_COLORS[k]) for k in ("TN", "TP", "FP", "FN")],
                       np.uint8)
    return _blown_up(palette[kinds], None, None)


def stage_picture(panels, headline: str, lines=()) -> np.ndarray:
    """The stage as one RGB picture for slides: ``panels`` (title, RGB picture) side by side
    on white, ``headline`` large above them and ``lines`` of text below."""
    from PIL import Image, ImageDraw, ImageFont

    gap, pad = 24, 32
    height = max(p.shape[0] for _, p in panels)
    width = sum(p.shape[1] for _, p in panels) + gap * (len(panels) - 1) + 2 * pad
    top, bottom = 110, 40 + 34 * len(lines)
    canvas = Image.new("RGB", (width, top + height + bottom), "white")
    draw = ImageDraw.Draw(canvas)
    big, small = ImageFont.load_default(40), ImageFont.load_default(22)
    draw.text((pad, 20), headline, fill="black", font=big)
    x = pad
    for title, picture in panels:
        draw.text((x, top - 34), title, fill="black", font=small)
        canvas.paste(Image.fromarray(np.ascontiguousarray(picture, np.uint8)), (x, top))
        x += picture.shape[1] + gap
    for k, line in enumerate(lines):
        draw.text((pad, top + height + 20 + 34 * k), line, fill="#333333", font=small)
    return np.asarray(canvas)


# ------------------------------------------------------------ Lovász step-through

LOVASZ_HEIGHT = 560
TAKEN_OPACITY, WAITING_OPACITY = 1.0, 0.3
FG_COLOR = CLASS_COLORS[1]
# pixel categories of the step-through mask: background / foreground, waiting / taken
_PIXEL_COLORS = ("#e9ecef", "#ffd8a8", BACKGROUND_BAR, FG_COLOR)


def _lovasz_step(steps: dict, step) -> int:
    n = len(steps["order"])
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) \
            or not 0 <= step < n:
        raise ValueError(f"step must be an integer from 0 to {n - 1} (the 0-based rank of the "
                         f"last pixel taken), got {step!r}")
    return int(step)


def _lovasz_hover(steps: dict) -> tuple[np.ndarray, str]:
    """Per sorted pixel: (row, col, truth, p, error, weight, contribution) and a template."""
    data = np.stack([steps[k] for k in ("rows", "cols", "truth", "prob", "errors", "weights",
                                        "contribution")], -1).astype(np.float32)
    template = ("pixel (row %{customdata[0]}, col %{customdata[1]})<br>"
                "truth %{customdata[2]:.3~g}, p %{customdata[3]:.4f}<br>"
                "error %{customdata[4]:.4f}<br>weight %{customdata[5]:.4f}<br>"
                "contribution %{customdata[6]:.4f}")
    return data, template


def lovasz_figure(steps: dict, *, step: int, title: str = "") -> go.Figure:
    """The Lovász step-through of :func:`explorer.analysis.lovasz_steps` over the order in
    which pixels are taken (x, counted from 1 = the largest error, as the page's slider
    counts), in three stacked panels:

    1. the sorted errors as bars, orange where the pixel is truth foreground (g >= 0.5),
       grey where background (traces "error (truth fg)" and "error (truth bg)");
    2. the weights w_k = J_k - J_{k-1} (bars, left axis) and the running Jaccard loss
       J_k (line, right axis);
    3. each pixel's contribution relu(e)·w (bars, left axis) and the cumulative loss
       (line, right axis).

    The lines have their own axis because the bars are far smaller (the weights sum to 1).

    ``step`` is the 0-based index of the last pixel taken, so ``step + 1`` pixels are
    taken: full colour, the rest faded. A dashed line marks the last one taken in every
    panel and a "current step" marker sits on its error, running Jaccard and cumulative
    loss; the heading says "pixels taken: k of n". Hover gives the pixel's (row, col),
    truth, p, error, weight and contribution.
    """
    step = _lovasz_step(steps, step)
    n = len(steps["order"])
    rank = np.arange(n)
    taken = np.where(rank <= step, TAKEN_OPACITY, WAITING_OPACITY)
    order = rank + 1  # as shown: the first pixel taken is 1
    data, hover = _lovasz_hover(steps)
    fg = np.asarray(steps["truth"]) >= 0.5

    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[0.4, 0.3, 0.3],
                        specs=[[{}], [{"secondary_y": True}], [{"secondary_y": True}]],
                        subplot_titles=("errors, sorted (largest first)",
                                        "weights = steps of the running Jaccard loss",
                                        "contribution relu(error)·weight and loss so far"))

    def bars(name, y, color, where=slice(None), row=1):
        fig.add_trace(go.Bar(
            x=order[where], y=np.asarray(y, np.float64)[where], name=name,
            marker=dict(color=color, opacity=taken[where], line=dict(width=0)),
            customdata=data[where],
            hovertemplate=f"taken no. %{{x}}<br>{hover}<extra>{name}</extra>"),
            row=row, col=1)

    def line(name, y, color, row):
        fig.add_trace(go.Scatter(
            x=order, y=np.asarray(y, np.float64), name=name, mode="lines",
            line=dict(color=color, width=2, shape="hv"),
            hovertemplate=f"after no. %{{x}}: {name} %{{y:.4f}}<extra></extra>"),
            row=row, col=1, secondary_y=True)  # drawn over the bars, on its own axis

    bars("error (truth fg)", steps["errors"], FG_COLOR, fg)
    bars("error (truth bg)", steps["errors"], BACKGROUND_BAR, ~fg)
    bars("weight", steps["weights"], CLASS_COLORS[2], row=2)
    line("running Jaccard", steps["running_jaccard"], "#212529", 2)
    bars("contribution", steps["contribution"], CLASS_COLORS[3], row=3)
    line("cumulative loss", steps["cumulative_loss"], "#212529", 3)
    for row, key in ((1, "errors"), (2, "running_jaccard"), (3, "cumulative_loss")):
        fig.add_trace(go.Scatter(
            x=[step + 1], y=[float(steps[key][step])], mode="markers", name="current step",
            legendgroup="current step", showlegend=row == 1,
            marker=dict(symbol="diamond", size=11, color="#f2c200",
                        line=dict(color="black", width=1)),
            customdata=data[step:step + 1],
            hovertemplate=f"taken no. %{{x}} (the last so far)<br>{hover}<extra></extra>"),
            row=row, col=1, secondary_y=True if row > 1 else None)
    fig.add_vline(x=step + 1, row="all", col=1, line=dict(color="grey", dash="dash", width=1))

    summary = (f"pixels taken: {step + 1} of {n} · the last, pixel (row {steps['rows'][step]}, "
               f"col {steps['cols'][step]}) · loss so far {steps['cumulative_loss'][step]:.4f} "
               f"of {steps['loss']:.4f}")
    fig.update_layout(
        title=f"{title}<br><sup>{summary}</sup>" if title else summary,
        height=LOVASZ_HEIGHT, margin=dict(MARGIN, t=80), bargap=0.05, barmode="overlay",
        legend=dict(orientation="h", y=-0.12, yanchor="top"))
    fig.update_yaxes(title_text="error", row=1, col=1)
    fig.update_yaxes(title_text="weight", row=2, col=1, secondary_y=False)
    fig.update_yaxes(title_text="Jaccard", row=2, col=1, secondary_y=True, range=[0, 1.05],
                     dtick=0.25, showgrid=False)
    fig.update_yaxes(title_text="contribution", row=3, col=1, secondary_y=False)
    fig.update_yaxes(title_text="loss so far", row=3, col=1, secondary_y=True,
                     rangemode="tozero", tickformat=".2f", showgrid=False)
    fig.update_xaxes(title_text="order taken (1 = largest error)", row=3, col=1)
    return fig


def lovasz_pixels_figure(steps: dict, shape, *, step: int, title: str = "",
                         height: int = IMAGE_HEIGHT) -> go.Figure:
    """The small mask of the step-through: each pixel shows when it is taken, counted
    from 1 (the largest error; written on the pixel when the cells are big enough to read,
    always in the hover), coloured by truth (orange foreground, grey background), faded
    until taken (the first ``step + 1``). A black square frames the last pixel taken
    (0-based index ``step``), a blue one the next; the truth outline is drawn in black.
    """
    step = _lovasz_step(steps, step)
    n = len(steps["order"])
    if len(shape) != 2 or int(shape[0]) * int(shape[1]) != n:
        raise ValueError(f"shape must be the (H, W) of the steps' {n} pixels, got {shape!r}")
    height_px, width_px = int(shape[0]), int(shape[1])

    def as_image(sorted_values):  # sorted order back to the pixel grid
        values = np.asarray(sorted_values)
        grid = np.empty_like(values)
        grid[steps["order"]] = values
        return grid.reshape(height_px, width_px, *values.shape[1:])

    rank = as_image(np.arange(n))
    fg = as_image(np.asarray(steps["truth"]) >= 0.5)
    category = fg.astype(np.uint8) + 2 * (rank <= step)
    data, hover = _lovasz_hover(steps)
    # per pixel: the hover columns of its sorted entry, then when it is taken (column 7)
    custom = np.concatenate([as_image(data), rank[..., None] + 1], -1)
    scale = []
    for k, color in enumerate(_PIXEL_COLORS):  # value k -> its colour (zmin 0, zmax 3)
        scale += [[max(0.0, (k - 0.5) / 3), color], [min(1.0, (k + 0.5) / 3), color]]
    cell = (height - 60) / max(height_px, width_px)  # pixels per cell on screen, about
    font = min(12, int(cell / (0.65 * len(str(n)))))
    text = dict(text=(rank + 1).astype(str), texttemplate="%{text}", textfont=dict(size=font)) \
        if font >= 6 else {}  # too small to read: the hover still gives the order
    heat = go.Heatmap(z=category, x=np.arange(width_px), y=np.arange(height_px), zmin=0,
                      zmax=3, colorscale=scale, showscale=False, customdata=custom,
                      hovertemplate=f"taken no. %{{customdata[7]}}<br>{hover}<extra></extra>",
                      **text)
    fig = _image_figure([heat, _outline_trace(fg.astype(np.uint8), 1, "black")], title)
    frames = [("current pixel", step, "black")]
    if step + 1 < n:
        frames.append(("next pixel", step + 1, CLASS_COLORS[2]))
    for name, k, color in frames:
        r, c = int(steps["rows"][k]), int(steps["cols"][k])
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                      name=name, line=dict(color=color, width=3))
    fig.update_layout(height=height)
    return fig


# ------------------------------------------------------------- beyond overlap

SMALL_CHART_HEIGHT = 260


def reliability_figure(calibration, *, title: str = "Reliability") -> go.Figure:
    """The reliability diagram of ``metrics.expected_calibration_error``: per confidence
    bin the share of pixels predicted right (bars, at the bin's mean confidence; empty bins
    left out) against the diagonal of perfect calibration; hover gives the pixel count."""
    filled = np.asarray(calibration.count) > 0
    edges = np.asarray(calibration.edges)
    width = float(np.diff(edges).min())
    fig = go.Figure([
        go.Bar(x=np.asarray(calibration.confidence)[filled],
               y=np.asarray(calibration.accuracy)[filled], width=width * 0.9,
               marker_color=OVERLAY_COLORS["TP"], name="share right",
               customdata=np.asarray(calibration.count)[filled],
               hovertemplate="confidence %{x:.3f}<br>right %{y:.3f}<br>%{customdata:,} pixels"
                             "<extra></extra>"),
        go.Scatter(x=[0.5, 1], y=[0.5, 1], mode="lines", name="calibrated",
                   line=dict(color="#495057", dash="dash"), hoverinfo="skip"),
    ])
    fig.update_layout(title=title, height=SMALL_CHART_HEIGHT, margin=MARGIN,
                      xaxis=dict(title="confidence max(p, 1 − p)", range=[0.5, 1.0]),
                      yaxis=dict(title="share predicted right", range=[0, 1.02]),
                      legend=dict(orientation="h", y=-0.3), bargap=0)
    return fig


def slice_dice_figure(per_slice, volume: float, *, current: int | None = None,
                      mean: float | None = None) -> go.Figure:
    """Hard Dice of each slice (bars; a slice empty in both is 0/0 and left blank) beside
    the volume's Dice (a line) and the mean over the defined slices (a dashed line)."""
    per_slice = np.asarray(per_slice, np.float64)
    index = np.arange(len(per_slice))
    colors = [OVERLAY_COLORS["FP"] if k == current else OVERLAY_COLORS["TP"] for k in index]
    fig = go.Figure(go.Bar(x=index, y=per_slice, marker_color=colors, name="each slice",
                           hovertemplate="slice %{x}<br>Dice %{y:.3f}<extra></extra>"))
    lines = [(volume, "the volume", "solid")]
    if mean is not None and math.isfinite(mean):
        lines.append((mean, "mean over slices", "dash"))
    for value, name, dash in lines:
        if math.isfinite(value):
            fig.add_trace(go.Scatter(x=[-0.5, len(per_slice) - 0.5], y=[value, value],
                                     mode="lines", name=f"{name}: {value:.3f}",
                                     line=dict(color="#212529", dash=dash)))
    fig.update_layout(title="Dice per slice vs the whole volume", height=SMALL_CHART_HEIGHT,
                      margin=MARGIN, xaxis_title="slice", yaxis=dict(title="Dice",
                                                                     range=[0, 1.02]),
                      legend=dict(orientation="h", y=-0.3))
    return fig
