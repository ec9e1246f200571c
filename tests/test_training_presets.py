"""The tiny-objects preset, comparisons over losses and seeds (--compare/--seeds/--json),
and replays (explorer.training.replays), kept tiny: 32 px, a step or two per run."""

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from explorer.training import __main__ as cli  # the command line (explorer.train is a shim)
from explorer import training as T
from explorer.training import loop, replays

# one epoch of a tiny U-Net on 16 + 4 images of 32 px, eagerly (no tracing): seconds
TINY_FLAGS = ["--epochs", "1", "--image-size", "32", "--width", "4", "--depth", "1",
              "--batch-size", "8", "--knob", "n=20", "--samples", "2", "--run-eagerly",
              "--quiet"]


def _components(masks):
    areas, counts = [], []
    for mask in masks[..., 0] >= 0.5:
        labels, count = ndimage.label(mask, np.ones((3, 3), bool))
        counts.append(count)
        areas += np.bincount(labels.ravel())[1:].tolist()
    return np.array(areas), np.array(counts)


def test_tiny_objects_has_a_few_tiny_objects_and_half_a_percent_foreground():
    data = T.load_dataset("tiny-objects", seed=0)
    assert data.x_train.shape == (256, 64, 64, 1) and data.x_val.shape == (64, 64, 64, 1)
    assert 0.003 < data.foreground_fraction < 0.008  # 0.49 % for seed 0
    areas, counts = _components(np.concatenate([data.y_train, data.y_val]))
    assert counts.min() >= 1 and counts.max() <= 4  # every image has 1-4 objects
    assert areas.max() <= 41  # all small: at most 1 % of the image (the small-object rule)
    assert 3 <= np.median(areas) <= 15 and areas.min() >= 1
    # every truth pixel counts for the small-object Dice
    small = T.small_object_mask(data.y_val, round(T.SMALL_AREA_FRACTION * 64 * 64))
    assert small.sum() == data.y_val.sum()


def test_tiny_objects_is_a_function_of_its_seed():
    data = T.load_dataset("tiny-objects", image_size=32, seed=3, n=10)
    knobs = {k: v for k, v in T.TINY_OBJECTS_DEFAULTS.items() if k != "n"}
    x, y = T.synthetic_dataset(10, 32, seed=3, **knobs)
    assert np.array_equal(np.concatenate([data.x_train, data.x_val]), x)
    assert np.array_equal(np.concatenate([data.y_train, data.y_val]), y)
    other = T.load_dataset("tiny-objects", image_size=32, seed=4, n=10)
    assert not np.array_equal(other.y_train, data.y_train)
    with pytest.raises(ValueError, match="the tiny-objects dataset has no knob 'sizes'"):
        T.load_dataset("tiny-objects", sizes=3)


def test_the_preset_sets_the_defaults_and_flags_override_it():
    preset = T.preset_config("tiny-objects")
    assert preset.dataset == "tiny-objects"
    for name, value in T.PRESETS["tiny-objects"].items():
        assert getattr(preset, name) == value
    assert T.preset_config("synthetic") == T.TrainConfig()
    args = cli.parser().parse_args(["--dataset", "tiny-objects"])
    assert cli.config_from_args(args) == preset
    args = cli.parser().parse_args(["--dataset", "tiny-objects", "--epochs", "3"])
    assert cli.config_from_args(args).epochs == 3
    assert cli.config_from_args(args).learning_rate == preset.learning_rate


def test_compare_over_seeds_writes_one_run_per_loss_and_seed(tmp_path, capsys):
    path = tmp_path / "out.json"
    code = cli.main(["--dataset", "tiny-objects", "--compare", "dice_loss,binary_crossentropy",
                     "--seeds", "0,1", *TINY_FLAGS, "--json", str(path),
                     "--csv", str(tmp_path / "out.csv")])
    assert code == 0
    out = json.loads(path.read_text())
    pairs = [(run["loss"], run["seed"]) for run in out["runs"]]
    assert pairs == [("dice_loss", 0), ("binary_crossentropy", 0),
                     ("dice_loss", 1), ("binary_crossentropy", 1)]
    for run in out["runs"]:
        assert run["seconds"] > 0 and run["device"].startswith(("CPU", "NVIDIA")) or run["device"]
        assert run["config"]["dataset"] == "tiny-objects" and run["config"]["epochs"] == 1
        assert len(run["epochs"]) == 1
        epoch = run["epochs"][0]
        assert {"loss", "val_dice", "val_iou", "val_small_dice"} <= set(epoch)
        assert epoch["val_small_dice"] == epoch["val_dice_small"]
    assert [r["label"] for r in out["runs"][:2]] == ["Dice loss", "BCE"]
    table = capsys.readouterr().out
    assert "Dice loss" in table and "BCE" in table and "±" in table
    assert "small-object Dice, Dice loss minus BCE:" in table
    assert (tmp_path / "out.csv").read_text().count("\n") == 5  # header + 4 runs x 1 epoch


@pytest.mark.parametrize("flags, message", [
    (["--compare", "dice_loss,dice"], "--compare takes loss names"),
    (["--compare", "tversky_loss(alpha=0.3"], "must end with ')'"),
    (["--compare", "dice_loss", "--alpha", "0.3"], "no compared loss takes the keyword 'alpha'"),
    (["--compare", "dice_loss", "--seeds", "0,x"], "--seeds takes whole numbers"),
])
def test_bad_compare_settings_are_one_sentence(flags, message, capsys):
    assert cli.main([*flags, *TINY_FLAGS]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_compare_names_carry_their_keywords():
    assert cli.parse_losses("dice_loss, tversky_loss(alpha=0.3, beta=0.7),lovasz_hinge") == [
        ("dice_loss", {}), ("tversky_loss", {"alpha": 0.3, "beta": 0.7}), ("lovasz_hinge", {})]
    args = cli.parser().parse_args(["--compare", "dice_loss,tversky_loss(beta=0.8)",
                                    "--alpha", "0.2", "--smooth", "0.5", "--seeds", "1,2"])
    configs = cli.comparison_configs(cli.config_from_args(args), args)
    assert [(c.loss, c.seed, c.loss_keywords) for c in configs] == [
        ("dice_loss", 1, {"smooth": 0.5}),
        ("tversky_loss", 1, {"alpha": 0.2, "smooth": 0.5, "beta": 0.8}),
        ("dice_loss", 2, {"smooth": 0.5}),
        ("tversky_loss", 2, {"alpha": 0.2, "smooth": 0.5, "beta": 0.8})]
    assert replays.loss_label("tversky_loss", {"alpha": 0.3, "beta": 0.7}) == \
        "Tversky loss (α 0.3, β 0.7)"
    assert replays.loss_label("lovasz_hinge") == "Lovász"


def test_a_replay_plays_back_what_the_live_comparison_recorded(tmp_path, monkeypatch):
    tiny = T.load_dataset("tiny-objects", image_size=32, n=20)
    monkeypatch.setattr(loop, "load_dataset", lambda *a, **k: tiny)
    base = T.TrainConfig(dataset="tiny-objects", image_size=32, width=4, depth=1, batch_size=8,
                         epochs=2, samples=2, run_eagerly=True)
    configs = [dataclasses.replace(base, loss=name, seed=seed)
               for seed in (0, 1) for name in ("dice_loss", "binary_crossentropy")]
    recorder = replays.Recorder(configs, command="test")
    results = T.compare(configs, on_epoch=recorder.add_epoch, on_samples=recorder.add_samples)
    recorder.add_results(results)
    live = recorder.comparison()
    grid = live["grid"]
    assert grid["seed"] == 0 and grid["runs"] == [0, 1]  # the first seed's runs
    assert grid["image"].shape == grid["truth"].shape == (2, 32, 32)
    assert [p.shape for p in grid["prediction"]] == [(2, 2, 32, 32)] * 2
    assert grid["epochs"] == [[1, 2], [1, 2]]

    replays.save_replay(live, tmp_path / "tiny")
    played = replays.load_replay(tmp_path / "tiny.json")
    assert played["kind"] == "replay" and live["kind"] == "live"
    assert json.dumps(played["runs"]) == json.dumps(replays.to_json_dict(live)["runs"])
    for key in ("image", "truth", "index"):
        assert np.array_equal(played["grid"][key], grid[key])
    for a, b in zip(played["grid"]["prediction"], grid["prediction"]):
        assert np.array_equal(a, b)  # both 8-bit: the replay shows what the live run showed
    assert played["grid"]["epochs"] == grid["epochs"] and played["grid"]["runs"] == [0, 1]


def test_summaries_give_mean_and_spread_over_seeds():
    def run(loss, seed, small):
        return {"loss": loss, "label": replays.loss_label(loss), "loss_key": loss,
                "loss_keywords": {}, "seed": seed, "seconds": 10.0, "device": "CPU",
                "config": {"dataset": "tiny-objects", "image_size": 64},
                "epochs": [{"epoch": 1, "val_dice": small / 2, "val_small_dice": small},
                           {"epoch": 2, "val_dice": small, "val_small_dice": small}]}

    comparison = {"runs": [run("dice_loss", 0, 0.5), run("binary_crossentropy", 0, 0.1),
                           run("dice_loss", 1, 0.7), run("binary_crossentropy", 1, 0.0)]}
    dice, bce = replays.summarize(comparison)
    assert (dice["label"], bce["label"]) == ("Dice loss", "BCE")
    assert dice["seeds"] == [0, 1] and dice["runs"] == [0, 2]
    final = dice["final"]["val_small_dice"]
    assert final["mean"] == pytest.approx(0.6)
    assert final["sd"] == pytest.approx(0.2 / 2 ** 0.5)  # sample sd of 0.5 and 0.7
    assert (final["low"], final["high"]) == (0.5, 0.7)
    assert dice["curves"]["val_dice"]["mean"] == pytest.approx([0.3, 0.6])
    assert replays.final_difference(comparison) == pytest.approx({0: 0.4, 1: 0.7})
    table = replays.summary_table(comparison)
    assert "0.600 ± 0.141  (0.50 0.70)" in table
    assert "Dice loss minus BCE: +0.400 +0.700 (mean +0.550)" in table


def test_unknown_replay_is_one_sentence(tmp_path):
    with pytest.raises(ValueError, match="there is no replay 'nope'"):
        replays.load_replay("nope", tmp_path)
