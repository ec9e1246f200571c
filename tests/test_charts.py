"""Tests for ``explorer.charts``: what the figures contain, not how they look."""
import json
import subprocess
import sys

import numpy as np
import pytest

from explorer import charts
from explorer.masks import CLASS_COLORS, hex_to_rgb


def _rgb(color: str) -> tuple[int, int, int]:
    """'#rrggbb' or 'rgb(r,g,b)' as a tuple of ints."""
    if color.startswith("#"):
        return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
    return tuple(int(float(v)) for v in color[color.index("(") + 1:-1].split(","))


def _color_at(colorscale, v: float) -> str:
    """The colour a stepped colorscale gives the normalised value ``v``."""
    return [c for pos, c in colorscale if pos <= v][-1]


def _square_truth(size=64, rows=(10, 20), cols=(10, 30)):
    truth = np.zeros((size, size), bool)
    truth[rows[0]:rows[1], cols[0]:cols[1]] = True
    return truth


def _inputs(size=512, seed=0):
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0.01, 0.99, (size, size)).astype(np.float32)
    truth = _square_truth(size, (size // 4, size // 2), (size // 4, 3 * size // 4))
    grad = rng.normal(0, 1e-3, (size, size)).astype(np.float32)
    return grad, prob, truth


# ------------------------------------------------------------------- downsample


def test_downsample_is_exact_stride_sampling():
    a = np.arange(512 * 512, dtype=np.float64).reshape(512, 512) / 7
    sampled, step = charts.downsample(a, max_side=128)
    assert step == 4 and sampled.shape == (128, 128)
    np.testing.assert_array_equal(sampled, a[::4, ::4])


@pytest.mark.parametrize("shape, max_side, step, out", [
    ((300, 130), 128, 3, (100, 44)),
    ((100, 60), 128, 1, (100, 60)),
    ((129, 5), 128, 2, (65, 3)),
])
def test_downsample_step_and_shape(shape, max_side, step, out):
    sampled, got = charts.downsample(np.zeros(shape), max_side)
    assert got == step and sampled.shape == out and max(out) <= max_side


def test_downsample_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        charts.downsample(np.zeros((4, 4, 3)))


# ------------------------------------------------------------- gradient figure


def test_gradient_scale_is_symmetric_over_the_full_array():
    grad, prob, truth = _inputs()
    grad[1, 1] = -0.5  # the extreme sits on a pixel the stride sampling skips
    fig = charts.gradient_figure(grad, prob=prob, truth_fg=truth, title="g")
    heat = fig.data[0]
    assert heat.zmid == 0
    assert heat.zmin == pytest.approx(-0.5) and heat.zmax == pytest.approx(0.5)
    assert heat.zmin == -heat.zmax
    assert np.abs(heat.z).max() < 0.5  # not in the displayed sample, still sets the scale


def test_gradient_scale_all_zero_is_tiny_but_valid():
    _, prob, truth = _inputs(32)
    fig = charts.gradient_figure(np.zeros((32, 32)), prob=prob, truth_fg=truth, title="g")
    assert (fig.data[0].zmin, fig.data[0].zmax) == (-1e-12, 1e-12)


def test_gradient_colours_and_legend_say_which_way_descent_pushes():
    grad, prob, truth = _inputs(64)
    fig = charts.gradient_figure(grad, prob=prob, truth_fg=truth, title="g",
                                 wrt_label="∂L/∂logit")
    heat = fig.data[0]
    title = heat.colorbar.title.text
    assert "∂L/∂logit" in title
    assert "blue: pushed up" in title and "red: pushed down" in title
    # negative end (descent raises p) is blue, positive end is red, middle is pale
    low, high = _rgb(heat.colorscale[0][1]), _rgb(heat.colorscale[-1][1])
    assert low[2] > low[0] and high[0] > high[2]
    assert min(_rgb(_color_at(heat.colorscale, 0.5))) > 200


def test_gradient_hover_carries_exact_pixel_values():
    grad, prob, truth = _inputs()
    fig = charts.gradient_figure(grad, prob=prob, truth_fg=truth, title="g")
    heat = fig.data[0]
    z, custom, text = np.asarray(heat.z), np.asarray(heat.customdata), np.asarray(heat.text)
    assert z.shape == custom.shape == text.shape == (128, 128)
    for i, j in [(0, 0), (37, 90), (127, 127), (64, 40)]:
        y, x = heat.y[i], heat.x[j]
        assert (y, x) == (4 * i, 4 * j)  # hover shows the original pixel coordinates
        assert z[i, j] == grad[y, x]
        assert custom[i, j] == prob[y, x]
        assert text[i, j] == int(truth[y, x])
    for token in ("%{x}", "%{y}", "truth %{text}", "p %{customdata:.4f}", "%{z:.3e}"):
        assert token in heat.hovertemplate


def test_gradient_figure_json_is_small_and_binary():
    grad, prob, truth = _inputs(256)
    text = charts.gradient_figure(grad, prob=prob, truth_fg=truth, title="g").to_json()
    assert len(text) < 300_000
    data = json.loads(text)["data"][0]
    assert set(data["z"]) >= {"bdata", "dtype"}  # base64, not a list of lists


def test_shape_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="one shape"):
        charts.gradient_figure(np.zeros((8, 8)), prob=np.zeros((8, 9)),
                               truth_fg=np.zeros((8, 8)), title="g")


# ------------------------------------------------------------------- image layout


@pytest.mark.parametrize("make", [
    lambda g, p, t: charts.gradient_figure(g, prob=p, truth_fg=t, title="T"),
    lambda g, p, t: charts.probability_figure(p, truth_fg=t, title="T"),
    lambda g, p, t: charts.mask_figure(t.astype(int), num_classes=2, title="T", outline=t),
])
def test_image_figures_are_small_square_pixel_images(make):
    fig = make(*_inputs())
    layout = fig.layout
    assert layout.title.text == "T"
    assert 280 <= layout.height <= 320
    assert (layout.margin.l, layout.margin.r, layout.margin.t, layout.margin.b) == (10, 10, 40, 10)
    assert layout.yaxis.autorange == "reversed" and layout.yaxis.scaleanchor == "x"
    for axis in (layout.xaxis, layout.yaxis):
        assert axis.showticklabels is False and axis.ticks == ""
    heat = fig.data[0]
    assert heat.type == "heatmap" and max(np.shape(heat.z)) <= 128
    assert len(fig.data) == 2 and fig.data[1].name == "truth outline"


# ------------------------------------------------------------------ outline


def _segments(trace):
    """Outline trace points as an array of (x0, y0, x1, y1) segments."""
    x, y = np.asarray(trace.x, float), np.asarray(trace.y, float)
    assert np.isnan(x[2::3]).all() and np.isnan(y[2::3]).all()
    return np.stack([x[0::3], y[0::3], x[1::3], y[1::3]], 1)


def test_outline_runs_along_the_truth_pixel_edges():
    truth = _square_truth()  # rows 10..19, columns 10..29
    fig = charts.mask_figure(np.zeros((64, 64), int), num_classes=2, title="m", outline=truth)
    seg = _segments(fig.data[1])
    horizontal = seg[seg[:, 1] == seg[:, 3]]
    vertical = seg[seg[:, 0] == seg[:, 2]]
    assert len(horizontal) + len(vertical) == len(seg)
    assert set(horizontal[:, 1]) == {9.5, 19.5} and set(vertical[:, 0]) == {9.5, 29.5}
    length = np.abs(seg[:, 2] - seg[:, 0]).sum() + np.abs(seg[:, 3] - seg[:, 1]).sum()
    assert length == 2 * (10 + 20)  # the perimeter, runs merged, nothing doubled
    assert len(seg) == 4


def test_outline_is_in_original_pixel_coordinates_when_sampled():
    truth = _square_truth(256, (40, 80), (40, 120))
    fig = charts.probability_figure(np.full((256, 256), 0.5), truth_fg=truth, title="p",
                                    max_side=64)  # step 4
    seg = _segments(fig.data[1])
    assert set(seg[:, 1][seg[:, 1] == seg[:, 3]]) == {38.0, 78.0}  # (10-0.5)*4, (20-0.5)*4
    assert set(seg[:, 0][seg[:, 0] == seg[:, 2]]) == {38.0, 118.0}


def test_outline_between_two_classes_is_drawn_once():
    labels = np.zeros((32, 32), int)
    labels[:, 16:] = 1
    labels[8:24, 4:16] = 2  # class 2 touches class 1 along column 15|16
    seg = _segments(charts.mask_figure(labels, num_classes=3, title="m", outline=labels).data[1])
    length = np.abs(seg[:, 2] - seg[:, 0]).sum() + np.abs(seg[:, 3] - seg[:, 1]).sum()
    assert length == 32 + (12 + 12 + 16)  # the 1|0 and 1|2 line, plus class 2's other sides


# ------------------------------------------------------------------ mask figure


@pytest.mark.parametrize("num_classes", [2, 3, 6])
def test_mask_colours_follow_class_colors(num_classes):
    labels = np.arange(num_classes).repeat(4)[None, :].repeat(3, 0)
    fig = charts.mask_figure(labels, num_classes=num_classes, title="m")
    heat = fig.data[0]
    assert len(fig.data) == 1 and heat.showscale is False
    assert (heat.zmin, heat.zmax) == (0, num_classes - 1)
    for k in range(num_classes):
        assert _color_at(heat.colorscale, k / (num_classes - 1)).lower() == CLASS_COLORS[k]
    assert "class %{z}" in heat.hovertemplate
    np.testing.assert_array_equal(heat.z, labels)


def test_mask_with_outline_hovers_the_truth_class():
    pred = np.zeros((20, 20), int)
    truth = _square_truth(20, (5, 10), (5, 10)).astype(int)
    fig = charts.mask_figure(pred, num_classes=2, title="m", outline=truth)
    assert len(fig.data) == 2
    np.testing.assert_array_equal(fig.data[0].text, truth)
    assert "truth %{text}" in fig.data[0].hovertemplate


# ----------------------------------------------------------- probability figure


def test_probability_figure_scale_and_hover():
    _, prob, truth = _inputs()
    heat = charts.probability_figure(prob, truth_fg=truth, title="p").data[0]
    assert (heat.zmin, heat.zmax) == (0, 1) and heat.colorbar.title.text == "p"
    np.testing.assert_array_equal(heat.z, prob[::4, ::4])
    np.testing.assert_array_equal(heat.text, truth[::4, ::4].astype(np.uint8))
    assert "truth %{text}" in heat.hovertemplate and "p %{z" in heat.hovertemplate


# ------------------------------------------------------------------ class bars


def test_class_bars_colours_nan_and_exclusion():
    fig = charts.class_bars([0.9, np.nan, 0.25], title="dice", weights=[0.5, 2.0, 1.0],
                            included=[False, True, True])
    bar = fig.data[0]
    assert list(bar.y) == [0.9, 0.0, 0.25]
    assert list(bar.text) == ["0.900", "0/0", "0.250"]
    assert list(bar.x) == ["background (excluded)", "class 1", "class 2"]
    colors = list(bar.marker.color)
    assert colors[1:] == list(CLASS_COLORS[1:3])
    grey = _rgb(colors[0])  # class 0 is black in images; its bar is a visible mid grey
    assert max(grey) - min(grey) < 30 and 80 < np.mean(grey) < 200
    assert bar.marker.opacity[0] < bar.marker.opacity[1] == 1
    assert "weight 0.5" in bar.hovertext[0] and "weight 2" in bar.hovertext[1]
    assert tuple(fig.layout.yaxis.range) == (0, 1)


def test_class_bars_names_and_no_weights():
    fig = charts.class_bars(np.array([0.1, 0.2]), title="x", class_names=["bg", "cell"])
    bar = fig.data[0]
    assert list(bar.x) == ["bg", "cell"] and all("weight" not in h for h in bar.hovertext)


# --------------------------------------------------------------------- sweeps


def test_sweep_one_trace_per_curve_plus_current():
    x = np.linspace(0.5, 1.0, 11)
    curves = {"Dice": np.linspace(0.4, 0.1, 11), "IoU": np.r_[np.nan, np.linspace(0.5, 0.2, 10)]}
    fig = charts.sweep_figure(x, curves, current=0.9, x_title="confidence", y_title="loss")
    assert len(fig.data) == 3
    assert [t.name for t in fig.data] == ["Dice", "IoU", "current"]
    assert all(t.mode == "lines+markers" and t.connectgaps is False for t in fig.data[:2])
    assert np.isnan(fig.data[1].y[0])  # NaN kept: a gap, not a zero
    marker = fig.data[2]
    assert list(marker.x) == [0.9, 0.9] and marker.line.dash == "dash"
    assert "current" in marker.text
    assert marker.y[0] < 0.1 and marker.y[1] > 0.5  # spans the curves
    assert fig.layout.xaxis.title.text == "confidence"
    assert fig.layout.yaxis.title.text == "loss"
    no_current = charts.sweep_figure(x, curves, x_title="c", y_title="l")
    assert len(no_current.data) == 2


def test_sweep_log_axis_places_zero_left_and_labels_it():
    x = np.r_[0.0, np.logspace(-6, 3, 28)]
    fig = charts.sweep_figure(x, {"Dice": np.linspace(0, 1, 29)}, current=0.0,
                              x_title="smooth", y_title="loss", log_x=True)
    axis = fig.layout.xaxis
    assert axis.type == "log"
    plotted = np.asarray(fig.data[0].x)
    assert 0 < plotted[0] < 1e-6 and np.all(plotted[1:] == x[1:])
    assert axis.ticktext[0] == "0" and axis.tickvals[0] == plotted[0]
    assert np.asarray(fig.data[0].customdata)[0] == 0  # hover shows the true x
    assert list(fig.data[1].x) == [plotted[0]] * 2  # current = 0 drawn at the stand-in
    assert "1" in axis.ticktext


def test_sweep_colours_each_loss_as_asked_and_can_put_y_on_a_log_axis():
    x = np.linspace(0.5, 1.0, 5)
    curves = {"Dice loss": np.array([0.0, 0.1, 0.2, 0.3, 0.4]), "Lovász": np.linspace(1, 5, 5)}
    colors = {"Dice loss": charts.LOSS_COLORS["dice_loss"], "Lovász": charts.LOSS_COLORS["lovasz"]}
    fig = charts.sweep_figure(x, curves, current=0.75, x_title="c", y_title="loss",
                              colors=colors, log_y=True)
    assert [t.line.color for t in fig.data[:2]] == [colors["Dice loss"], colors["Lovász"]]
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == "loss (log)"
    # ticks labelled in full (plotly's own would read "2" for 0.2), 1-2-5 within 2 decades
    assert list(fig.layout.yaxis.ticktext) == ["0.1", "0.2", "0.5", "1", "2", "5"]
    dice = np.asarray(fig.data[0].y, float)
    assert np.isnan(dice[0]) and np.allclose(dice[1:], [0.1, 0.2, 0.3, 0.4])  # 0: a gap
    low, high = fig.data[2].y  # the current line spans the positive values, by a factor
    assert 0 < low < 0.1 and high > 5
    linear = charts.sweep_figure(x, curves, x_title="c", y_title="loss")
    assert linear.layout.yaxis.type is None and linear.data[0].line.color is None
    assert len(set(charts.LOSS_COLORS.values())) == len(charts.LOSS_COLORS)  # one each


# ------------------------------------------------------------------ thumbnails


def test_overlay_rgb_uses_class_colors():
    labels = np.array([[0, 1], [2, 5]])
    image = charts.overlay_rgb(labels, 6)
    assert image.dtype == np.uint8 and image.shape == (2, 2, 3)
    for (i, j), k in np.ndenumerate(labels):
        assert tuple(image[i, j]) == _rgb(CLASS_COLORS[k])


def test_module_imports_neither_streamlit_nor_tensorflow():
    code = ("import sys, explorer.charts; "
            "print([m for m in ('streamlit', 'tensorflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert out.stdout.strip() == "[]"


def test_sweep_log_axis_without_zero_or_within_a_decade():
    fig = charts.sweep_figure([2.0, 3.0, 5.0], {"a": [0.1, 0.2, 0.3]}, current=3.0,
                              x_title="r", y_title="l", log_x=True)
    assert "0" not in fig.layout.xaxis.ticktext and len(fig.layout.xaxis.tickvals) == 2
    assert list(fig.data[0].x) == [2.0, 3.0, 5.0] and list(fig.data[1].x) == [3.0, 3.0]
    with pytest.raises(ValueError, match="x > 0"):
        charts.sweep_figure([0.0], {"a": [1.0]}, x_title="s", y_title="l", log_x=True)


# --------------------------------------------------------------------- pictures


def _scale_color(colorscale: str, t: float) -> np.ndarray:
    """plotly's own colour for the normalised value ``t`` (the reference for the LUT)."""
    import plotly.colors
    return np.array(plotly.colors.unlabel_rgb(plotly.colors.sample_colorscale(colorscale, [t])[0]))


def _cell(image, factor, row, col):
    """The screen-pixel block of cell (row, col), checked to be one colour."""
    block = image[row * factor:(row + 1) * factor, col * factor:(col + 1) * factor]
    assert (block == block[0, 0]).all()
    return block[0, 0].astype(int)


def test_gradient_picture_colours_each_cell_by_its_value():
    grad = np.zeros((64, 64))
    grad[2, 3], grad[4, 5], grad[6, 7], grad[8, 9] = 2e-3, -1e-3, -2e-3, np.nan
    image = charts.gradient_picture(grad, truth_fg=np.zeros((64, 64), bool))
    factor = 4  # 64 cells blown up to at least PICTURE_SIDE = 256
    assert image.dtype == np.uint8
    assert image.shape == (256 + charts.BAR_GAP + charts.BAR_HEIGHT, 256, 3)
    np.testing.assert_allclose(_cell(image, factor, 2, 3), _scale_color("RdBu_r", 1.0), atol=1)
    np.testing.assert_allclose(_cell(image, factor, 6, 7), _scale_color("RdBu_r", 0.0), atol=1)
    np.testing.assert_allclose(_cell(image, factor, 4, 5), _scale_color("RdBu_r", 0.25), atol=2)
    np.testing.assert_allclose(_cell(image, factor, 0, 0), _scale_color("RdBu_r", 0.5), atol=1)
    assert tuple(_cell(image, factor, 8, 9)) == charts.NAN_RGB  # 0/0 is not a colour
    assert charts.gradient_limit(grad) == 2e-3


def test_gradient_picture_all_zero_is_white_not_an_error():
    image = charts.gradient_picture(np.zeros((10, 10)), truth_fg=np.zeros((10, 10), bool))
    np.testing.assert_allclose(image[0, 0], _scale_color("RdBu_r", 0.5), atol=1)


def test_picture_outline_runs_along_the_truth_pixel_edges():
    truth = _square_truth(64, rows=(10, 20), cols=(10, 30))
    image = charts.gradient_picture(np.zeros((64, 64)), truth_fg=truth)
    black = (image[:256] == 0).all(-1)
    factor = 4
    # two screen pixels straddle each edge: rows 39 and 40 above row 10 of the truth
    assert black[10 * factor - 1, 10 * factor:30 * factor].all()
    assert black[10 * factor, 10 * factor:30 * factor].all()
    assert black[20 * factor - 1, 10 * factor + 3] and black[20 * factor, 10 * factor + 3]
    assert black[15 * factor, 10 * factor - 1] and black[15 * factor, 30 * factor]
    assert not black[15 * factor, 20 * factor]  # inside
    assert not black[5 * factor, 20 * factor]  # outside
    # nothing but the square's edges: 2-pixel bands, overlapping in one pixel per corner
    assert black.sum() == 2 * 2 * (10 + 20) * factor - 4


def test_picture_samples_large_masks_exactly_like_the_figures():
    grad, prob, truth = _inputs(512)
    image = charts.gradient_picture(grad, truth_fg=np.zeros_like(truth))
    cells, step = charts.downsample(grad, 128)
    assert step == 4 and image.shape[1] == 128 * 2
    limit = charts.gradient_limit(grad)  # over the full array, not only the sampled cells
    assert limit == np.abs(grad).max()
    for r, c in [(0, 0), (17, 99), (127, 127)]:
        t = (cells[r, c] + limit) / (2 * limit)
        np.testing.assert_allclose(_cell(image, 2, r, c), _scale_color("RdBu_r", t), atol=2)


def test_probability_picture_scale_outline_and_bar():
    prob = np.zeros((32, 32))
    prob[:, 16:] = 1.0
    truth = _square_truth(32, rows=(4, 8), cols=(2, 6))
    image = charts.probability_picture(prob, truth_fg=truth)
    factor = 8  # 32 cells to 256 screen pixels
    np.testing.assert_array_equal(_cell(image, factor, 20, 3), _rgb("#440154"))  # p = 0
    np.testing.assert_array_equal(_cell(image, factor, 20, 20), _rgb("#fde725"))  # p = 1
    assert tuple(image[4 * factor, 3 * factor]) == _rgb("#ff3d7f")  # the truth's top edge
    bar = image[-charts.BAR_HEIGHT:]
    assert (bar == bar[0]).all()  # one row repeated
    np.testing.assert_array_equal(bar[0, 0], _rgb("#440154"))  # low on the left
    np.testing.assert_array_equal(bar[0, -1], _rgb("#fde725"))
    assert (image[256:256 + charts.BAR_GAP] == 255).all()


@pytest.mark.parametrize("num_classes", [2, 4])
def test_mask_picture_uses_class_colours_and_a_white_truth_outline(num_classes):
    labels = np.zeros((48, 48), np.int32)
    labels[10:20, 10:20] = num_classes - 1
    image = charts.mask_picture(labels, num_classes=num_classes)
    assert image.shape == (240, 240, 3)  # no bar: classes are not a scale
    factor = 5  # 48 cells: the largest whole factor within 256
    np.testing.assert_array_equal(_cell(image, factor, 0, 0), _rgb(CLASS_COLORS[0]))
    np.testing.assert_array_equal(_cell(image, factor, 15, 15),
                                  _rgb(CLASS_COLORS[num_classes - 1]))
    truth = np.zeros((48, 48), np.int32)
    truth[30:40, 30:40] = 1
    outlined = charts.mask_picture(labels, num_classes=num_classes, outline=truth)
    assert (outlined[30 * factor, 35 * factor] == 255).all()
    np.testing.assert_array_equal(outlined[15 * factor, 15 * factor],
                                  _rgb(CLASS_COLORS[num_classes - 1]))


def test_pictures_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        charts.gradient_picture(np.zeros((4, 4)), truth_fg=np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="one shape"):
        charts.mask_picture(np.zeros((4, 4)), num_classes=2, outline=np.zeros((5, 4)))


def test_png_bytes_round_trip_exactly():
    from PIL import Image
    import io
    image = charts.gradient_picture(np.random.default_rng(1).normal(size=(40, 40)),
                                    truth_fg=_square_truth(40, (5, 9), (5, 9)))
    data = charts.png_bytes(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), image)


@pytest.mark.parametrize("side", [1, 7, 100, 120, 129, 256, 300, 1000])
def test_pictures_are_never_wider_than_shown(side):
    """Pictures go out at most PICTURE_SIDE wide and are shown stretched to their column
    (``width="stretch"``: Streamlit sends them as they are, the browser scales them with
    sharp cells), so the server never resamples them and blurs the cells."""
    import inspect

    from explorer.ui import widgets
    image = charts.mask_picture(np.zeros((side, side), np.int32), num_classes=2)
    assert charts.PICTURE_SIDE // 2 <= image.shape[1] <= charts.PICTURE_SIDE
    assert 'width="stretch"' in inspect.getsource(widgets.figure_or_picture)


# ------------------------------------------------ training curves, thumbnails, strips


def test_training_curves_one_line_per_run_and_metric():
    import pandas as pd

    records = pd.DataFrame([
        {"run": run, "loss_name": loss, "epoch": epoch, "loss": 1 / epoch,
         "val_dice": 0.5 + 0.1 * epoch, "val_iou": None, "val_dice_small": 0.1}
        for run, loss in ((0, "dice_loss"), (1, "bce")) for epoch in (1, 2, 3)])
    fig = charts.training_curves_figure(records)
    names = [trace.name for trace in fig.data]
    assert names == ["1. dice_loss: training loss", "1. dice_loss: validation Dice",
                     "1. dice_loss: validation Dice, small objects", "2. bce: training loss",
                     "2. bce: validation Dice", "2. bce: validation Dice, small objects"]
    assert [t.line.dash for t in fig.data[:2]] == ["dot", "solid"]  # the loss dotted
    assert list(fig.data[1].y) == pytest.approx([0.6, 0.7, 0.8])
    assert fig.layout.xaxis.title.text == "epoch"


def test_thumbnail_fills_the_prediction_and_outlines_the_truth():
    truth = _square_truth(16, (4, 12), (4, 12)).astype(np.int32)
    pred = np.zeros((16, 16), np.int32)
    pred[6:10, 6:10] = 1
    image = charts.thumbnail(truth, pred)
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (245, 245, 245)
    assert tuple(image[8, 8]) == charts.THUMBNAIL_FILL
    assert tuple(image[4, 8]) == tuple(image[11, 11]) == charts.THUMBNAIL_OUTLINE
    assert tuple(image[5, 8]) == (245, 245, 245)  # inside the truth, not its edge
    with pytest.raises(ValueError):
        charts.thumbnail(truth, pred[:8])


def test_sample_strip_tiles_rows_of_image_truth_prediction():
    tile = np.full((4, 5), 0.25)
    samples = {"image": [tile, tile * 2], "truth": [tile * 0, tile * 4],
               "prediction": [tile * 8, tile * -1]}
    strip = charts.sample_strip(samples)
    assert strip.shape == (8, 15)
    assert strip[0, 0] == 0.25 and strip[0, 5] == 0 and strip[0, 10] == 1.0  # clipped
    assert strip[4, 0] == 0.5 and strip[4, 5] == 1.0 and strip[4, 10] == 0.0


# ------------------------------------------------------- stage: overlay, scale, slide


def test_confusion_map_and_overlay_colour_each_kind():
    truth = np.array([[1, 1, 0, 0]], bool)
    pred = np.array([[1, 0, 1, 0]], bool)
    assert charts.confusion_map(truth, pred).tolist() == [[1, 3, 2, 0]]
    picture = charts.overlay_picture(truth, pred)
    factor = picture.shape[1] // 4
    seen = [tuple(picture[0, k * factor]) for k in range(4)]
    expected = [hex_to_rgb(charts.OVERLAY_COLORS[k]) for k in ("TP", "FN", "FP", "TN")]
    assert seen == [tuple(c) for c in expected]


def test_overlay_colours_are_distinct_and_loss_colours_unique():
    assert len(set(charts.OVERLAY_COLORS.values())) == 4
    assert len(set(charts.LOSS_COLORS.values())) == len(charts.LOSS_COLORS)
    from explorer.settings import LOSS_LABELS
    assert set(charts.LOSS_COLORS) == set(LOSS_LABELS)


def test_gradient_scale_linear_locked_and_symmetric_log():
    grad = np.array([-2.0, -1e-3, 0.0, 1e-3, 1.0])
    assert charts.gradient_scaled(grad, 2.0).tolist() == pytest.approx([-1, -5e-4, 0, 5e-4, 0.5])
    logged = charts.gradient_scaled(grad, 2.0, log=True)
    assert logged[0] == pytest.approx(-1.0) and logged[2] == 0.0
    assert logged[3] == pytest.approx(-logged[1])
    # 1e-3 against a limit of 2 on four decades: log(1 + 5) / log(1 + 10^4), a fifth of the way
    assert logged[3] == pytest.approx(np.log1p(5.0) / np.log1p(1e4))
    # a locked limit larger than this map's maximum: the colours stay pale
    truth = np.zeros((8, 8), bool)
    small = np.full((8, 8), 1e-3)
    pale = charts.gradient_picture(small, truth_fg=truth, limit=1.0)
    full = charts.gradient_picture(small, truth_fg=truth)
    assert pale[0, 0].astype(int).sum() > full[0, 0].astype(int).sum()  # nearer white


def test_gradient_figure_hover_keeps_the_raw_gradient_under_a_log_scale():
    grad = np.linspace(-1, 1, 16).reshape(4, 4)
    fig = charts.gradient_figure(grad, prob=np.full((4, 4), 0.5), truth_fg=np.eye(4, dtype=bool),
                                 title="t", log=True)
    heat = fig.data[0]
    assert np.asarray(heat.customdata)[..., 1].ravel().tolist() == pytest.approx(grad.ravel())
    assert heat.zmin == -1 and heat.zmax == 1


def test_stage_picture_holds_the_panels_side_by_side():
    a = np.zeros((40, 30, 3), np.uint8)
    b = np.full((50, 20, 3), 255, np.uint8)
    picture = charts.stage_picture([("A", a), ("B", b)], "Dice loss 0.12", ["line"])
    assert picture.shape[1] == 30 + 20 + 24 + 2 * 32
    assert picture.shape[0] > 50 + 110
    png = charts.png_bytes(picture)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
