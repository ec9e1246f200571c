"""The Explore controls and the views below the stage, headless (AppTest): the log slider
and its exact number agree, a prediction the person made starts unedited, a multi-class
shape has every class, and the batch, sweep, Lovász and compare views say and show what
they compute."""

import json
import sys

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import charts, masks
from explorer.settings import LOSS_LABELS
from explorer.ui import mask_inputs, state
from tests.test_app import APP, _fake_canvas, _run


@pytest.fixture
def at():
    return _run(AppTest.from_file(APP, default_timeout=180))


def _open(at, view):
    at.session_state["explore_tabs"] = view
    return _run(at)


def _chosen(at) -> str:
    return at.metric[0].value


def _figure(at, key) -> dict:
    return json.loads(next(c for c in at.get("plotly_chart") if c.key == key).proto.spec)


def _captions(at) -> list[str]:
    return [image.proto.imgs[0].caption for image in at.get("image")]


# ------------------------------------------------------------------ the controls


def test_the_log_slider_shows_the_exact_number_typed_and_moves_it():
    at = _run(AppTest.from_file(APP, default_timeout=180))
    at.number_input(key="epsilon").set_value(0.5)  # between the grid's 0.3 and 1
    _run(at)
    slider = at.select_slider(key="epsilon_grid")
    assert slider.value == 0.5 and "0.5" in slider.options
    at.select_slider(key="smooth_grid").set_value(0.01)
    _run(at)
    assert at.number_input(key="smooth").value == 0.01
    assert at.select_slider(key="smooth_grid").value == 0.01
    assert at.select_slider(key="epsilon_grid").value == 0.5  # the other one kept


def test_a_prediction_chosen_from_the_gallery_starts_unedited(at):
    at.radio(key="truth_source").set_value("Gallery")
    _run(at)
    sample = at.selectbox(key="truth_gallery").value
    at.slider(key="shift_x").set_value(0)
    _run(at)
    copy_unshifted = _chosen(at)
    at.slider(key="shift_x").set_value(8)
    _run(at)
    assert _chosen(at) != copy_unshifted
    at.radio(key="prediction_source").set_value("Gallery")
    _run(at)
    at.selectbox(key="prediction_gallery").set_value(sample)  # the truth's own sample
    _run(at)
    assert at.slider(key="shift_x").value == 0
    assert _chosen(at) == copy_unshifted  # the same masks score the same
    at.radio(key="prediction_source").set_value("Copy of truth")  # its lesson: moved 8 px
    _run(at)
    assert at.slider(key="shift_x").value == state.default("shift_x") == 8


@pytest.mark.parametrize("source", ["Shape", "Draw", "Upload", "Masks file"])
def test_every_source_but_the_copy_starts_with_no_edit(source):
    assert mask_inputs.edit_start("shift_x", "Copy of truth") == 8
    assert [mask_inputs.edit_start(key, source) for key in mask_inputs.EDIT_FIELDS] == [
        0, 0, 0, False]


def test_a_link_to_a_gallery_prediction_opens_unshifted():
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update({"prediction_source": "Gallery"})
    _run(at)
    assert at.slider(key="shift_x").value == 0
    kept = AppTest.from_file(APP, default_timeout=180)  # a shift the link asks for stays
    kept.query_params.update({"prediction_source": "Gallery", "shift_x": "5"})
    _run(kept)
    assert kept.slider(key="shift_x").value == 5


def test_a_four_class_shape_has_every_class_and_the_copy_has_them_all(at):
    at.selectbox(key="num_classes").set_value(4)
    _run(at)
    truth, pred = at.session_state[state.CURRENT_PAIR]["pair"]
    np.testing.assert_array_equal(truth, masks.class_shapes("circle", 256, num_classes=4))
    assert set(np.unique(truth)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(pred, truth)  # Copy of truth: every class
    bars = _figure(at, "class_bars")["data"][0]
    assert "0/0" not in bars["text"]  # no class is empty


def test_the_canvas_fits_a_third_of_the_page_with_room_for_its_toolbar(monkeypatch):
    rgba = np.zeros((mask_inputs.CANVAS_SIDE,) * 2 + (4,), np.uint8)
    fake = _fake_canvas(rgba)
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", fake)
    at = _run(AppTest.from_file(APP, default_timeout=180))
    at.radio(key="truth_source").set_value("Draw")
    _run(at)
    # a column is about 250 px wide at 1280 px with the sidebar open
    assert fake.calls[-1]["width"] == fake.calls[-1]["height"] == 240
    assert any("toolbar shows above" in c.value for c in at.caption)
    assert at.session_state[state.CURRENT_PAIR]["pair"][0].shape == (256, 256)


# ------------------------------------------------------------------------ views


def test_the_batch_view_counts_from_1_and_shows_each_image(at):
    _open(at, "Batch: per image vs whole batch")
    names = ["image 1: current pair", "image 2: coins", "image 3: coins_by_size",
             "image 4: empty"]
    assert list(at.dataframe[0].value["image"]) == names
    assert [c for c in _captions(at) if c.startswith("image ")] == names
    assert any(i.value.startswith("image 4: scores 1") for i in at.info)  # the empty one


def test_sweeps_always_draw_the_chosen_loss_in_its_colour_and_offer_a_log_axis(at):
    at.selectbox(key="loss").set_value("tversky_loss")
    _run(at)
    _open(at, "Sweeps")
    expected = ["dice_loss", "binary_crossentropy", "lovasz", "tversky_loss"]  # chosen on top
    for key in ("sweep_smooth", "sweep_confidence", "sweep_size", "sweep_size_grad"):
        curves = [t for t in _figure(at, key)["data"] if t["name"] != "current"]
        assert [t["name"] for t in curves] == [LOSS_LABELS[k] for k in expected]
        assert [t["line"]["color"] for t in curves] == [charts.LOSS_COLORS[k] for k in expected]
        assert _figure(at, key)["layout"]["yaxis"].get("type") != "log"
    at.toggle(key="sweep_log_y").set_value(True)
    _run(at)
    axis = _figure(at, "sweep_smooth")["layout"]["yaxis"]
    assert axis["type"] == "log" and axis["title"]["text"] == "loss (log)"
    assert any("logarithmic" in c.value for c in at.caption)


def test_the_lovasz_steps_start_at_the_first_pixel_and_count_from_1(at):
    _open(at, "Lovász step by step")
    step = at.slider(key="lovasz_step")
    assert step.value == 1 and step.max == 12 * 12
    assert "pixels taken: 1 of 144" in _figure(at, "lovasz_steps")["layout"]["title"]["text"]
    step.set_value(144)
    _run(at)
    assert "pixels taken: 144 of 144" in _figure(at, "lovasz_steps")["layout"]["title"]["text"]
    at.select_slider(key="lovasz_side").set_value(6)  # fewer pixels than the step
    _run(at)
    assert at.slider(key="lovasz_step").value == 36


def _compare_limits(at) -> list[str]:
    """The colour bar's range said under each of the three compare maps (the last three
    gradient pictures: the stage's come first)."""
    return [c.split("Bar: ")[1] for c in _captions(at) if "Bar: ∂L/∂" in c][-3:]


def test_compare_maps_follow_the_shared_and_locked_colour_scale(at):
    _open(at, "Compare gradients")
    at.radio(key="gradient_scale").set_value("per map")
    _run(at)
    assert len(set(_compare_limits(at))) == 3  # Dice, BCE, Lovász: three own scales
    assert any(c.value.startswith("Colour scale: per map.") for c in at.caption)
    at.radio(key="gradient_scale").set_value("shared")
    _run(at)
    shared = _compare_limits(at)
    assert len(shared) == 3 and len(set(shared)) == 1
    at.radio(key="gradient_scale").set_value("locked")
    _run(at)
    at.slider(key="confidence").set_value(0.6)  # a softer prediction: other gradients
    _run(at)
    assert _compare_limits(at) == shared  # the scale stayed where it was locked


def test_a_refused_loss_in_compare_is_said_and_the_others_still_shown(at):
    at.checkbox(key="squared").check()
    at.slider(key="beta").set_value(0.1)  # squared Tversky with α ≠ β leaves the range
    _run(at)
    _open(at, "Compare gradients")
    picker = at.multiselect(key="compare_losses")  # the page sends labels: view them plain
    picker.__class__ = type("Plain", (type(picker),), {"format_func": property(lambda s: str)})
    picker.set_value(["Tversky loss", "BCE"])
    _run(at)
    assert any(w.value.startswith("Tversky loss: squared=True needs alpha == beta")
               for w in at.warning)
    assert any(c.startswith("BCE = ") for c in _captions(at))  # the other map is drawn
