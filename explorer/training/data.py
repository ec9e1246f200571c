"""The training data: a synthetic set and tiles of scikit-image's coins picture, as
:class:`Dataset` arrays, and the ``tf.data`` pipeline that feeds them to Keras.

- ``"synthetic"`` (the default): random discs, ellipses and blobs of many sizes on
  a shaded background, blurred and noisy (:func:`synthetic_dataset`). Knobs: object
  size, count, foreground fraction (class imbalance), noise, blur, contrast.
- ``"tiny-objects"``: the synthetic generator with 1-4 tiny objects per image
  (foreground about 0.5 % of the pixels, objects of 2-26 px at 64 px, median 7), the
  set on which BCE first learns "all background" and Dice does not
  (:data:`TINY_OBJECTS_DEFAULTS`; its training settings are
  ``explorer.training.PRESETS["tiny-objects"]``).
- ``"coins"``: 1:1 tiles of scikit-image's bundled ``coins()`` picture with masks
  from a classical pipeline (local threshold, small specks removed, holes filled,
  opening), shipped in ``sample_data/training/coins.npz``; see
  ``sample_data/PROVENANCE.md``. The left 288 columns give the training tiles, the
  right 96 columns the validation tiles (no overlap between the two).

:func:`load_dataset` picks one by name and caches it; everything is seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import tensorflow as tf
from scipy import ndimage

DATASETS = ("synthetic", "tiny-objects", "coins")
COINS_FILE = Path(__file__).resolve().parents[2] / "sample_data" / "training" / "coins.npz"
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

# the synthetic generator with only tiny, clearly visible objects: radius 1.3-2.2 px at
# 64 px, 1-4 per image, 0.3-0.6 brighter than the background (about 0.5 % foreground)
TINY_OBJECTS_DEFAULTS = {
    **SYNTHETIC_DEFAULTS,
    "object_size": (0.02, 0.035),
    "object_count": (1, 4),
    "contrast": (0.3, 0.6),
}
_GENERATED = {"synthetic": SYNTHETIC_DEFAULTS, "tiny-objects": TINY_OBJECTS_DEFAULTS}


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


# JSON-ready values (for Dataset.summary here, and the run's records in loop.py)


def _float(value):
    """A finite float, else None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(value):
    """``value`` with NumPy numbers and arrays as plain Python ones, non-finite as None."""
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
    if name in _GENERATED:
        defaults = _GENERATED[name]
        unknown = sorted(set(knobs) - set(defaults))
        if unknown:
            raise ValueError(f"the {name} dataset has no knob {unknown[0]!r}; accepted: "
                             f"{', '.join(defaults)}")
        settings = {**defaults, **knobs}
        n = int(settings.pop("n"))
        n_val = max(1, round(n * validation_fraction))
        if n - n_val < 1:
            raise ValueError(f"n={n} leaves no training image")
        x, y = synthetic_dataset(n, image_size, seed=seed, **settings)
        parts = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
        shapes = ("a few tiny discs, ellipses and blobs" if name == "tiny-objects"
                  else "discs, ellipses and blobs of many sizes")
        description = (f"{n - n_val} + {n_val} synthetic {image_size}x{image_size} images: "
                       f"{shapes}, blurred and noisy.")
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

    ``"synthetic"`` and ``"tiny-objects"``: knobs of :func:`synthetic_dataset` plus ``n``
    (images in all, default 320), with the defaults of :data:`SYNTHETIC_DEFAULTS` and
    :data:`TINY_OBJECTS_DEFAULTS`; the last ``validation_fraction`` of them validate.
    ``"coins"``: knob ``stride`` (at 64 px scale); the split is spatial and fixed (see
    :func:`coins_dataset`), so ``seed`` and ``validation_fraction`` do not apply.
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
