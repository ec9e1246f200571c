"""Training speed: the callback-driven :func:`~explorer.training.train` against a plain
``model.fit`` of the same model and data (seconds per epoch, images per second, the
callbacks' overhead).

    python -m explorer.bench.training --epochs 4
    python -m explorer.bench.training --image-size 128 --width 16 --batch-size 64 --repeats 5

It takes the training flags of ``python -m explorer.train`` and prints a table; no
timing is asserted anywhere.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import dataclasses  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from explorer.training.__main__ import command_parser, run_command  # noqa: E402
from explorer.training.data import make_pipeline  # noqa: E402
from explorer.training.loop import (  # noqa: E402
    TrainConfig, device_description, prepare, train)


def benchmark(config: TrainConfig | None = None, *, repeats=3, warmup_epochs=1) -> dict:
    """Time the callback-driven :func:`train` (``on_step``, ``on_epoch`` and
    ``should_stop`` all given) against a plain ``model.fit`` of the same model, data and
    epochs with Keras' own ``validation_data`` (both validate once per epoch; the
    overhead is against this one), and a bare ``model.fit`` without validation (the
    training alone, for reference).

    The two sides alternate ``repeats`` times; each run's first ``warmup_epochs``
    (tracing) are left out. Seconds per epoch are the minimum and the median over all
    timed epochs (the minimum is the least disturbed by other processes); images per
    second and the overhead in percent are from the minimum (the median's overhead is
    given too).
    """
    config = config or TrainConfig()
    total = config.epochs + warmup_epochs
    timed = dataclasses.replace(config, epochs=total, samples=0)
    seconds = {"train()": [], "model.fit": [], "fit, no val": []}
    n_train = None
    for _ in range(repeats):
        steps = []
        result = train(timed, on_step=lambda s, t, logs: steps.append(s),
                       on_epoch=lambda r: None, should_stop=lambda: False)
        seconds["train()"] += [r["seconds"] for r in result.epochs[warmup_epochs:]]
        n_train = len(result.data.x_train)

        data, model, train_ds, _, _ = prepare(timed)
        val_ds = make_pipeline(data.x_val, data.y_val, config.batch_size, shuffle=False)
        clock = _EpochClock()
        model.fit(train_ds, validation_data=val_ds, epochs=total, verbose=0, shuffle=False,
                  callbacks=[clock])
        seconds["model.fit"] += clock.seconds[warmup_epochs:]

        data, model, train_ds, _, _ = prepare(timed)
        clock = _EpochClock()
        model.fit(train_ds, epochs=total, verbose=0, shuffle=False, callbacks=[clock])
        seconds["fit, no val"] += clock.seconds[warmup_epochs:]
    rows = []
    for name, values in seconds.items():
        fastest, median = min(values), float(np.median(values))
        rows.append({"run": name, "seconds_per_epoch": fastest, "median_seconds": median,
                     "images_per_second": n_train / fastest})
    return {"device": device_description(), "config": config.to_dict(),
            "train_images": n_train, "epochs_timed": config.epochs * repeats, "rows": rows,
            "overhead_percent": 100 * (rows[0]["seconds_per_epoch"]
                                       / rows[1]["seconds_per_epoch"] - 1),
            "median_overhead_percent": 100 * (rows[0]["median_seconds"]
                                              / rows[1]["median_seconds"] - 1)}


class _EpochClock(keras.callbacks.Callback):
    """Epoch wall times only (no batch hooks, so Keras keeps its async dispatch)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def bench_table(report) -> str:
    lines = [f"device: {report['device']}; {report['train_images']} training images of "
             f"{report['config']['image_size']} px, batch {report['config']['batch_size']}, "
             f"{report['epochs_timed']} timed epochs per side (after warm-up)",
             f"{'run':<12}{'s/epoch min':>13}{'median':>9}{'images/s':>10}"]
    for row in report["rows"]:
        lines.append(f"{row['run']:<12}{row['seconds_per_epoch']:>13.3f}"
                     f"{row['median_seconds']:>9.3f}{row['images_per_second']:>10.1f}")
    lines.append(f"overhead of train() over model.fit with validation_data: "
                 f"{report['overhead_percent']:+.1f} % (min), "
                 f"{report['median_overhead_percent']:+.1f} % (median)")
    return "\n".join(lines)


def parser():
    p = command_parser("python -m explorer.bench.training", __doc__)
    p.add_argument("--repeats", type=int, default=3,
                   help="times each side runs (they alternate)")
    return p


def main(argv=None) -> int:
    return run_command(parser(), argv, lambda config, args: print(
        bench_table(benchmark(config, repeats=args.repeats))))


if __name__ == "__main__":
    raise SystemExit(main())
