"""Plotly figures for the explorer: masks, probabilities and gradients as heatmaps
with the truth outline drawn over them, per-class bars, and sweep curves.

Pure functions of numpy arrays (no Streamlit, no TensorFlow). Images are shown at
most ``max_side`` pixels a side by integer stride sampling, so every displayed
value is the exact value of a real pixel and hover gives its original x, y.
Arrays go on the wire as small dtypes (uint8 labels, float32 values), which
plotly sends base64-encoded. Per-pixel hover extras ride in the heatmap's own
arrays: the truth (0/1 or class) in ``text``, p in ``customdata`` (gradient figure).
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from explorer.masks import CLASS_COLORS

IMAGE_HEIGHT = 300
CHART_HEIGHT = 300
MARGIN = dict(l=10, r=10, t=40, b=10)
BACKGROUND_BAR = "#868e96"  # class 0 is black in images; grey so its bar shows
_COLORBAR = dict(thickness=12, len=0.9)


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


def gradient_figure(grad, *, prob, truth_fg, title: str, wrt_label: str = "∂L/∂p",
                    max_side: int = 128) -> go.Figure:
    """Signed gradient per pixel on a diverging scale (blue: descent pushes up, red: down)."""
    grad, prob, truth_fg = _same_shape(grad, prob, truth_fg)
    z, step = downsample(grad.astype(np.float32), max_side)
    x, y = _coords(grad.shape, step)
    truth = downsample(truth_fg.astype(np.uint8), max_side)[0]
    p = downsample(prob.astype(np.float32), max_side)[0]
    finite = np.abs(grad[np.isfinite(grad)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1e-12
    heat = go.Heatmap(
        z=z, x=x, y=y, zmid=0, zmin=-limit, zmax=limit, colorscale="RdBu_r",
        text=truth, customdata=p,
        colorbar=dict(_COLORBAR, title=f"{wrt_label}<br>blue: pushed up"
                                       "<br>red: pushed down"),
        hovertemplate=f"x %{{x}}, y %{{y}}<br>truth %{{text}}"
                      f"<br>p %{{customdata:.4f}}<br>{wrt_label} %{{z:.3e}}"
                      "<extra></extra>")
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


def sweep_figure(x, curves: dict, *, current=None, x_title: str, y_title: str,
                 log_x: bool = False, title: str = "") -> go.Figure:
    """Curves against a swept parameter, with a dashed line at the current value.

    One trace per curve, then (if ``current`` is given) a trace named "current":
    a dashed vertical line spanning the curves' y range. NaN values leave gaps.
    Hover gives each point's exact x and y. On a log x axis, x <= 0 (smooth = 0)
    is drawn at a stand-in 1.5 decades left of the smallest positive x, and that
    tick is labelled "0"; the other ticks are powers of ten.
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
    hover = f"{x_title} = %{{customdata:.3g}}<br>{y_title} = %{{y:.4f}}"
    fig = go.Figure([go.Scatter(x=shown, y=np.asarray(y, dtype=float), customdata=x,
                                name=str(label), mode="lines+markers", connectgaps=False,
                                hovertemplate=hover) for label, y in curves.items()])
    if current is not None:  # a trace, not a shape: shapes on log axes differ by version
        ys = np.concatenate([[]] + [np.ravel(y).astype(float) for y in curves.values()])
        ys = ys[np.isfinite(ys)] if np.isfinite(ys).any() else np.array([0.0, 1.0])
        pad = 0.05 * ((ys.max() - ys.min()) or 1.0)
        at = zero_at if zero_at is not None and current <= 0 else float(current)
        fig.add_trace(go.Scatter(
            x=[at, at], y=[ys.min() - pad, ys.max() + pad], mode="lines+text",
            text=["", "current"], textposition="top center", cliponaxis=False,
            line=dict(color="grey", dash="dash"), hoverinfo="skip", showlegend=False,
            name="current"))
    fig.update_layout(title=title, height=CHART_HEIGHT, margin=MARGIN, xaxis=xaxis,
                      yaxis=dict(title=y_title),
                      legend=dict(orientation="h", y=-0.3, yanchor="top"))
    return fig


def overlay_rgb(labels, num_classes: int) -> np.ndarray:
    """A label map as an RGB uint8 image in the class colours (for thumbnails)."""
    palette = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)]
                        for c in CLASS_COLORS[:num_classes]], dtype=np.uint8)
    return palette[np.clip(np.asarray(labels), 0, num_classes - 1)]
