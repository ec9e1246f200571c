"""The Train tab's comparison views: the shipped replays, their figures, and the tab
playing one back (AppTest)."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import charts
from explorer import training as T

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SHIPPED = [entry["name"] for entry in T.list_replays()]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_replays_load_with_curves_and_a_grid(name):
    comparison = T.load_replay(name)
    assert comparison["kind"] == "replay" and comparison["runs"]
    entry = next(e for e in T.list_replays() if e["name"] == name)
    labels = [group["label"] for group in T.summarize(comparison)]
    assert labels == entry["losses"] and "BCE" in labels and "Dice loss" in labels
    grid = comparison["grid"]
    k, side = len(grid["index"]), grid["image"].shape[-1]
    assert grid["truth"].shape == (k, side, side) and k >= 2
    assert len(grid["prediction"]) == len(grid["runs"]) == len(labels)  # one seed's runs
    for run, prediction in zip(grid["runs"], grid["prediction"]):
        assert comparison["runs"][run]["seed"] == grid["seed"]
        assert prediction.shape == (entry["epochs"], k, side, side)
        assert 0 <= prediction.min() and prediction.max() <= 1
    for run in comparison["runs"]:
        assert len(run["epochs"]) == entry["epochs"]
        assert {"loss", "val_dice", "val_iou", "val_small_dice"} <= set(run["epochs"][-1])


def test_the_tiny_objects_replay_shows_the_lesson():
    """What the README says of the preset, pinned to the shipped numbers: in every seed
    Dice loss ends with a higher small-object Dice than BCE, by at least 0.1 on average."""
    if "tiny-objects" not in SHIPPED:
        pytest.skip("no tiny-objects replay installed")
    comparison = T.load_replay("tiny-objects")
    groups = [g["loss"] for g in T.summarize(comparison)]
    difference = T.final_difference(comparison, first=groups.index("dice_loss"),
                                    second=groups.index("binary_crossentropy"))
    assert sorted(difference) == [0, 1, 2]
    assert all(d > 0 for d in difference.values())
    assert np.mean(list(difference.values())) >= 0.1


def test_the_comparison_figure_has_one_colour_per_loss_and_a_band_over_seeds():
    comparison = T.load_replay(SHIPPED[0]) if SHIPPED else pytest.skip("no replays")
    summary = T.summarize(comparison)
    figure = charts.training_comparison_figure(summary, epoch=3)
    lines = [t for t in figure.data if t.mode == "lines+markers"]
    bands = [t for t in figure.data if t.fill == "toself"]
    assert len(lines) == 2 * len(summary)  # validation Dice and small-object Dice
    assert len(bands) == (2 * len(summary) if len(summary[0]["seeds"]) > 1 else 0)
    assert [t.name for t in lines if t.showlegend] == [g["label"] for g in summary]
    for group in summary:
        colours = {t.line.color for t in lines if t.name == group["label"]}
        assert colours == {charts.LOSS_COLORS[group["loss_key"]]}
    titles = [a.text for a in figure.layout.annotations]
    assert titles[:2] == ["validation Dice", "small-object Dice"]


def test_prediction_grid_lines_up_rows_and_colours_tp_fp_fn():
    truth = np.zeros((2, 8, 8), np.float32)
    truth[0, 2:4, 2:4] = 1
    perfect = truth.copy()
    missed = np.zeros_like(truth)
    missed[1, 0, 0] = 0.9  # a false positive in the second image
    grid = {"seed": 0, "index": np.array([0, 5]), "image": np.full((2, 8, 8), 0.5, np.float32),
            "truth": truth, "runs": [0, 1], "epochs": [[1, 2], [1, 2]],
            "prediction": [np.stack([missed, perfect]), np.stack([missed, missed])]}
    columns = charts.prediction_grid(grid, epoch_index=1, side=16)
    assert len(columns) == 4  # image, truth, two runs
    zoom, gap = 2, charts.GRID_GAP
    assert all(c.shape == (2 * 8 * zoom + gap, 8 * zoom, 3) for c in columns)
    rgb = {k: np.array(charts.hex_to_rgb(v), np.uint8) for k, v in charts.OVERLAY_COLORS.items()}
    first_run, second_run = columns[2], columns[3]
    assert (first_run[2 * zoom + 1, 2 * zoom + 1] == rgb["TP"]).all()  # epoch 2: perfect
    assert (second_run[2 * zoom + 1, 2 * zoom + 1] == rgb["FN"]).all()  # missed
    row2 = 8 * zoom + gap
    assert (second_run[row2, 0] == rgb["FP"]).all()  # the second image's false positive
    assert (first_run[8 * zoom + 1, 0] == charts.GRID_GAP_RGB).all()  # the gap
    # the first epoch (index 0) shows the misses for the first run too
    assert (charts.prediction_grid(grid, 0, side=16)[2][2 * zoom + 1, 2 * zoom + 1]
            == rgb["FN"]).all()


def _run(at):
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.mark.skipif("tiny-objects" not in SHIPPED, reason="no tiny-objects replay installed")
def test_the_train_tab_plays_a_replay():
    at = _run(AppTest.from_file(APP, default_timeout=180))
    at.session_state["main_tabs"] = "Train"
    start = time.perf_counter()
    _run(at)
    shown_after = time.perf_counter() - start  # reported, not asserted (machines differ)
    assert at.session_state["train_view"] == "Replay"
    assert at.session_state["train_replay"] == "tiny-objects"
    assert any(c.value.startswith("**Replay**: recorded earlier on") for c in at.caption)

    def figure():
        charts_ = [c for c in at.get("plotly_chart") if c.key == "train_curves"]
        assert len(charts_) == 1
        return json.loads(charts_[0].proto.spec)

    names = [t["name"] for t in figure()["data"] if t.get("showlegend")]
    comparison = T.load_replay("tiny-objects")
    labels = [g["label"] for g in T.summarize(comparison)]
    assert names == labels and "Dice loss" in names and "BCE" in names
    table = at.dataframe[0].value
    assert list(table["loss"]) == labels
    assert table["seeds"].tolist() == [3] * len(labels)
    images = [i for i in at.get("image")]
    assert len(images) >= 2 + len(labels)  # the grid: image, truth, one column per loss
    headers = " ".join(m.value for m in at.markdown)
    assert "Validation predictions after epoch 12" in headers
    assert all(label in headers for label in labels)

    epoch = at.select_slider(key="train_replay_epoch_tiny-objects")
    epoch.set_value(3)
    _run(at)
    assert "Validation predictions after epoch 3" in " ".join(m.value for m in at.markdown)
    shapes = figure()["layout"]["shapes"]
    assert shapes and all(s["x0"] == 3 for s in shapes)  # the curves mark the epoch shown
    print(f"replay shown {shown_after:.2f} s after opening the tab (AppTest, this machine)")


def test_a_live_run_is_drawn_with_the_same_views():
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["main_tabs"] = "Train"
    _run(at)
    at.selectbox(key="train_size").set_value(32)
    at.selectbox(key="train_width").set_value(4)
    at.selectbox(key="train_depth").set_value(1)
    at.slider(key="train_epochs").set_value(2)
    _run(at)
    at.button(key="train_start").click()
    _run(at)
    assert at.session_state["train_view"] == "Live"  # Start shows the live run
    job = at.session_state["train_job"]
    assert job.join(180) and job.error is None
    _run(at)
    assert any(c.value.startswith("**Live**: your own run") for c in at.caption)
    assert list(at.dataframe[0].value["loss"]) == ["Dice loss"]
    assert "train_curves" in {c.key for c in at.get("plotly_chart")}
    headers = " ".join(m.value for m in at.markdown)
    assert "Validation predictions after epoch 2" in headers and "Dice loss" in headers
    comparison = job.comparison()
    assert comparison["kind"] == "live" and comparison["grid"]["epochs"] == [[1, 2]]
    if SHIPPED:  # the structure a replay loads into: the views need nothing else
        played = T.load_replay(SHIPPED[0])
        assert {"kind", "device", "runs", "grid"} <= set(comparison) & set(played)
        assert set(comparison["runs"][0]) == set(played["runs"][0])
        assert set(comparison["grid"]) == set(played["grid"])
        assert set(comparison["runs"][0]["epochs"][0]) == set(played["runs"][0]["epochs"][0])


def test_picking_a_dataset_sets_its_preset():
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["main_tabs"] = "Train"
    _run(at)
    at.slider(key="train_epochs").set_value(3)
    _run(at)
    at.selectbox(key="train_dataset").set_value("tiny-objects")
    _run(at)
    preset = T.preset_config("tiny-objects")
    assert at.select_slider(key="train_lr").value == preset.learning_rate
    assert at.slider(key="train_epochs").value == preset.epochs  # the 3 is replaced
    at.selectbox(key="train_dataset").set_value("synthetic")
    _run(at)
    assert at.select_slider(key="train_lr").value == T.TrainConfig().learning_rate
