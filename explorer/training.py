"""Train a small U-Net with any loss of :mod:`explorer.losses` (no Streamlit here).

The library half of the Train tab. Everything is deterministic for a given seed on
the CPU (seeded data, seeded initialisation, seeded shuffling and flips, and
``tf.config.experimental.enable_op_determinism()``).

Data (``load_dataset``):

- ``"synthetic"`` (the default): random discs, ellipses and blobs of many sizes on
  a shaded background, blurred and noisy (:func:`synthetic_dataset`). Knobs: object
  size, count, foreground fraction (class imbalance), noise, blur, contrast.
- ``"coins"``: 1:1 tiles of scikit-image's bundled ``coins()`` picture with masks
  from a classical pipeline (local threshold, small specks removed, holes filled,
  opening), shipped in ``sample_data/training/coins.npz``; see
  ``sample_data/PROVENANCE.md``. The left 288 columns give the training tiles, the
  right 96 columns the validation tiles (no overlap between the two).

Training (``train``) runs ``model.fit`` with a callback that reports every step
(``on_step``) and epoch (``on_epoch``) and stops when ``should_stop()`` says so.
Per epoch it records::

    {"epoch", "loss", "val_loss", "val_dice", "val_iou", "val_dice_small",
     "seconds", "elapsed", "steps", "complete"}

- ``val_dice`` / ``val_iou``: hard Dice (pixel F1) and IoU of the predictions
  thresholded at 0.5 (logit 0 for a logits model), pooled over the whole
  validation set (as ``explorer.losses.hard_metrics(per_image=False)``).
- ``val_dice_small``: the same hard Dice restricted to *small objects*: the truth's
  8-connected components of at most ``small_area`` pixels (default 1 % of the image,
  41 px at 64x64, a disc of radius 3.6 px). Pixels counted: the small objects
  themselves (TP and FN) plus predicted pixels within ``SMALL_MARGIN`` (2) pixels of
  a small object that are not part of a larger truth object (FP). Pooled over the
  validation set; ``None`` when the validation set has no small object.
- ``val_loss``: the training loss on the validation set, batch by batch with the
  training batch size (as Keras' ``val_loss``), averaged weighted by batch size.

For a server (the Train tab): :class:`TrainingJob` runs :func:`compare` in a child
process at low priority and streams the same records back, and a
:class:`TrainingLimiter` caps the runs going at once (``$EXPLORER_MAX_TRAINING_RUNS``)
and queues the others first come, first served. :func:`bench_isolation` measures
how much a run slows the server's own work, in a thread versus in a process.

Example::

    from explorer.training import TrainConfig, train
    result = train(TrainConfig(loss="dice_loss", epochs=4),
                   on_epoch=lambda r: print(r["epoch"], r["val_dice"]))
    print(result.device, result.seconds, result.to_json())
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import multiprocessing
import os
import queue as queue_module
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage

from explorer import losses as L

DATASETS = ("synthetic", "coins")
SCHEDULES = ("cosine", "constant")
SMALL_AREA_FRACTION = 0.01  # small object: at most 1 % of the image's pixels
VALIDATION_CHUNK = 64  # validation images per forward call (rounded to whole batches)
SMALL_MARGIN = 2  # px around a small object where predicted pixels count as its FPs
COINS_FILE = Path(__file__).resolve().parent.parent / "sample_data" / "training" / "coins.npz"
COINS_VAL_COLUMN = 288  # of the 384 columns of coins(): the right 96 are validation
COINS_STRIDE = 16  # tile stride at 64 px scale (tiles overlap by three quarters)

SYNTHETIC_DEFAULTS = {
    "n": 320,  # images in all; 80 % training, 20 % validation
    "object_size": (0.03, 0.15),  # radius range, fraction of the side (log-uniform)
    "object_count": (1, 8),  # objects per image (inclusive range)
    "foreground_fraction": None,  # a target share of foreground pixels instead of a count
    "noise": 0.08,  # std of Gaussian noise (image in [0, 1])
    "blur": 1.0,  # Gaussian blur sigma in px at 64 px (scaled with the size)
    "contrast": (0.15, 0.5),  # object brightness above the background, per object
}


# ============================================================================ data


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training and validation arrays ``[N, S, S, 1]`` float32 (images in [0, 1],
    masks 0/1), with where they came from."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    image_size: int
    description: str = ""
    provenance: str = ""
    knobs: dict = field(default_factory=dict)

    @property
    def foreground_fraction(self) -> float:
        return float(np.concatenate([self.y_train.ravel(), self.y_val.ravel()]).mean())

    def summary(self) -> dict:
        return {"name": self.name, "image_size": self.image_size,
                "train_images": int(len(self.x_train)), "val_images": int(len(self.x_val)),
                "foreground_fraction": round(self.foreground_fraction, 5),
                "knobs": _jsonable(self.knobs), "description": self.description}


def _draw_object(rng, size, radius):
    """One random disc, ellipse or blob (union of 2-4 discs) as a boolean mask."""
    from skimage import draw

    out = np.zeros((size, size), bool)
    cy, cx = rng.uniform(0, size, 2)
    kind = rng.integers(3)
    if kind == 0:
        rr, cc = draw.disk((cy, cx), max(radius, 0.8), shape=out.shape)
    elif kind == 1:
        ratio = rng.uniform(0.45, 1.0)
        rr, cc = draw.ellipse(cy, cx, max(radius, 0.8), max(radius * ratio, 0.8),
                              shape=out.shape, rotation=rng.uniform(0, np.pi))
    else:
        parts = [draw.disk((cy + dy, cx + dx), max(radius * rng.uniform(0.55, 0.85), 0.8),
                           shape=out.shape)
                 for dy, dx in rng.uniform(-0.5, 0.5, (int(rng.integers(2, 5)), 2)) * radius]
        rr = np.concatenate([p[0] for p in parts])
        cc = np.concatenate([p[1] for p in parts])
    out[rr, cc] = True
    return out


def _pair(value, name, cast=float):
    if np.ndim(value) == 0:
        return cast(value), cast(value)
    if len(value) != 2:
        raise ValueError(f"{name} must be one number or a (low, high) pair, got {value!r}")
    low, high = cast(value[0]), cast(value[1])
    if low > high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value!r}")
    return low, high


def synthetic_image(index, size=64, *, object_size=SYNTHETIC_DEFAULTS["object_size"],
                    object_count=SYNTHETIC_DEFAULTS["object_count"], foreground_fraction=None,
                    noise=SYNTHETIC_DEFAULTS["noise"], blur=SYNTHETIC_DEFAULTS["blur"],
                    contrast=SYNTHETIC_DEFAULTS["contrast"], seed=0):
    """Image ``index`` of the synthetic set: ``(image [S, S] float32, mask [S, S] bool)``.

    It depends only on ``(seed, index)`` and the knobs, so a set's first images do not
    change with its length.
    """
    rng = np.random.default_rng([seed, index])
    r_low, r_high = (max(v * size, 0.8) for v in _pair(object_size, "object_size"))
    c_low, c_high = _pair(contrast, "contrast")
    mask = np.zeros((size, size), bool)
    brightness = np.zeros((size, size), np.float64)

    def radius():
        return float(np.exp(rng.uniform(np.log(r_low), np.log(r_high))))

    def add(obj):
        nonlocal mask
        level = rng.uniform(c_low, c_high)
        brightness[obj] = np.maximum(brightness[obj], level)
        mask = mask | obj

    if foreground_fraction is None:
        n_low, n_high = _pair(object_count, "object_count", int)
        for _ in range(int(rng.integers(n_low, n_high + 1))):
            add(_draw_object(rng, size, radius()))
    else:
        target = float(foreground_fraction)
        if not 0 <= target < 1:
            raise ValueError(f"foreground_fraction must be in [0, 1), got {target!r}")
        pixels = size * size
        for _ in range(2000):  # add objects until the share reaches the target
            have = mask.sum() / pixels
            if have >= target:
                break
            obj = _draw_object(rng, size, radius()) & ~mask
            after = have + obj.sum() / pixels
            if after > target and after - target > target - have:  # overshoots: smaller
                continue
            add(obj)

    yy, xx = np.mgrid[0:size, 0:size] / size
    gy, gx = rng.uniform(-0.15, 0.15, 2)  # a gentle illumination gradient
    image = rng.uniform(0.25, 0.45) + gy * (yy - 0.5) + gx * (xx - 0.5) + brightness
    sigma = blur * size / 64
    if sigma > 0:
        image = ndimage.gaussian_filter(image, sigma)
    if noise > 0:
        image = image + rng.normal(0, noise, image.shape)
    return np.clip(image, 0, 1).astype(np.float32), mask


def synthetic_dataset(n, size=64, *, object_size=SYNTHETIC_DEFAULTS["object_size"],
                      object_count=SYNTHETIC_DEFAULTS["object_count"], foreground_fraction=None,
                      noise=SYNTHETIC_DEFAULTS["noise"], blur=SYNTHETIC_DEFAULTS["blur"],
                      contrast=SYNTHETIC_DEFAULTS["contrast"], seed=0):
    """``n`` random images with discs, ellipses and blobs: ``(images, masks)``, both
    ``[n, size, size, 1]`` float32 (images in [0, 1], masks 0/1).

    - ``object_size``: ``(low, high)`` radius as a fraction of ``size``, drawn
      log-uniformly, so small objects are common (default 0.03-0.15: 2-10 px at 64 px).
    - ``object_count``: ``(low, high)`` objects per image (inclusive), or one number.
    - ``foreground_fraction``: when given, objects are added to each image until its
      foreground share reaches this value (``object_count`` is then ignored); small
      values make the class imbalance strong. 0 gives empty masks.
    - ``noise``: std of additive Gaussian noise; ``blur``: Gaussian sigma in pixels at
      64 px (scaled with ``size``), applied before the noise.
    - ``contrast``: ``(low, high)`` brightness of each object above the background.

    Deterministic: image ``i`` depends only on ``(seed, i)`` and the knobs.
    """
    if int(n) < 0 or int(size) < 4:
        raise ValueError(f"need n >= 0 and size >= 4, got n={n!r}, size={size!r}")
    images = np.zeros((int(n), size, size, 1), np.float32)
    masks = np.zeros((int(n), size, size, 1), np.float32)
    for i in range(int(n)):
        image, mask = synthetic_image(
            i, size, object_size=object_size, object_count=object_count,
            foreground_fraction=foreground_fraction, noise=noise, blur=blur,
            contrast=contrast, seed=seed)
        images[i, ..., 0], masks[i, ..., 0] = image, mask
    return images, masks


def coins_source():
    """The whole ``skimage.data.coins()`` picture (303x384 uint8) and its binary mask
    from the classical pipeline of ``sample_data/make_gallery.py`` (without its crop):
    ``threshold_local(block_size=151, offset=-10)``, components of <= 300 px removed,
    holes filled, opening with ``disk(2)``, components of <= 300 px removed again."""
    import inspect

    from skimage import data, filters, morphology

    def remove_small(binary, size):  # the keyword was renamed in scikit-image 0.26
        if "max_size" in inspect.signature(morphology.remove_small_objects).parameters:
            return morphology.remove_small_objects(binary, max_size=size)
        return morphology.remove_small_objects(binary, min_size=size + 1)

    grey = data.coins()
    foreground = grey > filters.threshold_local(grey, block_size=151, offset=-10)
    foreground = remove_small(foreground, 300)
    foreground = ndimage.binary_fill_holes(foreground)
    foreground = ndimage.binary_opening(foreground, structure=morphology.disk(2))
    foreground = remove_small(foreground, 300)
    return grey, foreground


def _coins_arrays():
    """The shipped ``coins.npz`` (made by sample_data/training/make_training_data.py),
    or the same arrays computed from scikit-image when the file is missing."""
    if COINS_FILE.is_file():
        with np.load(COINS_FILE, allow_pickle=False) as shipped:
            return shipped["image"], shipped["mask"].astype(bool)
    return coins_source()


def _tiles(image, mask, size, stride):
    rows = range(0, image.shape[0] - size + 1, stride)
    cols = range(0, image.shape[1] - size + 1, stride)
    xs = [image[r:r + size, c:c + size] for r in rows for c in cols]
    ys = [mask[r:r + size, c:c + size] for r in rows for c in cols]
    return (np.stack(xs)[..., None].astype(np.float32),
            np.stack(ys)[..., None].astype(np.float32))


def coins_dataset(image_size=64, *, stride=COINS_STRIDE):
    """Tiles of the coins picture: ``(x_train, y_train, x_val, y_val)``.

    At ``image_size`` S the picture is resized by S/64 (64 px: 1:1 pixels), so the tiles
    show the same content at every size. Tiles of S x S are cut every ``stride * S/64``
    pixels, training tiles from the left 288 columns, validation tiles from the right 96
    (225 + 45 tiles at 64 px with the default stride).
    """
    from skimage import transform

    grey, mask = _coins_arrays()
    image = grey.astype(np.float32) / 255
    mask = mask.astype(np.float32)
    scale = image_size / 64
    if scale != 1:
        shape = (round(image.shape[0] * scale), round(image.shape[1] * scale))
        image = transform.resize(image, shape, order=1, anti_aliasing=scale < 1).astype(np.float32)
        mask = (transform.resize(mask, shape, order=1, anti_aliasing=scale < 1) >= 0.5)
    split = round(COINS_VAL_COLUMN * scale)
    step = max(1, round(stride * scale))
    x_train, y_train = _tiles(image[:, :split], mask[:, :split], image_size, step)
    x_val, y_val = _tiles(image[:, split:], mask[:, split:], image_size, step)
    return x_train, y_train, x_val, y_val


@lru_cache(maxsize=8)
def _load_cached(name, image_size, seed, validation_fraction, knob_items):
    knobs = dict(knob_items)
    if name == "synthetic":
        unknown = sorted(set(knobs) - set(SYNTHETIC_DEFAULTS))
        if unknown:
            raise ValueError(f"the synthetic dataset has no knob {unknown[0]!r}; accepted: "
                             f"{', '.join(SYNTHETIC_DEFAULTS)}")
        settings = {**SYNTHETIC_DEFAULTS, **knobs}
        n = int(settings.pop("n"))
        n_val = max(1, round(n * validation_fraction))
        if n - n_val < 1:
            raise ValueError(f"n={n} leaves no training image")
        x, y = synthetic_dataset(n, image_size, seed=seed, **settings)
        parts = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
        description = (f"{n - n_val} + {n_val} synthetic {image_size}x{image_size} images: "
                       "discs, ellipses and blobs of many sizes, blurred and noisy.")
        provenance = (f"explorer.training.synthetic_dataset(n={n}, size={image_size}, "
                      f"seed={seed}, " + ", ".join(f"{k}={v!r}" for k, v in settings.items())
                      + "); the last 20 % are the validation set.")
        knobs = {"n": n, **settings}
    elif name == "coins":
        unknown = sorted(set(knobs) - {"stride"})
        if unknown:
            raise ValueError(f"the coins dataset has no knob {unknown[0]!r}; accepted: stride")
        stride = int(knobs.get("stride", COINS_STRIDE))
        parts = coins_dataset(image_size, stride=stride)
        description = (f"{len(parts[0])} + {len(parts[2])} tiles of {image_size}x{image_size} "
                       "from scikit-image's coins picture (Greek coins from Pompeii).")
        provenance = ("skimage.data.coins() with a classical mask (threshold_local, "
                      "remove_small_objects, fill holes, opening); sample_data/training/"
                      "coins.npz, see sample_data/PROVENANCE.md. Training tiles from columns "
                      "0-287, validation tiles from columns 288-383.")
        knobs = {"stride": stride}
    else:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    for array in parts:
        array.setflags(write=False)  # cached and shared: nobody may change them
    return Dataset(name, *parts, image_size=image_size, description=description,
                   provenance=provenance, knobs=knobs)


def _hashable(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_hashable(v) for v in np.asarray(value).tolist())
    return value


def load_dataset(name="synthetic", *, image_size=64, seed=0, validation_fraction=0.2,
                 **knobs) -> Dataset:
    """A :class:`Dataset` (cached: the same arguments return the same read-only arrays).

    ``"synthetic"``: knobs of :func:`synthetic_dataset` plus ``n`` (images in all, default
    320); the last ``validation_fraction`` of them validate. ``"coins"``: knob ``stride``
    (at 64 px scale); the split is spatial and fixed (see :func:`coins_dataset`), so
    ``seed`` and ``validation_fraction`` do not apply.
    """
    image_size = int(image_size)
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    if name == "coins":
        seed, validation_fraction = 0, 0.2
    items = tuple(sorted((k, _hashable(v)) for k, v in knobs.items()))
    return _load_cached(name, image_size, int(seed), float(validation_fraction), items)


def make_pipeline(images, masks, batch_size, *, shuffle=True, flips=False, seed=0):
    """A ``tf.data.Dataset`` of ``(image, mask)`` batches: cached, optionally shuffled
    every epoch and randomly flipped (left-right and up-down, image and mask together),
    both seeded by ``seed``, then prefetched."""
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(images, np.float32),
                                             np.asarray(masks, np.float32))).cache()
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if flips:
        seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)

        def flip(pair, rnd):
            x, y = pair
            both = tf.concat([x, y], axis=-1)
            both = tf.image.stateless_random_flip_left_right(both, rnd)
            both = tf.image.stateless_random_flip_up_down(both, rnd[::-1])
            return both[..., :x.shape[-1]], both[..., x.shape[-1]:]

        ds = tf.data.Dataset.zip((ds, seeds)).map(flip)
    return ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)


# =========================================================================== model


def build_unet(image_size=None, *, width=8, depth=3, channels_in=1, num_classes=1,
               logits=False, batch_norm=True, bn_momentum=0.9) -> keras.Model:
    """A small U-Net: ``depth`` times (two 3x3 Conv-BN-ReLU, 2x2 max-pool) down, a
    bottleneck, and ``depth`` times (2x2 transposed conv, concatenate the skip, two
    Conv-BN-ReLU) up; filters ``width * 2**level``. The output is a sigmoid (softmax for
    ``num_classes > 1``), or linear logits when ``logits=True``; it is float32 even
    under mixed precision. ``image_size=None`` accepts any side divisible by
    ``2**depth``."""
    if image_size is not None and image_size % 2 ** depth:
        raise ValueError(f"image_size must be divisible by 2**depth = {2 ** depth}, "
                         f"got {image_size}")
    if width < 1 or depth < 0:
        raise ValueError(f"need width >= 1 and depth >= 0, got width={width}, depth={depth}")

    def block(x, filters, name):
        for i in (1, 2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                                    name=f"{name}_conv{i}")(x)
            if batch_norm:
                x = keras.layers.BatchNormalization(momentum=bn_momentum,
                                                    name=f"{name}_bn{i}")(x)
            x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
        return x

    inputs = keras.Input((image_size, image_size, channels_in), name="image")
    x, skips = inputs, []
    for level in range(depth):
        x = block(x, width * 2 ** level, f"down{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = block(x, width * 2 ** depth, "bottom")
    for level in reversed(range(depth)):
        x = keras.layers.Conv2DTranspose(width * 2 ** level, 2, strides=2,
                                         name=f"up{level}_tconv")(x)
        x = keras.layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = block(x, width * 2 ** level, f"up{level}")
    x = keras.layers.Conv2D(num_classes, 1, name="head")(x)
    activation = "linear" if logits else ("sigmoid" if num_classes == 1 else "softmax")
    outputs = keras.layers.Activation(activation, dtype="float32", name="output")(x)
    return keras.Model(inputs, outputs, name="unet")


# ======================================================================== training


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
        if self.loss not in L.LOSSES:
            raise ValueError(f"loss must be one of {', '.join(L.LOSSES)}, got {self.loss!r}")
        accepted = L.loss_keywords(L.LOSSES[self.loss])
        unknown = sorted(set(self.loss_keywords) - set(accepted))
        if unknown:
            raise ValueError(f"{self.loss} has no keyword {unknown[0]!r}; accepted: "
                             f"{', '.join(accepted) or 'none'}")
        L.check_settings(self.loss, **self.loss_keywords)
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


class _NamedLoss(keras.losses.Loss):
    """Any loss function of explorer.losses with fixed keywords, as a Keras loss (the
    function reduces over the batch itself and returns a scalar)."""

    def __init__(self, name, keywords):
        super().__init__(name=name)
        self.fn, self.keywords = L.LOSSES[name], dict(keywords)

    def call(self, y_true, y_pred):
        return self.fn(y_true, tf.cast(y_pred, tf.float32), **self.keywords)


def _dice(tp, fp, fn):
    den = 2 * tp + fp + fn
    return None if den == 0 else float(2 * tp / den)


def small_object_mask(truth, max_area):
    """Boolean ``[N, H, W]``: pixels of the truth's 8-connected components of at most
    ``max_area`` pixels (``truth`` is ``[N, H, W]`` or ``[N, H, W, 1]``)."""
    truth = np.asarray(truth).reshape(len(truth), *np.shape(truth)[1:3]) >= 0.5
    out = np.zeros_like(truth)
    structure = np.ones((3, 3), bool)
    for i, t in enumerate(truth):
        labels, count = ndimage.label(t, structure)
        if count:
            areas = np.bincount(labels.ravel())
            small = areas <= max_area
            small[0] = False
            out[i] = small[labels]
    return out


def small_object_regions(truth, small_area):
    """``(small, near)`` boolean ``[N, H, W]`` for :func:`validation_metrics`: the small
    truth objects, and the pixels within ``SMALL_MARGIN`` of one that are not part of a
    larger truth object (where a predicted pixel is a false positive of a small object).
    ``None`` when there is no small object."""
    truth = np.asarray(truth)[..., 0] >= 0.5
    small = small_object_mask(truth, small_area)
    if not small.any():
        return None
    near = ndimage.binary_dilation(small, np.ones((1, 3, 3), bool),
                                   iterations=SMALL_MARGIN) & ~(truth & ~small)
    return small, near


def validation_metrics(truth, predicted, *, small_area, threshold=0.5, regions=False) -> dict:
    """``val_dice``, ``val_iou`` and ``val_dice_small`` (see the module docstring) of
    arrays ``[N, H, W, 1]``: ``predicted`` is the thresholded prediction when boolean,
    else probabilities thresholded at ``threshold``. ``regions``: the result of
    :func:`small_object_regions` when already computed."""
    truth = np.asarray(truth)[..., 0] >= 0.5
    predicted = np.asarray(predicted)[..., 0]
    if predicted.dtype != bool:
        predicted = predicted >= threshold
    tp = int(np.count_nonzero(truth & predicted))
    fp = int(np.count_nonzero(predicted)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    iou = None if tp + fp + fn == 0 else tp / (tp + fp + fn)
    if regions is False:
        regions = small_object_regions(truth[..., None], small_area)
    small_dice = None
    if regions is not None:
        small, near = regions
        small_tp = int(np.count_nonzero(small & predicted))
        small_dice = _dice(small_tp, int(np.count_nonzero(near & predicted)) - small_tp,
                           int(np.count_nonzero(small)) - small_tp)
    return {"val_dice": _dice(tp, fp, fn), "val_iou": iou, "val_dice_small": small_dice}


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
            losses = [loss_fn(y[i:i + size], pred[i:i + size]) * min(size, n - i)
                      for i in range(0, n, size)]
            return pred, tf.add_n(losses)

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


def _float(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _float(value)
    return value


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
    ``config`` (used by :func:`train` and :func:`benchmark`)."""
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
    logits = config.loss in L.TAKES_LOGITS
    strategy = _strategy()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        scope = strategy.scope() if strategy is not None else _nullcontext()
        with scope:
            model = build_unet(data.image_size, width=config.width, depth=config.depth,
                               logits=logits)
            rate = config.learning_rate
            if config.schedule == "cosine":
                steps = config.epochs * math.ceil(len(data.x_train) / config.batch_size)
                rate = keras.optimizers.schedules.CosineDecay(rate, steps, alpha=0.05)
            model.compile(optimizer=keras.optimizers.Adam(rate),
                          loss=_NamedLoss(config.loss, config.loss_keywords),
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


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


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
                         loss_fn=_NamedLoss(config.loss, config.loss_keywords),
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
    config)`` before run ``i``; ``on_epoch`` and ``on_step`` as in :func:`train` but the
    record (or logs) carry ``"run": i`` and ``"loss_name"``. When ``should_stop()``
    stops a run, the remaining runs are skipped.
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
        result = train(run, on_epoch=epoch_cb, on_step=step_cb, should_stop=should_stop,
                       on_samples=on_samples)
        results.append(result)
        if result.stopped:
            break
    return results


# ======================================================================= benchmark


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


# ================================================== a server's runs: limiter and child

MAX_RUNS_ENV = "EXPLORER_MAX_TRAINING_RUNS"
CHILD_NICE = 10  # CFS weight 110 against the server's 1024: the UI process keeps the CPU first
STOP_GRACE = 30.0  # seconds a stopped child gets to validate its partial epoch and save
ABANDON_AFTER = 60.0  # seconds a job's session may be gone (reloads reconnect) before it stops
MODEL_BYTES_CAP = 64 * 2 ** 20  # a larger .keras file is not kept in the server's memory
STEP_REPORT_SECONDS = 0.2  # the child reports steps at most this often (and the last one)


def max_training_runs() -> int:
    """How many training runs may go at once, server-wide: ``$EXPLORER_MAX_TRAINING_RUNS``,
    else a quarter of the CPU cores (at least 1: on 2 cores one run, so that the people
    exploring keep a core)."""
    text = os.environ.get(MAX_RUNS_ENV, "").strip()
    if not text:
        return max(1, cpu_cores() // 4)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_RUNS_ENV} must be a whole number >= 1, got {text!r}")
    return int(text)


class Ticket:
    """A place in a :class:`TrainingLimiter`: waiting, then running, then released."""

    def __init__(self, limiter: "TrainingLimiter", owner):
        self.limiter, self.owner = limiter, owner
        self.granted = threading.Event()  # set when the run may start
        self.released = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run may start (True) or ``timeout`` seconds pass (False)."""
        return self.granted.wait(timeout)

    def ahead(self) -> int:
        """Runs that go before this one: those running plus those queued earlier; 0
        once it runs."""
        return self.limiter.ahead(self)

    def release(self) -> None:
        """Leave the queue, or free the slot; safe to call more than once."""
        self.limiter.release(self)

    @property
    def state(self) -> str:
        return ("released" if self.released else "running" if self.granted.is_set()
                else "waiting")


class TrainingLimiter:
    """At most ``capacity`` training runs at a time; the others wait in a first-in,
    first-out queue and are granted a slot, in order, as slots free up. One ticket per
    ``owner`` (a session) at a time. Thread-safe; the one object a server's sessions
    share on purpose.

    ``capacity=None`` reads :func:`max_training_runs` each time, so the environment
    variable can change it without a restart."""

    def __init__(self, capacity: int | None = None):
        if capacity is not None and (not isinstance(capacity, int) or capacity < 1):
            raise ValueError(f"capacity must be a whole number >= 1 or None, got {capacity!r}")
        self._capacity = capacity
        self._lock = threading.Lock()
        self._running: list[Ticket] = []
        self._waiting: list[Ticket] = []

    @property
    def capacity(self) -> int:
        return self._capacity if self._capacity is not None else max_training_runs()

    def request(self, owner) -> Ticket:
        """A ticket for ``owner``: granted at once when a slot is free, else queued.
        Raises ``ValueError`` when ``owner`` already has a run running or queued."""
        with self._lock:
            if any(t.owner == owner for t in self._running + self._waiting):
                raise ValueError("This session already has a training run (running or "
                                 "queued): stop it before starting another.")
            ticket = Ticket(self, owner)
            self._waiting.append(ticket)
            self._grant()
        return ticket

    def release(self, ticket: Ticket) -> None:
        with self._lock:
            for line in (self._running, self._waiting):
                if ticket in line:
                    line.remove(ticket)
            ticket.released = True
            self._grant()

    def ahead(self, ticket: Ticket) -> int:
        with self._lock:
            if ticket not in self._waiting:
                return 0
            return len(self._running) + self._waiting.index(ticket)

    def counts(self) -> dict:
        """``{"running", "waiting", "capacity"}`` now."""
        with self._lock:
            return {"running": len(self._running), "waiting": len(self._waiting),
                    "capacity": self.capacity}

    def _grant(self):  # with the lock held
        while self._waiting and len(self._running) < self.capacity:
            ticket = self._waiting.pop(0)
            self._running.append(ticket)
            ticket.granted.set()


def _short_error(error: BaseException) -> str:
    """One line for a person: the exception's name and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def rss_mb() -> float:
    """This process's resident memory now, in MiB (Linux), else its peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def share_gpu_memory() -> None:
    """Let TensorFlow take GPU memory as it needs it instead of nearly all at once, so
    a server process and its training processes can share a GPU. Must run before
    TensorFlow first uses the GPU; later it changes nothing."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # already initialised: too late, keep going
            pass


def _die_with_parent() -> None:
    """End this child process when its parent ends, even if the parent was killed
    (a daemon child is only terminated by a parent that exits normally)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        parent.join()  # returns when the parent's sentinel closes
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _keras_bytes(model) -> bytes | None:
    """The model as a ``.keras`` file without its optimizer state (Adam's two slots per
    weight would triple it), or None when larger than ``MODEL_BYTES_CAP``. The file lives only while it
    is read, so a killed process leaves nothing behind."""
    with tempfile.TemporaryDirectory(prefix="explorer-train-") as folder:
        path = Path(folder) / "unet.keras"
        keras.saving.save_model(model, path, include_optimizer=False)
        return path.read_bytes() if path.stat().st_size <= MODEL_BYTES_CAP else None


def _lower_priority(nice: int) -> None:
    """Every thread of this process (TensorFlow's import already started some; Linux sets
    priority per thread) at ``nice`` and, where there is one, in Linux's idle class: the
    child then runs on cores nobody else wants, so people moving sliders never wait for it.
    Threads made later inherit both.

    Where Linux groups processes by session ("autogroup", on by default on desktops and
    here), priorities only count inside a group, and the server's group, training included,
    would get as much CPU as any browser's. So the child starts its own session and puts
    that group at the lowest weight (nice 19). It still ends with its parent (the
    parent-watch thread), whatever its session."""
    try:
        os.setsid()
    except OSError:  # already a group leader: keep the parent's session
        pass
    for _ in range(10):
        try:
            Path("/proc/self/autogroup").write_text("19")
            break
        except BlockingIOError:  # without CAP_SYS_ADMIN, one write per 100 ms machine-wide
            time.sleep(0.12)
        except OSError:  # no autogroups (then the per-thread settings are what counts)
            break
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        try:  # never raise the priority: a server started at nice 15 gets a child at 15
            os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
        except OSError:
            pass
        try:  # a separate try: some sandboxes (gVisor) refuse every class but the normal one
            if hasattr(os, "SCHED_IDLE"):
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass


# "Spawn" runs the main module's file again in the child, before the target. Under
# Streamlit the main module is the page itself (its script runner installs the page's
# module as ``__main__``, with the script's ``__file__``), so every child would first run
# the whole page, at full priority and in the server's session, before it lowers its
# priority. The target lives in this module: the child needs no main module at all.
_NO_MAIN = types.ModuleType("__main__")
_MAIN_SWAP = threading.Lock()


def _start_without_main(process) -> None:
    """``process.start()`` with an empty main module in place for the moment the child's
    preparation data is taken, so the child re-runs no script."""
    with _MAIN_SWAP:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = _NO_MAIN
        try:
            process.start()
        finally:
            if sys.modules["__main__"] is _NO_MAIN:  # a page run may have put its own in
                sys.modules["__main__"] = main


def _child_main(configs, queue, stop, threads, nice):
    """The training process: :func:`compare` on ``configs``, reported over ``queue``
    as ``(kind, payload)`` messages; stops when ``stop`` is set. The results come
    back without model and data; the last one with its model as ``.keras`` bytes."""
    _die_with_parent()
    if nice:
        _lower_priority(nice)
    if threads:  # before TensorFlow runs its first op
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass
    share_gpu_memory()
    queue.put(("ready", {"pid": os.getpid(), "device": device_description()}))
    last = [0.0]

    def on_step(step, total, logs):
        now = time.perf_counter()
        if now - last[0] >= STEP_REPORT_SECONDS or step == total:
            last[0] = now
            queue.put(("step", (step, total)))

    try:
        results = compare(configs, on_start=lambda i, config: queue.put(("run", i)),
                          on_epoch=lambda record: queue.put(("epoch", record)),
                          on_step=on_step, should_stop=stop.is_set,
                          on_samples=lambda samples: queue.put(("samples", samples)))
        for i, result in enumerate(results):
            model, result.model, result.data = result.model, None, None
            if i == len(results) - 1 and model is not None:
                keras_file = _keras_bytes(model)
                if keras_file is not None:
                    result.info["keras_file"] = keras_file
            queue.put(("result", result))
    except Exception as error:  # noqa: BLE001 - reported to the page as one line
        queue.put(("error", _short_error(error)))
    finally:
        queue.put(("done", {"peak_rss_mb": _peak_rss_mb()}))
        queue.close()
        queue.join_thread()  # everything is in the pipe before the process exits


class TrainingJob:
    """One training run, or a comparison of several (as :func:`compare`), in a child
    process, after waiting for a slot of ``limiter`` (none: start at once).

    Why a process: training in a thread of the server would share its cores and its
    GIL with every session. The child is a fresh interpreter ("spawn": no copy of the
    server's threads or TensorFlow state) at lower priority (``nice``) with ``threads``
    TensorFlow threads (default: the cores divided by the number of concurrent runs),
    so the people exploring keep the CPU first. It reports over a queue; a thread here
    keeps what the page shows:

    - ``records`` (epoch records, with ``run`` and ``loss_name``), ``samples`` (the
      latest strip), ``run``/``step``/``total``;
    - ``results``: one :class:`TrainResult` per run without model or data (the
      server keeps numbers, not models); the last one carries its ``.keras`` file in
      ``info["keras_file"]`` (bytes, when at most ``MODEL_BYTES_CAP``);
    - ``error``: one line when the child failed; ``spawn_seconds``: start to ready.

    ``stop()`` ends the run after the current step (or leaves the queue); the child
    is terminated if it does not finish within ``STOP_GRACE`` seconds. ``alive()``,
    when given, is asked now and then: after ``ABANDON_AFTER`` seconds of False the
    job stops (its session is gone). The child is a daemon that also watches for its
    parent's end, so a stop, an error, a closed session or a server shutdown leaves no
    process behind (nor a file: the model's temporary file lives only while saved).
    The child does not re-run the main script (see :func:`_start_without_main`), so a
    script that starts a job needs no ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, configs, *, limiter: TrainingLimiter | None = None, owner=None,
                 alive: Callable[[], bool] | None = None, threads: int | None = None,
                 nice: int = CHILD_NICE):
        self.configs = [configs] if isinstance(configs, TrainConfig) else list(configs)
        if not self.configs:
            raise ValueError("a training job needs at least one TrainConfig")
        for config in self.configs:
            config.validate()
        self.records: list[dict] = []
        self.results: list[TrainResult] = []
        self.samples: dict | None = None
        self.run, self.step, self.total = 0, 0, 0
        self.error: str | None = None
        self.spawn_seconds: float | None = None
        self.child_peak_rss_mb: float | None = None
        self.pid: int | None = None  # the child's
        self.created = time.perf_counter()
        self.started: float | None = None  # when the child was launched
        self.finished: float | None = None
        self.left_queue = False
        self._stop = threading.Event()
        self._alive, self._gone_since = alive, None
        if threads is None:
            capacity = limiter.capacity if limiter is not None else 1
            threads = max(1, cpu_cores() // capacity)
        self._threads, self._nice = threads, nice
        self._ticket = limiter.request(owner) if limiter is not None else None
        self._thread = threading.Thread(target=self._work, name="train-job", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        """Queued or training (not finished yet)."""
        return self.finished is None

    @property
    def queued(self) -> bool:
        return (self.finished is None and self._ticket is not None
                and not self._ticket.granted.is_set())

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def ahead(self) -> int:
        """Runs that go before this one while it is queued (0 otherwise)."""
        return self._ticket.ahead() if self._ticket is not None and self.queued else 0

    def stop(self) -> None:
        """Stop after the current step, or leave the queue."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the job has finished; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def fraction(self) -> float:
        """Share of all steps of all runs done so far."""
        if not self.total:
            return 0.0
        return min(1.0, (self.run + self.step / self.total) / len(self.configs))

    def eta(self) -> float | None:
        done = self.fraction()
        if done <= 0 or self.started is None:
            return None
        return (time.perf_counter() - self.started) * (1 - done) / done

    # ------------------------------------------------------------------- work

    def _stopping(self) -> bool:
        if self._alive is not None:
            if self._alive():
                self._gone_since = None
            else:
                self._gone_since = self._gone_since or time.perf_counter()
                if time.perf_counter() - self._gone_since > ABANDON_AFTER:
                    self._stop.set()
        return self._stop.is_set()

    def _work(self):
        try:
            if self._ticket is not None:
                while not self._ticket.wait(0.2):
                    if self._stopping():
                        self.left_queue = True
                        return
            if not self._stopping():
                self._run_child()
        except Exception as error:  # noqa: BLE001 - shown on the page, not raised in a thread
            self.error = _short_error(error)
        finally:
            if self._ticket is not None:
                self._ticket.release()
            self.finished = time.perf_counter()

    def _run_child(self):
        context = multiprocessing.get_context("spawn")
        messages, stop = context.Queue(), context.Event()
        process = context.Process(
            target=_child_main, name="explorer-train", daemon=True,
            args=(self.configs, messages, stop, self._threads, self._nice))
        self.started = time.perf_counter()
        try:
            _start_without_main(process)
            self.pid = process.pid
            self._follow(process, messages, stop)
        finally:
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
            process.join(5)
            messages.close()

    def _follow(self, process, messages, stop):
        """Read the child's messages until it is done, stopped or gone."""
        deadline = None
        while True:
            if deadline is None and self._stopping():
                stop.set()
                deadline = time.perf_counter() + STOP_GRACE
            if deadline is not None and time.perf_counter() > deadline:
                return  # it did not stop in time: terminated by the caller
            try:
                kind, payload = messages.get(timeout=0.2)
            except queue_module.Empty:
                if process.exitcode is None:
                    continue
                try:  # it has ended: what it sent last may still be in the pipe
                    kind, payload = messages.get(timeout=1.0)
                except queue_module.Empty:
                    self.error = self.error or (
                        "the training process ended unexpectedly (exit code "
                        f"{process.exitcode}{', out of memory?' if process.exitcode == -9 else ''})")
                    return
            if kind == "done":
                self.child_peak_rss_mb = payload["peak_rss_mb"]
                return
            self._handle(kind, payload)

    def _handle(self, kind, payload):
        if kind == "ready":
            self.spawn_seconds = time.perf_counter() - self.started
        elif kind == "run":
            self.run, self.step = payload, 0
        elif kind == "step":
            self.step, self.total = payload
        elif kind == "epoch":
            self.records.append(payload)
        elif kind == "samples":
            self.samples = {**payload, "run": self.run}
        elif kind == "result":
            self.results.append(payload)
        elif kind == "error":
            self.error = payload


# ====================================================================== isolation


def bench_isolation(config: TrainConfig | None = None, *, calls=30, size=256,
                    modes=("thread", "process"), warm_steps=3,
                    threads: int | None = None, nice: int = CHILD_NICE) -> dict:
    """How much a training run slows another session's Explore work in this process.

    One "Explore call" is what a slider move computes: ``analysis.metrics_table`` and
    ``gradients.loss_and_gradient`` (Dice loss) on a ``size``² binary pair. For each of
    ``modes`` — ``"thread"``: :func:`train` in a thread of this process (the old
    design); ``"process"``: a :class:`TrainingJob` — the median of ``calls`` calls is
    taken while ``config`` trains (after ``warm_steps`` steps, so tracing is over) and
    idle (``calls`` before and ``calls`` after the run). Also reported: the training
    steps per second during the busy calls, the time to the first steps, the process's
    resident memory before and after the run (gc'd), and for the process the spawn
    time and the child's peak memory (``threads`` and ``nice`` as in
    :class:`TrainingJob`).
    """
    import gc

    from explorer import analysis, gradients, masks
    from explorer.settings import Settings

    labels = masks.shape_mask("circle", size, radius=0.2, center=(0.5, 0.5))
    truth = masks.to_batch(masks.one_hot(labels, 2))
    pred = masks.to_batch(masks.soften(masks.shift(labels, 0, 8), 2, confidence=0.9,
                                       blur_sigma=1.0))
    settings = Settings()

    def timings_ms():
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            analysis.metrics_table(truth, pred, settings)
            gradients.loss_and_gradient(settings.loss_name(), truth, pred,
                                        **settings.keywords())
            times.append(1000 * (time.perf_counter() - start))
        return times

    def wait_for(condition, what, timeout=300):
        deadline = time.perf_counter() + timeout
        while not condition():
            if time.perf_counter() > deadline:
                raise RuntimeError(f"bench_isolation: no {what} within {timeout} s")
            time.sleep(0.05)

    config = config or TrainConfig(epochs=100, samples=0)  # stopped once measured
    timings_ms()  # compile and warm up
    rows = []
    for mode in modes:
        if mode not in ("thread", "process"):
            raise ValueError(f"modes are 'thread' and 'process', got {mode!r}")
        gc.collect()
        idle, rss_before = timings_ms(), rss_mb()
        row = {"mode": mode}
        launched = time.perf_counter()
        if mode == "thread":
            steps, stop = [0], threading.Event()
            thread = threading.Thread(
                target=train, args=(config,), daemon=True,
                kwargs={"should_stop": stop.is_set,
                        "on_step": lambda step, total, logs: steps.__setitem__(0, step)})
            thread.start()
            step_now = lambda: steps[0]  # noqa: E731
        else:
            job = TrainingJob([config], threads=threads, nice=nice)
            step_now = lambda: job.step  # noqa: E731
        wait_for(lambda: step_now() >= warm_steps, "training step")
        row["first_steps_s"] = time.perf_counter() - launched
        before = step_now()
        busy_start = time.perf_counter()
        row["busy_ms"] = float(np.median(timings_ms()))
        row["train_steps_per_s"] = (step_now() - before) / (time.perf_counter() - busy_start)
        if mode == "thread":
            stop.set()
            thread.join()
        else:
            job.stop()
            job.join()
            row.update(spawn_s=job.spawn_seconds, child_peak_rss_mb=job.child_peak_rss_mb,
                       error=job.error)
        gc.collect()
        row["rss_before_mb"], row["rss_after_mb"] = rss_before, rss_mb()
        # idle before and after the run, so that a change in the machine's load shows
        # less (other programs share its cores)
        row["idle_ms"] = float(np.median(idle + timings_ms()))
        row["ratio"] = row["busy_ms"] / row["idle_ms"]
        rows.append(row)
    return {"device": device_description(), "calls": calls, "size": size,
            "config": config.to_dict(), "threads": threads, "nice": nice, "rows": rows}


def isolation_table(report: dict) -> str:
    """:func:`bench_isolation`'s report as a few lines of text."""
    lines = [f"Explore call ({report['size']}² binary pair: metrics_table + "
             f"loss_and_gradient), median of {report['calls']}, on {report['device']}",
             f"{'training in':<12}{'idle ms':>9}{'busy ms':>9}{'ratio':>7}{'steps/s':>9}"
             f"{'first steps s':>15}{'spawn s':>9}{'RSS MiB before/after':>22}"
             f"{'child peak MiB':>16}"]
    for row in report["rows"]:
        spawn = row.get("spawn_s")
        child = row.get("child_peak_rss_mb")
        lines.append(
            f"{row['mode']:<12}{row['idle_ms']:>9.1f}{row['busy_ms']:>9.1f}"
            f"{row['ratio']:>7.2f}{row['train_steps_per_s']:>9.1f}"
            f"{row['first_steps_s']:>15.1f}{'' if spawn is None else f'{spawn:.1f}':>9}"
            f"{row['rss_before_mb']:>12.0f} / {row['rss_after_mb']:<7.0f}"
            f"{'' if child is None else f'{child:.0f}':>16}")
    return "\n".join(lines)
