"""Where Dice is blind: the pitfall pairs, the "Beyond overlap" numbers, the shipped 3-D
volumes, and both views in the running app (AppTest), every number equal to
``explorer.metrics`` (and ``explorer.losses`` for the volume's Dice loss) on the same masks."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from scipy import ndimage
from streamlit.testing.v1 import AppTest

from explorer import analysis, charts, losses, masks, metrics, predictions
from explorer.ui import scenarios, state
from tests.test_app import APP, _run, default_masks

SEES_COLUMN = "what it sees that Dice does not"


# ------------------------------------------------------------------ the library


@pytest.mark.parametrize("kind", list(masks.PITFALLS))
def test_every_pitfall_is_a_binary_pair_at_any_size(kind):
    for size in (64, 256):
        truth, pred = masks.pitfall_pair(kind, size)
        assert truth.shape == pred.shape == (size, size)
        assert set(np.unique(truth)) == set(np.unique(pred)) == {0, 1}
        assert truth.dtype == pred.dtype == np.int32
    np.testing.assert_array_equal(masks.pitfall_pair(kind)[0], masks.pitfall_pair(kind, 256)[0])


def test_what_each_pitfall_holds():
    truth, pred = masks.pitfall_pair("far blob", 128, amount=4)
    assert (pred >= truth).all() and ndimage.label(pred, np.ones((3, 3)))[1] == 2
    truth, pred = masks.pitfall_pair("rough edge", 128, amount=0)
    np.testing.assert_array_equal(truth, pred)  # no noise: the disc itself
    truth, pred = masks.pitfall_pair("lesions", 128, amount=5)
    assert ndimage.label(truth, np.ones((3, 3)))[1] == 8 and ndimage.label(pred)[1] == 3
    assert (pred <= truth).all()
    thin, trunk = masks.pitfall_pair("thin branches", 128, amount=1)
    wide, same = masks.pitfall_pair("thin branches", 128, amount=5)
    np.testing.assert_array_equal(trunk, same)  # the prediction is the trunk either way
    assert wide.sum() > thin.sum() > trunk.sum()
    with pytest.raises(ValueError, match="kind must be one of 'far blob'"):
        masks.pitfall_pair("blob", 64)


def test_beyond_overlap_is_explorer_metrics():
    truth, pred = (m > 0 for m in masks.pitfall_pair("far blob", 128))
    prob = masks.soften(pred.astype(np.int32), 2, confidence=0.8)[..., 0]
    found = analysis.beyond_overlap(truth, pred, prob, tolerance=2.0)
    values = {m.key: m.value for m in found.measures}
    lesions = metrics.lesion_detection(truth, pred)
    assert values == pytest.approx({
        "dice": 2 * (truth & pred).sum() / (truth.sum() + pred.sum()),
        "hd95": metrics.hausdorff_distance(truth, pred, percentile=95),
        "asd": metrics.average_surface_distance(truth, pred),
        "nsd": metrics.surface_dice(truth, pred, tolerance=2.0),
        "lesion_recall": lesions["recall"], "lesion_precision": lesions["precision"],
        "lesion_f1": lesions["f1"], "cl_dice": metrics.cl_dice(truth, pred),
        "ece": metrics.expected_calibration_error(truth, prob).ece})
    assert all(m.sees and not m.reason for m in found.measures)
    assert next(m for m in found.measures if m.key == "nsd").label == "NSD at τ = 2 px"
    assert "found 1 · missed 0" in {m.counts for m in found.measures}
    np.testing.assert_array_equal(found.calibration.count,
                                  metrics.expected_calibration_error(truth, prob).count)


def test_empty_masks_are_said_in_words():
    empty = np.zeros((32, 32), bool)
    blob = empty.copy()
    blob[10:14, 10:14] = True
    prob = np.full((32, 32), 0.2)
    both = {m.key: m for m in analysis.beyond_overlap(empty, empty, prob).measures}
    assert both["dice"].shown == "undefined" and "0/0" in both["dice"].reason
    assert both["hd95"].shown == "undefined" and "both empty" in both["hd95"].reason
    one = {m.key: m for m in analysis.beyond_overlap(empty, blob, prob).measures}
    assert one["hd95"].shown == one["asd"].shown == "infinite"
    assert one["hd95"].reason.startswith("the truth is empty")
    assert one["nsd"].shown == "0" and one["lesion_recall"].shown == "undefined"
    assert one["ece"].shown != "undefined" and not one["ece"].reason
    for rows in (both, one):  # never a bare nan or inf
        assert not {m.shown for m in rows.values()} & {"nan", "inf"}


def test_three_d_with_anisotropic_spacing():
    truth, pred = masks.load_volumes()["ball"]
    prob = pred.astype(np.float64) * 0.8 + 0.1
    spacing = (3.0, 1.0, 1.0)
    found = {m.key: m for m in analysis.beyond_overlap(
        truth, pred, prob, tolerance=2.0, spacing=spacing, unit="mm").measures}
    assert found["hd95"].label == "HD95 (mm)" and found["nsd"].label == "NSD at τ = 2 mm"
    assert found["hd95"].value == metrics.hausdorff_distance(truth, pred, percentile=95,
                                                             spacing=spacing)
    assert found["hd95"].value != metrics.hausdorff_distance(truth, pred, percentile=95)
    per_slice, volume = analysis.slice_dice(truth, pred)
    assert per_slice.shape == (masks.VOLUME_SHAPE[0],) and np.isnan(per_slice).any()
    assert volume == pytest.approx(found["dice"].value)


def test_the_shipped_volumes_are_the_script_output():
    spec = importlib.util.spec_from_file_location("make_volumes",
                                                  masks.SAMPLE_DIR / "make_volumes.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    built = script.build()
    volumes = masks.load_volumes()
    assert tuple(volumes) == masks.VOLUME_NAMES
    for name, (truth, pred) in volumes.items():
        np.testing.assert_array_equal(truth, built[f"{name}_truth"] > 0)
        np.testing.assert_array_equal(pred, built[f"{name}_prediction"] > 0)
        assert truth.any() and pred.any()
    # a ball, a thin tube (one piece in the truth, cut in two in the prediction), lesions
    tube, cut = volumes["tube"]
    assert ndimage.label(tube, np.ones((3, 3, 3)))[1] == 1
    assert ndimage.label(cut, np.ones((3, 3, 3)))[1] == 2
    assert metrics.lesion_detection(*volumes["lesions"])["fn"] == 6


def test_volume_losses_take_five_axes():
    truth, pred = masks.load_volumes()["tube"]
    g = truth.astype(np.float32)[None, ..., None]
    p = pred.astype(np.float32)[None, ..., None]
    hard = 2 * (truth & pred).sum() / (truth.sum() + pred.sum())
    assert float(losses.dice_loss(g, p, smooth=0.0, epsilon=0.0)) == pytest.approx(1 - hard,
                                                                                   abs=1e-6)


def test_the_charts():
    truth, pred = (m > 0 for m in masks.pitfall_pair("rough edge", 64))
    calibration = metrics.expected_calibration_error(truth, np.where(pred, 0.9, 0.1))
    figure = charts.reliability_figure(calibration, title="R")
    bars = figure.data[0]
    assert len(bars.x) == int((calibration.count > 0).sum()) == 1  # one bin: p is 0.9 or 0.1
    assert bars.y[0] == pytest.approx(calibration.accuracy[calibration.count > 0][0])
    figure = charts.slice_dice_figure([np.nan, 0.5, 1.0], 0.8, current=1, mean=0.75)
    assert [t.name for t in figure.data] == ["each slice", "the volume: 0.800",
                                             "mean over slices: 0.750"]


# ------------------------------------------------------------------ in the app


def _measures(at) -> dict[str, str]:
    """The "Beyond overlap" table as shown: label -> value."""
    frame = next(t.value for t in at.table if SEES_COLUMN in t.value.columns)
    assert all(frame[SEES_COLUMN].str.len() > 20)  # a line for each
    return dict(zip(frame.index, frame["value"]))


def _expected(truth, pred, prob, *, tolerance, spacing=None, unit="px") -> dict[str, str]:
    """The same labels, with the values computed here by explorer.metrics."""
    lesions = metrics.lesion_detection(truth, pred)
    values = {
        "Dice (hard)": 2 * (truth & pred).sum() / (truth.sum() + pred.sum()),
        f"HD95 ({unit})": metrics.hausdorff_distance(truth, pred, percentile=95,
                                                     spacing=spacing),
        f"ASD ({unit})": metrics.average_surface_distance(truth, pred, spacing=spacing),
        f"NSD at τ = {tolerance:g} {unit}": metrics.surface_dice(truth, pred,
                                                                 tolerance=tolerance,
                                                                 spacing=spacing),
        "Lesion recall": lesions["recall"], "Lesion precision": lesions["precision"],
        "Lesion F1": lesions["f1"], "clDice": metrics.cl_dice(truth, pred),
        "ECE": metrics.expected_calibration_error(truth, prob).ece}
    return {k: "undefined" if math.isnan(v) else "infinite" if math.isinf(v) else f"{v:.4g}"
            for k, v in values.items()}


def test_the_beyond_overlap_view_shows_explorer_metrics():
    at = _run(AppTest.from_file(APP, default_timeout=300))
    at.session_state["explore_tabs"] = state.BEYOND_TAB
    _run(at)
    truth, pred = default_masks()
    hard = predictions.hard_labels(pred[0]) == 1
    assert _measures(at) == _expected(truth[0, ..., 0] > 0.5, hard, pred[0, ..., 0],
                                      tolerance=1.0)
    assert "reliability" in {chart.key for chart in at.get("plotly_chart")}
    at.slider(key="nsd_tolerance").set_value(4.0)
    _run(at)
    nsd = metrics.surface_dice(truth[0, ..., 0] > 0.5, hard, tolerance=4.0)
    assert _measures(at)["NSD at τ = 4 px"] == f"{nsd:.4g}"
    # a pitfall scenario: its masks come from the Pitfall source on both sides
    at.sidebar.button(key="scenario_button_far_blob").click()
    _run(at)
    assert at.session_state["explore_tabs"] == state.BEYOND_TAB
    i = scenarios.inputs(scenarios.get("far_blob"))
    truth_fg = i.truth_labels == 1
    assert _measures(at) == _expected(truth_fg, predictions.hard_labels(i.pred[0]) == 1,
                                      i.pred[0, ..., 0], tolerance=1.0)
    # the empty reference: infinite and undefined in words, with the reason below
    at.sidebar.button(key="scenario_button_empty_reference").click()
    _run(at)
    shown = _measures(at)
    assert shown["HD95 (px)"] == "infinite" and shown["Lesion recall"] == "undefined"
    assert any("the truth is empty" in i.value for i in at.info)
    # several classes: the class shown on the stage
    at.selectbox(key="num_classes").set_value(3)
    at.radio(key="truth_source").set_value("Shape")
    at.radio(key="prediction_source").set_value("Copy of truth")
    _run(at)
    at.selectbox(key="prob_class").set_value(2)
    _run(at)
    labels = masks.class_shapes("circle", 256, num_classes=3, radius=0.2)
    prob = predictions.Edits(dx=at.session_state["shift_x"], confidence=1.0).apply(labels, 3)
    assert _measures(at) == _expected(labels == 2, prob.argmax(-1) == 2, prob[..., 2],
                                      tolerance=1.0)


def test_the_volume_view_shows_explorer_metrics_with_spacing():
    at = _run(AppTest.from_file(APP, default_timeout=300))
    at.session_state["explore_tabs"] = state.VOLUMES_TAB
    at.session_state["volume_name"] = "lesions"
    _run(at)
    truth, pred = masks.load_volumes()["lesions"]
    prob = masks.soften(pred.astype(np.int32), 2, confidence=0.9, blur_sigma=1.0)[..., 0]
    assert _measures(at) == _expected(truth, pred, prob, tolerance=2.0, spacing=(3.0, 1.0, 1.0),
                                      unit="mm")
    per_slice, volume = analysis.slice_dice(truth, pred)
    text = " ".join(m.value for m in at.markdown)
    assert f"**{np.nanmean(per_slice):.3f}**" in text and f"**{volume:.3f}**" in text
    g, p = truth.astype(np.float32)[..., None], prob[..., None]
    whole = float(losses.dice_loss(g[None], p[None], smooth=1.0))
    slices = float(losses.dice_loss(g, p, smooth=1.0, per_image=True))
    assert f"**{whole:.6f}**" in text and f"**{slices:.6f}**" in text
    assert {"slice_dice", "volume_reliability"} <= {c.key for c in at.get("plotly_chart")}
    captions = [image.proto.imgs[0].caption for image in at.get("image")]
    assert {"Slice 12", "Projection along D (top)", "Projection along H (side)"} <= set(captions)
    # isotropic voxels: every distance in millimetres changes, Dice does not
    at.number_input(key="spacing_d").set_value(1.0)
    at.slider(key="volume_slice").set_value(5)
    _run(at)
    assert _measures(at) == _expected(truth, pred, prob, tolerance=2.0, spacing=(1.0, 1.0, 1.0),
                                      unit="mm")
    assert "Slice 5" in [image.proto.imgs[0].caption for image in at.get("image")]
