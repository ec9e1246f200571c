"""Training: what to train (:class:`TrainConfig`), :func:`train` one configuration,
:func:`compare` several, and what a run gives back (:class:`TrainResult`).

Everything is deterministic for a given seed on the CPU (seeded data, seeded
initialisation, seeded shuffling and flips, and
``tf.config.experimental.enable_op_determinism()``).

:func:`train` runs ``model.fit`` with a callback that reports every step
(``on_step``) and epoch (``on_epoch``) and stops when ``should_stop()`` says so.
Per epoch it records::

    {"epoch", "loss", "val_loss", "val_dice", "val_iou", "val_dice_small",
     "seconds", "elapsed", "steps", "complete"}

- ``val_dice``, ``val_iou``, ``val_dice_small``: see :mod:`explorer.training.metrics`.
- ``val_loss``: the training loss on the validation set, batch by batch with the
  training batch size (as Keras' ``val_loss``), averaged weighted by batch size.

The loss is the public Keras class of :mod:`explorer.losses` for the configured name
(``explorer.losses.LOSS_CLASSES``), with the configured keywords.

Example::

    from explorer.training import TrainConfig, train
    result = train(TrainConfig(loss="dice_loss", epochs=4),
                   on_epoch=lambda r: print(r["epoch"], r["val_dice"]))
    print(result.device, result.seconds, result.to_json())
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from explorer import losses
from explorer.training.data import (DATASETS, Dataset, _float, _jsonable, load_dataset,
                                    make_pipeline)
from explorer.training.metrics import SMALL_AREA_FRACTION, small_object_regions, validation_metrics
from explorer.training.model import build_unet

SCHEDULES = ("cosine", "constant")
VALIDATION_CHUNK = 64  # validation images per forward call (rounded to whole batches)


@dataclass
class TrainConfig:
    """What to train. ``loss`` is a name in ``explorer.losses.LOSSES``; its keywords go
    in ``loss_keywords``; ``dataset_knobs`` go to :func:`load_dataset`.
    ``mixed_precision=None`` means: on exactly when a GPU is visible;
    ``deterministic=None``: ``tf.config.experimental.enable_op_determinism()`` only when
    no GPU is visible (on a GPU some ops have no deterministic kernel, or a slow one).
    Note that op determinism, once on, stays on for the whole process."""

    loss: str = "dice_loss"
    loss_keywords: dict = field(default_factory=dict)
    dataset: str = "synthetic"
    dataset_knobs: dict = field(default_factory=dict)
    image_size: int = 64
    epochs: int = 12
    batch_size: int = 16
    learning_rate: float = 1e-2
    schedule: str = "cosine"  # "cosine": decay to 5 % over all steps; or "constant"
    width: int = 8
    depth: int = 3
    seed: int = 0
    flips: bool = True
    mixed_precision: bool | None = None
    deterministic: bool | None = None  # None: op determinism on the CPU only
    run_eagerly: bool = False  # debugging and tiny tests: no tf.function tracing, slow steps
    small_area: int | None = None  # None: 1 % of the image (41 px at 64x64)
    samples: int = 4  # validation (image, truth, prediction) triples kept for a strip

    def validate(self) -> None:
        """Raise ``ValueError`` with one plain sentence for the first bad setting."""
        losses.check_keywords(self.loss, self.loss_keywords)
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, "
                             f"got {self.dataset!r}")
        for name in ("epochs", "batch_size", "width", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if not isinstance(self.depth, (int, np.integer)) or not 0 <= self.depth <= 6:
            raise ValueError(f"depth must be a whole number from 0 to 6, got {self.depth!r}")
        if self.image_size % 2 ** self.depth:
            raise ValueError(f"image_size must be divisible by 2**depth = {2 ** self.depth}, "
                             f"got {self.image_size}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, "
                             f"got {self.schedule!r}")
        if not (isinstance(self.learning_rate, (int, float)) and
                math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a number > 0, "
                             f"got {self.learning_rate!r}")

    def to_dict(self) -> dict:
        return _jsonable(dataclasses.asdict(self))


# Each dataset's training settings where they differ from TrainConfig's defaults: what the
# command line and the Train tab use for that dataset unless told otherwise. The numbers
# behind the tiny-objects preset (3 seeds, each loss) are in the README.
PRESETS = {
    "synthetic": {},
    "coins": {},
    "tiny-objects": {"epochs": 12, "learning_rate": 3e-3},
}


def preset_config(dataset: str = "synthetic", **changes) -> TrainConfig:
    """The :class:`TrainConfig` of ``dataset``'s preset (:data:`PRESETS`), with
    ``changes`` (any TrainConfig field) on top."""
    if dataset not in PRESETS:
        raise ValueError(f"dataset must be one of {', '.join(PRESETS)}, got {dataset!r}")
    return TrainConfig(**{**PRESETS[dataset], **changes, "dataset": dataset})


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def device_description() -> str:
    """The GPU name(s) TensorFlow sees (``"2 x NVIDIA H100 80GB HBM3"``), else
    ``"CPU (N cores)"``."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        cores = cpu_cores()
        return f"CPU ({cores} core{'s' if cores != 1 else ''})"
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name")
                         or gpu.name)
        except Exception:  # noqa: BLE001 - details are optional
            names.append(gpu.name)
    if len(set(names)) == 1 and len(names) > 1:
        return f"{len(names)} x {names[0]}"
    return ", ".join(names)


def keras_loss(name: str, keywords: dict) -> keras.losses.Loss:
    """The loss ``name`` with ``keywords`` for Keras: its public class in ``explorer.losses``."""
    return losses.LOSS_CLASSES[name](**keywords)


class _Progress(keras.callbacks.Callback):
    """Reports steps and epochs, validates once per epoch, stops on request."""

    def __init__(self, *, data, batch_size, loss_fn, logits, small_area, total_steps,
                 on_step, on_epoch, should_stop, start, eager=False, on_samples=None,
                 samples=0):
        super().__init__()
        self.data, self.batch_size, self.loss_fn = data, batch_size, loss_fn
        self.logits, self.small_area, self.total_steps = logits, small_area, total_steps
        self.on_step, self.on_epoch, self.should_stop = on_step, on_epoch, should_stop
        self.start, self.step, self.epoch_steps = start, 0, 0
        self.records, self.stopped = [], False
        self._forward, self.eager = None, eager
        self.on_samples, self.sample_indices = on_samples, _spread(len(data.x_val), samples)

    def on_train_begin(self, logs=None):
        model, loss_fn, size = self.model, self.loss_fn, self.batch_size
        self._x_val = tf.constant(self.data.x_val)
        self._y_val = tf.constant(self.data.y_val)
        self._regions = small_object_regions(self.data.y_val, self.small_area)

        def forward(x, y):
            # a chunk of whole batches in one call; the loss batch by batch (as Keras'
            # val_loss), summed weighted by batch size
            pred = model(x, training=False)
            n = x.shape[0]
            batch_losses = [loss_fn(y[i:i + size], pred[i:i + size]) * min(size, n - i)
                            for i in range(0, n, size)]
            return pred, tf.add_n(batch_losses)

        self._forward = forward if self.eager else tf.function(forward, reduce_retracing=True)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start, self.epoch_steps = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self.epoch_steps += 1
        if self.on_step is not None:
            self.on_step(self.step, self.total_steps, logs or {})
        if self.should_stop is not None and self.should_stop():
            self.stopped = True
            self.model.stop_training = True

    def validate(self):
        """Predictions (probabilities, or logits) and the mean validation loss."""
        chunk = self.batch_size * max(1, VALIDATION_CHUNK // self.batch_size)
        preds, total, n = [], 0.0, len(self.data.x_val)
        for i in range(0, n, chunk):
            pred, loss = self._forward(self._x_val[i:i + chunk], self._y_val[i:i + chunk])
            preds.append(pred.numpy())
            total += float(loss)
        return np.concatenate(preds), total / n

    def on_epoch_end(self, epoch, logs=None):
        pred, val_loss = self.validate()
        positive = pred >= (0.0 if self.logits else 0.5)
        record = {"epoch": epoch + 1, "loss": _float(logs.get("loss") if logs else None),
                  "val_loss": _float(val_loss),
                  **validation_metrics(self.data.y_val, positive, small_area=self.small_area,
                                       regions=self._regions),
                  "seconds": time.perf_counter() - self.epoch_start,
                  "elapsed": time.perf_counter() - self.start,
                  "steps": self.epoch_steps,
                  "complete": not self.model.stop_training}
        self.records.append(record)
        if self.on_epoch is not None:
            self.on_epoch(dict(record))
        if self.on_samples is not None and len(self.sample_indices):
            chosen = pred[self.sample_indices]
            self.on_samples({"epoch": epoch + 1, "index": self.sample_indices,
                             "image": self.data.x_val[self.sample_indices, ..., 0],
                             "truth": self.data.y_val[self.sample_indices, ..., 0],
                             "prediction": (1 / (1 + np.exp(-chosen)) if self.logits
                                            else chosen)[..., 0]})


def _spread(n, k):
    """``k`` indices evenly spread over ``n`` items."""
    if n == 0 or k <= 0:
        return np.zeros(0, int)
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


RECORD_KEYS = ("epoch", "loss", "val_loss", "val_dice", "val_iou", "val_dice_small",
               "seconds", "elapsed", "steps", "complete")


@dataclass(eq=False)
class TrainResult:
    """One training run. ``epochs`` holds the per-epoch records (the last one may be
    partial, ``complete=False``, when stopped); ``samples`` a few validation triples
    ``{"image", "truth", "prediction"}`` (arrays ``[k, S, S]``, prediction as
    probabilities) for a strip; ``model`` the trained Keras model."""

    config: TrainConfig
    device: str
    seconds: float
    epochs: list
    stopped: bool
    model: keras.Model | None = None
    data: Dataset | None = None
    samples: dict | None = None
    info: dict = field(default_factory=dict)

    @property
    def final(self) -> dict | None:
        return self.epochs[-1] if self.epochs else None

    def predict_samples(self, k=4, indices=None) -> dict:
        """``k`` validation triples (evenly spread over the validation set unless
        ``indices`` are given): ``{"index", "image", "truth", "prediction"}``."""
        x_val, y_val = self.data.x_val, self.data.y_val
        if indices is None:
            indices = _spread(len(x_val), max(1, k))
        indices = np.asarray(indices, int)
        pred = self.model(tf.constant(x_val[indices]), training=False).numpy()
        if self.info.get("logits"):
            pred = 1 / (1 + np.exp(-pred))
        return {"index": indices, "image": x_val[indices, ..., 0],
                "truth": y_val[indices, ..., 0], "prediction": pred[..., 0]}

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "device": self.device,
                "seconds": _float(self.seconds), "stopped": self.stopped,
                "epochs": _jsonable(self.epochs),
                "dataset": self.data.summary() if self.data is not None else None,
                **_jsonable(self.info)}

    def to_json(self, path=None, *, indent=2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_csv(self, path=None) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=("loss_name",) + RECORD_KEYS,
                                lineterminator="\n")
        writer.writeheader()
        for record in self.epochs:
            writer.writerow({"loss_name": self.config.loss,
                             **{k: ("" if record.get(k) is None else record.get(k))
                                for k in RECORD_KEYS}})
        if path is not None:
            Path(path).write_text(out.getvalue())
        return out.getvalue()


def _strategy():
    gpus = tf.config.list_physical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else None


def prepare(config: TrainConfig, data: Dataset | None = None):
    """Seed everything and build ``(data, model, train_ds, strategy, info)`` for
    ``config`` (used by :func:`train` and :mod:`explorer.bench.training`)."""
    config.validate()
    gpus = tf.config.list_physical_devices("GPU")
    deterministic = not gpus if config.deterministic is None else bool(config.deterministic)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    if data is None:
        data = load_dataset(config.dataset, image_size=config.image_size, seed=config.seed,
                            **config.dataset_knobs)
    if data.image_size % 2 ** config.depth:
        raise ValueError(f"image_size {data.image_size} is not divisible by 2**depth")
    mixed = bool(gpus) if config.mixed_precision is None else bool(config.mixed_precision)
    logits = losses.takes_logits(config.loss, config.loss_keywords)  # from_logits=True too
    strategy = _strategy()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            model = build_unet(data.image_size, width=config.width, depth=config.depth,
                               logits=logits)
            rate = config.learning_rate
            if config.schedule == "cosine":
                steps = config.epochs * math.ceil(len(data.x_train) / config.batch_size)
                rate = keras.optimizers.schedules.CosineDecay(rate, steps, alpha=0.05)
            model.compile(optimizer=keras.optimizers.Adam(rate),
                          loss=keras_loss(config.loss, config.loss_keywords),
                          run_eagerly=config.run_eagerly)
    finally:
        keras.config.set_dtype_policy(previous)
    train_ds = make_pipeline(data.x_train, data.y_train, config.batch_size, shuffle=True,
                             flips=config.flips, seed=config.seed)
    info = {"logits": logits, "mixed_precision": mixed, "deterministic": deterministic,
            "strategy": type(strategy).__name__ if strategy is not None else None,
            "parameters": int(model.count_params()),
            "tensorflow": tf.__version__, "keras": keras.__version__}
    return data, model, train_ds, strategy, info


def train(config: TrainConfig | None = None, *, on_epoch: Callable | None = None,
          on_step: Callable | None = None, should_stop: Callable | None = None,
          data: Dataset | None = None, on_samples: Callable | None = None) -> TrainResult:
    """Train a U-Net on ``config``'s data with its loss and return a :class:`TrainResult`.

    - ``on_step(step, total_steps, logs)`` after every training batch (``logs["loss"]``
      is the running mean of the epoch's loss); keep it cheap.
    - ``on_epoch(record)`` after every epoch with the record described in the module
      docstring.
    - ``should_stop()`` is asked after every batch; when it returns True training ends
      after that step (``model.stop_training``), the partial epoch is validated and
      recorded with ``complete=False``, and the result has ``stopped=True``.
    - ``data``: a :class:`Dataset` to use instead of ``config.dataset``.
    - ``on_samples(samples)`` after every epoch with ``config.samples`` validation
      triples ``{"epoch", "index", "image", "truth", "prediction"}`` (probabilities),
      for a strip of predictions that sharpens as training goes.
    """
    config = config or TrainConfig()
    start = time.perf_counter()
    data, model, train_ds, _, info = prepare(config, data)
    steps_per_epoch = math.ceil(len(data.x_train) / config.batch_size)
    small_area = config.small_area or max(1, round(SMALL_AREA_FRACTION * data.image_size ** 2))
    progress = _Progress(data=data, batch_size=config.batch_size,
                         loss_fn=keras_loss(config.loss, config.loss_keywords),
                         logits=info["logits"], small_area=small_area,
                         total_steps=steps_per_epoch * config.epochs, on_step=on_step,
                         on_epoch=on_epoch, should_stop=should_stop, start=start,
                         eager=config.run_eagerly, on_samples=on_samples,
                         samples=config.samples)
    stopped_before = should_stop is not None and should_stop()
    if not stopped_before:
        model.fit(train_ds, epochs=config.epochs, verbose=0, shuffle=False,
                  callbacks=[progress])
    info.update({"small_area": small_area, "steps_per_epoch": steps_per_epoch,
                 "steps": progress.step})
    result = TrainResult(config=config, device=device_description(),
                         seconds=time.perf_counter() - start, epochs=progress.records,
                         stopped=progress.stopped or stopped_before, model=model, data=data,
                         info=info)
    if config.samples:
        result.samples = result.predict_samples(config.samples)
    return result


def compare(configs, *, base: TrainConfig | None = None, on_start: Callable | None = None,
            on_epoch: Callable | None = None, on_step: Callable | None = None,
            should_stop: Callable | None = None,
            on_samples: Callable | None = None) -> list[TrainResult]:
    """Train several configurations one after another (same data and seed unless they
    say otherwise) and return one :class:`TrainResult` each.

    ``configs`` holds :class:`TrainConfig` objects or loss names (a name is ``base``,
    default ``TrainConfig()``, with that loss and its default keywords). ``on_start(i,
    config)`` before run ``i``; ``on_epoch``, ``on_step`` and ``on_samples`` as in
    :func:`train` but the record (logs, samples) carry ``"run": i`` and
    ``"loss_name"``. When ``should_stop()`` stops a run, the remaining runs are skipped.
    """
    base = base or TrainConfig()
    runs = [dataclasses.replace(base, loss=c, loss_keywords={}) if isinstance(c, str) else c
            for c in configs]
    for run in runs:
        run.validate()
    results = []
    for i, run in enumerate(runs):
        if on_start is not None:
            on_start(i, run)
        tag = {"run": i, "loss_name": run.loss}
        epoch_cb = None if on_epoch is None else (lambda r, tag=tag: on_epoch({**r, **tag}))
        step_cb = None if on_step is None else (
            lambda s, t, logs, tag=tag: on_step(s, t, {**logs, **tag}))
        samples_cb = None if on_samples is None else (
            lambda samples, tag=tag: on_samples({**samples, **tag}))
        result = train(run, on_epoch=epoch_cb, on_step=step_cb, should_stop=should_stop,
                       on_samples=samples_cb)
        results.append(result)
        if result.stopped:
            break
    return results
