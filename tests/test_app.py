"""The app headless (AppTest): it runs, every tab renders, every widget survives its
extremes, and the numbers shown are explorer.losses on the same masks."""

import gc
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import losses, masks
from explorer.ui import runtime
from explorer.ui.widgets import LOG_GRID

# AppTest resolves a relative path against the calling file: give it the absolute one
APP = str(Path(__file__).resolve().parents[1] / "app.py")
TABS = ("Formula and counts", "Compare gradients", "Batch: per image vs whole batch", "Sweeps")


def _run(at):
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.fixture
def at():
    return _run(AppTest.from_file(APP, default_timeout=180))


def table(at) -> dict[str, float]:
    at.session_state["explore_tabs"] = "All numbers"
    _run(at)
    frame = at.table[0].value  # the first table on the page is the metrics table
    assert list(frame[""]).count("◀ chosen") == 1
    return {metric: float(value) for metric, value in zip(frame.index, frame["value"])
            if value != "undefined (0/0)"}


def default_masks():
    """The opening view, rebuilt from the library: a circle and a copy moved 8 px right,
    confidence 0.9 with an edge blur of 1 px."""
    truth = masks.shape_mask("circle", 256, radius=0.2, center=(0.5, 0.5))
    pred = masks.soften(masks.shift(truth, 0, 8), 2, confidence=0.9, blur_sigma=1.0)
    return masks.to_batch(masks.one_hot(truth, 2)), masks.to_batch(pred)


def test_every_tab_renders(at):
    assert at.metric[0].label == "Dice loss"  # the stage's value comes first
    assert gc.get_freeze_count() > 10_000  # the imports' objects: no full collection walks them
    assert runtime.after_imports.cache_info().misses == 1  # once, not every rerun
    assert not at.get("plotly_chart")  # pictures by default: quick to draw
    captions = [image.proto.imgs[0].caption for image in at.get("image")]
    assert any(c.startswith("Truth vs prediction at the threshold. Blue: true positive")
               for c in captions)
    assert any(c.startswith("p (class 1), truth outlined") for c in captions)
    assert any(c.startswith("Dice loss = 0.368159. Blue: descent pushes p up") for c in captions)
    assert "two values" in " ".join(c.value for c in at.caption)  # Dice's gradient, explained
    at.session_state["explore_tabs"] = TABS[0]
    _run(at)
    assert r"\mathrm{Dice}" in at.latex[0].value
    at.session_state["explore_tabs"] = TABS[1]
    _run(at)
    captions = [image.proto.imgs[0].caption for image in at.get("image")]
    assert any(c.startswith("Lovász = ") for c in captions)
    at.toggle(key="hover_values").set_value(True)
    _run(at)
    keys = {chart.key for chart in at.get("plotly_chart")}
    assert {"overlay_figure", "prob_figure", "stage_gradient_dice_loss",
            "compare_dice_loss", "compare_lovasz"} <= keys
    assert not [image for image in at.get("image") if image.proto.imgs[0].caption]
    at.session_state["explore_tabs"] = TABS[2]
    _run(at)
    labels = [m.label for m in at.metric]
    assert "Dice loss, whole batch" in labels and "Dice loss, per image (mean)" in labels
    at.session_state["explore_tabs"] = TABS[3]
    _run(at)
    assert {"sweep_smooth", "sweep_confidence", "sweep_size", "sweep_size_grad"} <= {
        chart.key for chart in at.get("plotly_chart")}


def test_numbers_shown_equal_the_library(at):
    truth, pred = default_masks()
    shown = table(at)
    assert shown["Dice coefficient (soft)"] == pytest.approx(
        float(losses.dice_coefficient(truth, pred)), abs=1e-6)
    assert shown["Dice loss"] == pytest.approx(float(losses.dice_loss(truth, pred)), abs=1e-6)
    assert shown["BCE"] == pytest.approx(float(losses.binary_crossentropy(truth, pred)), abs=1e-6)
    assert shown["IoU (soft Jaccard index)"] == pytest.approx(
        1 - float(losses.jaccard_loss(truth, pred)), abs=1e-6)
    hard = losses.hard_metrics(truth, pred)
    assert shown["Dice (hard, at 0.5)"] == pytest.approx(float(hard["dice"][0]), abs=5e-7)
    # a setting change moves the table by exactly what the library says
    at.number_input(key="smooth").set_value(0.0)
    at.number_input(key="epsilon").set_value(1e-7)
    at.checkbox(key="squared").check()
    _run(at)
    keywords = dict(smooth=0.0, epsilon=1e-7, squared=True)
    assert table(at)["Dice loss"] == pytest.approx(
        float(losses.dice_loss(truth, pred, **keywords)), abs=1e-6)
    assert at.metric[0].value == f"{float(losses.dice_loss(truth, pred, **keywords)):.6f}"


def test_multiclass_weights_and_background_change_the_numbers(at):
    at.selectbox(key="num_classes").set_value(4)
    at.radio(key="truth_source").set_value("Gallery")
    _run(at)
    before = table(at)["Dice loss"]
    at.button(key="inverse_frequency").click()
    _run(at)
    weighted = table(at)["Dice loss"]
    at.checkbox(key="include_background").uncheck()
    _run(at)
    assert len({before, weighted, table(at)["Dice loss"]}) == 3
    assert "class_bars" in {c.key for c in at.get("plotly_chart")}


def test_both_empty_with_smooth_zero_is_explained_not_nan(at):
    at.radio(key="truth_source").set_value("Empty")
    at.radio(key="prediction_source").set_value("Empty")
    at.slider(key="confidence").set_value(1.0)
    at.slider(key="blur").set_value(0.0)
    at.number_input(key="smooth").set_value(0.0)
    _run(at)
    assert (at.metric[0].label, at.metric[0].value) == ("Dice loss: undefined", "0/0")
    assert any(w.value.startswith("this image: undefined (0/0)") and "both empty" in w.value
               for w in at.warning)
    notes = " ".join(c.value for c in at.caption)  # how other libraries score it, computed
    assert "loss 0 (smp) 0.000000 · loss 1 (Keras 3) 1.000000" in notes
    at.number_input(key="epsilon").set_value(1e-6)
    _run(at)
    assert at.metric[0].value == "1.000000"  # a perfect empty prediction punished
    assert any("perfect empty prediction" in w.value for w in at.warning)
    at.selectbox(key="empty").set_value("zero")
    at.checkbox(key="from_logits").check()
    _run(at)
    assert at.metric[0].value == "0.000000"  # smp: an empty class costs 0
    assert any("at logit −30 scores BCE 16.12 with gradient 0" in c.value for c in at.caption)


def _fake_canvas(rgba):
    """A stand-in for streamlit_drawable_canvas that 'draws' the given RGBA image."""
    module = types.ModuleType("streamlit_drawable_canvas")
    module.calls = []

    def st_canvas(**kwargs):
        module.calls.append(kwargs)
        return types.SimpleNamespace(image_data=rgba, json_data=None)

    module.st_canvas = st_canvas
    return module


def test_a_drawing_on_the_canvas_becomes_the_truth(monkeypatch):
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[100:140, 60:120] = (232, 89, 12, 255)  # a class-1 stroke
    rgba[120:130, 60:80] = (0, 0, 0, 255)  # erased again
    fake = _fake_canvas(rgba)
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", fake)
    at = AppTest.from_file(APP, default_timeout=180)
    _run(at)
    at.radio(key="truth_source").set_value("Draw")
    _run(at)
    assert fake.calls and fake.calls[-1]["stroke_color"] == masks.CLASS_COLORS[1]
    truth_labels = masks.rgba_to_labels(rgba, 2)
    assert truth_labels.sum() == 40 * 60 - 10 * 20
    truth = masks.to_batch(masks.one_hot(truth_labels, 2))
    pred = masks.to_batch(masks.soften(masks.shift(truth_labels, 0, 8), 2, confidence=0.9,
                                       blur_sigma=1.0))
    assert table(at)["Dice loss"] == pytest.approx(float(losses.dice_loss(truth, pred)),
                                                   abs=1e-6)


def _extreme_setters(widget):
    """Ways to push one widget to each end of its range."""
    kind = type(widget).__name__
    if kind in ("Slider", "NumberInput"):
        ends = [widget.min, widget.max]
        return [lambda w, v=v: w.set_value(v) for v in ends if v is not None]
    if kind in ("Checkbox", "Toggle"):
        return [lambda w: w.set_value(True), lambda w: w.set_value(False)]
    if kind == "SelectSlider":  # the only select_sliders are smooth and epsilon
        return [lambda w: w.set_value(LOG_GRID[0]), lambda w: w.set_value(LOG_GRID[-1])]
    return [lambda w: _choose(w, 0), lambda w: _choose(w, -1)]


def _choose(widget, index):
    """Pick an option by position. The page sends the displayed label, so the test
    works in labels: it must not format them a second time."""
    # AppTest would pass the label through the page's format_func again: view it as plain
    widget.__class__ = type("Plain" + type(widget).__name__, (type(widget),),
                            {"format_func": property(lambda self: str)})
    widget.set_value(widget.options[index])


def test_every_widget_survives_its_extremes(at):
    kinds = ("slider", "number_input", "checkbox", "toggle", "select_slider", "radio",
             "selectbox")
    # small masks keep the ~150 reruns quick; the size itself is pushed at the end
    _choose(at.selectbox(key="mask_size"), 0)
    _run(at)
    seen = {"mask_size"}
    for _ in range(3):  # new widgets appear as sources change: sweep until none is new
        found = [w.key for kind in kinds for w in getattr(at, kind)
                 if w.key and w.key not in seen and not w.disabled]
        if not found:
            break
        for key in found:
            seen.add(key)
            for push in _extreme_setters(_by_key(at, key)):
                widget = _by_key(at, key)
                if widget is None:  # gone after an earlier change
                    break
                push(widget)
                at.run()
                assert not at.exception, (key, at.exception)
    assert len(seen) > 30, sorted(seen)
    for index in (-1, 0):
        _choose(at.selectbox(key="mask_size"), index)
        at.run()
        assert not at.exception, at.exception


def _by_key(at, key):
    for kind in ("slider", "number_input", "checkbox", "toggle", "select_slider", "radio",
                 "selectbox"):
        for widget in getattr(at, kind):
            if widget.key == key:
                return widget
    return None


def test_train_tab_trains_with_tiny_settings_and_keeps_the_explore_state(at):
    import time

    at.number_input(key="smooth").set_value(0.5)
    _run(at)
    at.session_state["main_tabs"] = "Train"
    _run(at)
    assert at.session_state["smooth"] == 0.5  # shared with Explore
    _choose(at.selectbox(key="train_size"), 0)  # 32 px
    _choose(at.selectbox(key="train_width"), 0)
    _choose(at.selectbox(key="train_depth"), 0)
    at.slider(key="train_epochs").set_value(1)
    _run(at)
    at.button(key="train_start").click()
    _run(at)
    job = at.session_state["train_job"]
    assert job.configs[0].loss_keywords["smooth"] == 0.5
    deadline = time.monotonic() + 120
    while job.running and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not job.running and job.error is None
    _run(at)
    results = at.dataframe[0].value
    assert list(results["loss"]) == ["Dice loss (smooth 0.5)"]
    assert 0 <= results["val Dice"][0] <= 1
    assert "train_curves" in {c.key for c in at.get("plotly_chart")}
    at.session_state["main_tabs"] = "Explore"
    _run(at)
    assert at.number_input(key="smooth").value == 0.5
    at.session_state["main_tabs"] = "Train"  # and back: the Train tab kept its settings too
    _run(at)
    assert at.slider(key="train_epochs").value == 1
