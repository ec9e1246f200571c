"""The training library (explorer.training) and its CLI (explorer.train), kept tiny:
32 px images, small U-Nets, a few steps each."""

import json
import math

import numpy as np
import pytest

from explorer import losses as L
from explorer import train as cli
from explorer import training as T
from explorer.training import loop

# run_eagerly: no tf.function tracing (seconds per model on 2 cores); the compiled path is
# exercised by the stop and same-seed tests
TINY = dict(image_size=32, width=4, depth=2, batch_size=8, learning_rate=1e-2, samples=0,
            run_eagerly=True)


@pytest.fixture(scope="module")
def tiny_data():
    # 32 training + 8 validation images, 32x32, fewer but larger objects
    return T.load_dataset("synthetic", image_size=32, n=40, object_size=(0.08, 0.2))


def tiny_config(**changes):
    return T.TrainConfig(**{**TINY, "epochs": 2, **changes})


def test_loss_falls_and_validation_dice_beats_an_untrained_model(tiny_data):
    steps, records = [], []
    result = T.train(tiny_config(epochs=4, samples=2, run_eagerly=False), data=tiny_data,
                     on_step=lambda s, total, logs: steps.append((s, total, logs["loss"])),
                     on_epoch=records.append)
    assert [s for s, _, _ in steps] == list(range(1, 17))
    assert {total for _, total, _ in steps} == {16}
    assert all(math.isfinite(loss) for _, _, loss in steps)
    assert records == result.epochs and [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert set(T.RECORD_KEYS) <= set(records[0])
    assert result.epochs[-1]["loss"] < result.epochs[0]["loss"]
    assert not result.stopped and result.device.startswith(("CPU", "NVIDIA")) or result.device

    untrained = T.build_unet(32, width=4, depth=2)
    before = T.validation_metrics(tiny_data.y_val, untrained.predict(tiny_data.x_val, verbose=0),
                                  small_area=10)
    assert result.epochs[-1]["val_dice"] > (before["val_dice"] or 0) + 0.1
    # the strip: k validation triples, prediction as probabilities
    samples = result.samples
    assert samples["image"].shape == samples["truth"].shape == samples["prediction"].shape
    assert samples["image"].shape[0] == 2
    assert 0 <= samples["prediction"].min() and samples["prediction"].max() <= 1
    csv = result.to_csv().splitlines()
    assert csv[0].startswith("loss_name,epoch,loss,val_loss,val_dice") and len(csv) == 5


def test_should_stop_ends_after_the_current_step_and_keeps_results(tiny_data):
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) >= 3  # asked once before training, then after each step

    steps = []
    result = T.train(tiny_config(epochs=5, run_eagerly=False), data=tiny_data,
                     should_stop=should_stop,
                     on_step=lambda s, t, logs: steps.append(s))
    assert result.stopped
    assert steps == [1, 2]
    assert len(result.epochs) == 1 and result.epochs[0]["steps"] == 2
    assert result.epochs[0]["complete"] is False
    assert result.epochs[0]["val_dice"] is not None and result.model is not None
    json.loads(result.to_json())


def test_same_seed_gives_the_same_numbers(tiny_data):
    def numbers(seed):
        result = T.train(tiny_config(seed=seed, run_eagerly=False), data=tiny_data)
        return [{k: v for k, v in r.items() if k not in ("seconds", "elapsed")}
                for r in result.epochs]

    first = numbers(0)  # the compiled path, as the app and the CLI run it
    assert numbers(0) == first

    def initial_weights(seed):
        model = T.prepare(tiny_config(seed=seed), tiny_data)[1]
        return np.concatenate([w.ravel() for w in model.get_weights()])

    assert np.array_equal(initial_weights(2), initial_weights(2))
    assert not np.array_equal(initial_weights(2), initial_weights(3))


def test_compare_gives_one_result_per_loss(tiny_data, monkeypatch):
    monkeypatch.setattr(loop, "load_dataset", lambda *a, **k: tiny_data)
    seen = []
    results = T.compare(["dice_loss", "binary_crossentropy"], base=tiny_config(epochs=1, depth=1),
                        on_epoch=lambda r: seen.append((r["run"], r["loss_name"])))
    assert [r.config.loss for r in results] == ["dice_loss", "binary_crossentropy"]
    assert seen == [(0, "dice_loss"), (1, "binary_crossentropy")]
    assert all(r.data is tiny_data and r.config.seed == 0 for r in results)


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_every_loss_trains_one_step(name, tiny_data):
    data = T.Dataset("tiny", tiny_data.x_train[:8], tiny_data.y_train[:8],
                     tiny_data.x_val[:4], tiny_data.y_val[:4], image_size=32)
    result = T.train(tiny_config(loss=name, epochs=1, depth=1), data=data)
    record = result.epochs[0]
    assert record["steps"] == 1 and math.isfinite(record["loss"])
    assert record["val_dice"] is None or 0 <= record["val_dice"] <= 1
    takes_logits = name in L.TAKES_LOGITS
    assert result.info["logits"] is takes_logits
    assert result.model.get_layer("output").get_config()["activation"] == (
        "linear" if takes_logits else "sigmoid")


def test_cli_writes_well_formed_json(tmp_path, capsys):
    path = tmp_path / "run.json"
    code = cli.main(["--loss", "tversky_loss", "--alpha", "0.3", "--beta", "0.7",
                     "--loss-kw", "per_image=false", "--epochs", "2", "--image-size", "32",
                     "--width", "4", "--depth", "1", "--batch-size", "8", "--knob", "n=20",
                     "--run-eagerly",
                     "--json", str(path), "--csv", str(tmp_path / "run.csv")])
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("epoch ") == 2 and "val_dice" in out
    run = json.loads(path.read_text())
    assert isinstance(run["device"], str) and run["seconds"] > 0
    assert run["config"]["loss"] == "tversky_loss"
    assert run["config"]["loss_keywords"] == {"alpha": 0.3, "beta": 0.7, "per_image": False}
    assert len(run["epochs"]) == 2
    for record in run["epochs"]:
        assert {"loss", "val_dice", "val_iou", "val_dice_small", "seconds"} <= set(record)
    assert (tmp_path / "run.csv").read_text().count("\n") == 3


def test_cli_rejects_bad_settings_with_one_sentence(capsys):
    assert cli.main(["--loss", "focal_loss", "--smooth", "1", "--epochs", "1"]) == 2
    assert "focal_loss got an unknown keyword 'smooth'" in capsys.readouterr().err
    assert cli.main(["--loss", "dice_loss", "--image-size", "36"]) == 2
    assert "divisible" in capsys.readouterr().err


def test_benchmark_commands_take_the_training_flags(capsys):
    from explorer.bench import isolation, training as bench_training

    code = bench_training.main(["--epochs", "1", "--image-size", "32", "--width", "4",
                                "--depth", "1", "--batch-size", "8", "--knob", "n=20",
                                "--repeats", "1"])
    assert code == 0
    table = capsys.readouterr().out
    assert "16 training images of 32 px, batch 8" in table
    assert all(run in table for run in ("train()", "model.fit", "fit, no val", "overhead"))
    for command in (bench_training, isolation):  # a bad setting: one sentence, status 2
        assert command.main(["--loss", "focal_loss", "--smooth", "1"]) == 2
        assert "focal_loss got an unknown keyword 'smooth'" in capsys.readouterr().err


def test_synthetic_generator_is_deterministic_and_follows_its_knobs():
    x1, y1 = T.synthetic_dataset(6, 32, seed=3)
    x2, y2 = T.synthetic_dataset(6, 32, seed=3)
    assert x1.shape == y1.shape == (6, 32, 32, 1) and x1.dtype == np.float32
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, T.synthetic_dataset(6, 32, seed=4)[0])
    assert np.array_equal(T.synthetic_dataset(3, 32, seed=3)[0], x1[:3])  # prefix-stable
    assert 0 <= x1.min() and x1.max() <= 1 and set(np.unique(y1)) <= {0.0, 1.0}
    for target in (0.02, 0.1, 0.3):
        _, masks = T.synthetic_dataset(30, 64, foreground_fraction=target, seed=0)
        assert abs(masks.mean() - target) < 0.2 * target
    _, empty = T.synthetic_dataset(3, 32, foreground_fraction=0.0)
    assert empty.sum() == 0
    # small objects exist by default, so val_dice_small means something
    _, masks = T.synthetic_dataset(20, 64)
    assert T.small_object_mask(masks, 41).sum() > 0


def test_load_dataset_splits_and_caches():
    data = T.load_dataset("synthetic", image_size=32, n=50)
    assert (len(data.x_train), len(data.x_val)) == (40, 10)
    assert T.load_dataset("synthetic", image_size=32, n=50) is data
    assert not data.x_train.flags.writeable
    coins = T.load_dataset("coins", image_size=32)
    assert coins.x_train.shape[1:] == (32, 32, 1) and len(coins.x_val) > 0
    assert 0.2 < coins.foreground_fraction < 0.5
    with pytest.raises(ValueError, match="no knob 'sizes'"):
        T.load_dataset("synthetic", sizes=3)


def test_pipeline_is_cached_prefetched_and_flips_image_and_mask_together():
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
    batches = list(T.make_pipeline(x, x / 100, 2, shuffle=True, flips=True, seed=1))
    again = list(T.make_pipeline(x, x / 100, 2, shuffle=True, flips=True, seed=1))
    (bx, by), = batches
    assert np.array_equal(bx.numpy() / 100, by.numpy())  # same flip for both
    assert np.array_equal(bx.numpy(), again[0][0].numpy())
    assert sorted(bx.numpy().sum(axis=(1, 2, 3))) == sorted(x.sum(axis=(1, 2, 3)))


def test_small_object_dice_is_restricted_to_small_objects():
    truth = np.zeros((1, 32, 32, 1), np.float32)
    truth[0, 2:4, 2:4] = 1  # small: 4 px
    truth[0, 10:30, 10:30] = 1  # large: 400 px
    pred = truth.copy()
    pred[0, 2:4, 2:4] = 0  # the small object is missed
    metrics = T.validation_metrics(truth, pred, small_area=10)
    assert metrics["val_dice_small"] == 0.0
    assert metrics["val_dice"] == pytest.approx(800 / 804)
    pred = truth.copy()
    pred[0, 1, 2:4] = 1  # two FP pixels next to the small object
    pred[0, 9, 10:30] = 1  # FP next to the large object: not counted for small
    metrics = T.validation_metrics(truth, pred, small_area=10)
    assert metrics["val_dice_small"] == pytest.approx(8 / 10)
    assert T.validation_metrics(truth * 0, pred * 0, small_area=10)["val_dice_small"] is None


def test_unet_shapes_and_logits():
    model = T.build_unet(None, width=2, depth=2, logits=True)
    assert model(np.zeros((1, 16, 16, 1), np.float32)).shape == (1, 16, 16, 1)
    assert model(np.zeros((1, 32, 32, 1), np.float32)).shape == (1, 32, 32, 1)
    with pytest.raises(ValueError, match="divisible"):
        T.build_unet(36, depth=3)
    assert T.device_description()


def test_each_epoch_hands_over_a_strip_of_validation_predictions(tiny_data):
    strips = []
    T.train(tiny_config(samples=3), data=tiny_data, on_samples=strips.append)
    assert [s["epoch"] for s in strips] == [1, 2]
    last = strips[-1]
    assert last["prediction"].shape == last["truth"].shape == (3, 32, 32)
    assert 0 <= last["prediction"].min() and last["prediction"].max() <= 1
    assert np.array_equal(last["truth"], tiny_data.y_val[last["index"], ..., 0])
