"""Masks in and out: file loading with plain-sentence errors, canvas strokes to labels,
generated shapes, edits of a prediction, and soft (probability) predictions.

Masks here are 2-D integer label maps ``[H, W]`` (0 = background, 1..K-1 classes);
:func:`to_batch` turns them into the library's channels-last tensors. No Streamlit.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from skimage import draw, filters, morphology, transform

MAX_CLASSES = 6
MAX_SIDE = 2048
MAX_PIXELS = MAX_SIDE * MAX_SIDE
MAX_FILE_BYTES = 32 * 1024 * 1024
# one colour per class, class 0 (background) first: the same everywhere in the app
ERASER_LEVEL = 40  # strokes darker than this in every channel are the eraser (class 0)
CLASS_COLORS = ("#000000", "#e8590c", "#1c7ed6", "#2f9e44", "#ae3ec9", "#f2c200")


class MaskError(ValueError):
    """A mask or probability file that cannot be used, with one plain sentence why."""


# ------------------------------------------------------------------------- reading


def _read_bytes(source) -> tuple[bytes, str]:
    """Bytes and a lower-case name (for the extension) from a path, bytes or file."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise MaskError(f"There is no file at {path}.")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise MaskError(f"The file is larger than {MAX_FILE_BYTES // 2**20} MB.")
        return path.read_bytes(), path.name.lower()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), ""
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)  # an upload may have been read before
        try:
            data = source.read(MAX_FILE_BYTES + 1)
        except UnicodeDecodeError:
            data = ""  # a text-mode file: said below
        if isinstance(data, str):
            raise MaskError("The file was opened as text; open it in binary mode ('rb').")
        if len(data) > MAX_FILE_BYTES:
            raise MaskError(f"The file is larger than {MAX_FILE_BYTES // 2**20} MB.")
        return data, str(getattr(source, "name", "")).lower()
    raise MaskError("A mask must be given as a file path, bytes or an open file.")


def _load_npy(data: bytes) -> np.ndarray:
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(buffer)
    except Exception:
        raise MaskError("The .npy file is damaged: its header could not be read.") from None
    if dtype.hasobject:
        raise MaskError("The .npy file holds Python objects; only plain numeric arrays are "
                        "accepted (it is never unpickled).")
    if int(np.prod(shape, dtype=np.int64)) > MAX_PIXELS:
        raise MaskError(f"The array has {int(np.prod(shape)):,} values; the limit is "
                        f"{MAX_PIXELS:,} ({MAX_SIDE}x{MAX_SIDE}).")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:
        raise MaskError("The .npy file is truncated or damaged.") from None


def _load_image(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise MaskError(f"The image is {width}x{height} pixels; the limit is "
                                f"{MAX_PIXELS:,} pixels ({MAX_SIDE}x{MAX_SIDE}).")
            image.load()
    except MaskError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MaskError(f"The image is too large (a decompression bomb?); the limit is "
                        f"{MAX_PIXELS:,} pixels.") from None
    except UnidentifiedImageError:
        raise MaskError("The file is not an image Pillow can read (PNG, JPEG, TIFF) "
                        "nor a .npy array.") from None
    except (OSError, SyntaxError, ValueError):
        raise MaskError("The image is truncated or damaged and could not be read.") from None
    return image


def _decode(source) -> np.ndarray | Image.Image:
    data, name = _read_bytes(source)
    if not data:
        raise MaskError("The file is empty.")
    if data[:6] == b"\x93NUMPY" or name.endswith(".npy"):
        return _load_npy(data)
    return _load_image(data)


def _as_2d(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise MaskError(f"A mask must be a 2-D image (height x width); this one has shape "
                        f"{array.shape}.")
    if 0 in array.shape:
        raise MaskError("The mask has no pixels.")
    return array


def _check_labels(labels: np.ndarray, num_classes: int | None) -> np.ndarray:
    """Whole-number labels 0..allowed-1 (checked in the array's own type, before any cast)."""
    allowed = num_classes or MAX_CLASSES
    low, high = labels.min(), labels.max()
    if low < 0:
        raise MaskError("The mask has negative labels; labels must be 0 (background) "
                        f"to {allowed - 1}.")
    if high >= allowed:
        raise MaskError(f"The mask has label {high}, more classes than allowed: "
                        f"labels must be 0 to {allowed - 1}.")
    return labels.astype(np.int32)


def _numeric_labels(array: np.ndarray, num_classes: int | None) -> np.ndarray:
    """Integer-valued arrays are labels; 0/max (e.g. 0/255, 0/65535) is binary."""
    array = _as_2d(array)
    if array.dtype == bool:
        return array.astype(np.int32)
    if array.dtype.kind not in "iuf":
        raise MaskError(f"The array has type {array.dtype}; a mask needs real numbers.")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise MaskError("The mask contains NaN or infinite values.")
        if not np.all(array == np.round(array)):
            raise MaskError("The array holds fractions; a label mask needs whole numbers "
                            "(load it as a probability map instead).")
    values = np.unique(array)
    if len(values) <= 2 and values.min() >= 0 and values.max() in (255, 65535):
        return (array > 0).astype(np.int32)  # a two-level 0/255 or 0/65535 mask
    return _check_labels(array, num_classes)


def _image_labels(image: Image.Image, num_classes: int | None) -> np.ndarray:
    if image.mode == "P":  # palette PNG: the index is the class
        return _check_labels(np.asarray(image), num_classes)
    if image.mode in ("RGBA", "LA", "PA"):
        return rgba_to_labels(np.asarray(image.convert("RGBA")), num_classes or 2)
    if image.mode in ("RGB", "CMYK", "YCbCr"):  # colour without alpha: black is background
        rgba = np.asarray(image.convert("RGBA"))
        return rgba_to_labels(rgba, num_classes or 2, level=128)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _numeric_labels(np.asarray(image), num_classes)
    try:
        gray = np.asarray(image.convert("L"))
    except (ValueError, OSError):  # e.g. a LAB TIFF: Pillow cannot convert it to grey
        raise MaskError(f"Images in colour mode {image.mode} cannot be read as a mask; save "
                        "it as a grey, RGB(A) or palette PNG.") from None
    values = np.unique(gray)
    if set(values.tolist()) <= {0, 255}:
        return (gray > 0).astype(np.int32)
    if len(values) <= MAX_CLASSES + 1 and values.max() < 128:
        return _check_labels(gray, num_classes)  # a label image saved as grey levels 0, 1, 2
    return (gray >= 128).astype(np.int32)  # a grey mask (JPEG noise, anti-aliasing): halfway


def load_mask(source, *, num_classes: int | None = None) -> np.ndarray:
    """A 2-D integer label map from a path, bytes or file-like object.

    Reads grayscale 0/255 (and grey masks, thresholded halfway), 16-bit images,
    RGBA strokes on transparent (colour = class when ``num_classes > 2``), palette PNG
    (index = class) and integer ``.npy`` (never unpickled). Raises :class:`MaskError`
    with one sentence for anything else.
    """
    if num_classes is not None and not 2 <= num_classes <= MAX_CLASSES:  # 1 could hold no mask
        raise MaskError(f"num_classes must be 2 (binary) to {MAX_CLASSES}, got {num_classes}.")
    decoded = _decode(source)
    if isinstance(decoded, np.ndarray):
        return _numeric_labels(decoded, num_classes)
    return _image_labels(decoded, num_classes)


def load_probability(source) -> np.ndarray:
    """A 2-D float32 probability map: a float ``.npy`` or float TIFF in [0, 1], a grey
    image read as level / max (255, or 65535 for 16-bit); label masks (integer ``.npy``,
    palette or colour images) give 1 on any class and 0 on background."""
    decoded = _decode(source)
    if isinstance(decoded, Image.Image):
        if decoded.mode in ("I;16", "I;16B", "I;16L", "I"):
            return (_as_2d(np.asarray(decoded)).astype(np.float64) / 65535).clip(0, 1).astype(
                np.float32)
        if decoded.mode == "F":
            decoded = np.asarray(decoded)
        elif decoded.mode in ("L", "LA"):
            return np.asarray(decoded.convert("L"), np.float32) / 255
        else:
            return (_image_labels(decoded, None) > 0).astype(np.float32)
    return _probability_array(decoded)


def _probability_array(array: np.ndarray) -> np.ndarray:
    array = _as_2d(array)
    if array.dtype.kind != "f":
        return (_numeric_labels(array, None) > 0).astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise MaskError("The probability map contains NaN or infinite values.")
    if array.min() < 0 or array.max() > 1:
        raise MaskError(f"Probabilities must lie in [0, 1]; this map runs from "
                        f"{array.min():g} to {array.max():g}.")
    return array.astype(np.float32)


def rgba_to_labels(rgba: np.ndarray, num_classes: int = 2, *,
                   level: int = ERASER_LEVEL) -> np.ndarray:
    """Canvas strokes to labels: transparent is background, and so is opaque black (the
    eraser paints with class 0's colour; ``level`` is how bright a pixel's brightest channel
    must be to count as drawn). Any other opaque pixel is class 1 for a binary
    mask, else the class whose colour is nearest."""
    if num_classes < 2:  # a drawn pixel is at least class 1
        raise MaskError(f"num_classes must be 2 (binary) or more, got {num_classes}.")
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[-1] != 4:
        raise MaskError(f"Expected an RGBA image of shape (H, W, 4), got {rgba.shape}.")
    drawn = (rgba[..., 3] >= 128) & (rgba[..., :3].max(-1) >= level)
    if num_classes <= 2:
        return drawn.astype(np.int32)
    palette = np.array([hex_to_rgb(c) for c in CLASS_COLORS[1:num_classes]], np.int32)
    distance = ((rgba[..., None, :3].astype(np.int32) - palette) ** 2).sum(-1)
    return np.where(drawn, distance.argmin(-1) + 1, 0).astype(np.int32)


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """'#rrggbb' as (r, g, b)."""
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def save_mask_png(labels: np.ndarray) -> bytes:
    """A palette PNG whose index is the class (reads back with :func:`load_mask`)."""
    image = Image.fromarray(np.asarray(labels, np.uint8), mode="P")
    palette = [v for c in CLASS_COLORS for v in hex_to_rgb(c)]
    image.putpalette(palette + [0] * (768 - len(palette)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


PAIR_MEMBERS = ("truth.npy", "prediction.npy")


def save_pair(truth: np.ndarray, prediction: np.ndarray) -> bytes:
    """One small ``.npz`` holding a truth label map and a prediction (label map, or a
    binary probability map); reads back with :func:`load_pair`."""
    truth = np.asarray(truth)
    prediction = np.asarray(prediction)
    out = io.BytesIO()
    np.savez_compressed(out, truth=truth.astype(np.uint8),
                        prediction=(prediction.astype(np.float32) if prediction.dtype.kind == "f"
                                    else prediction.astype(np.uint8)))
    return out.getvalue()


def load_pair(source, *, num_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The truth labels and the prediction (labels, or float probabilities when binary) from
    a masks file written by :func:`save_pair`. Nothing in it is ever unpickled."""
    data, _ = _read_bytes(source)
    if not data.startswith(b"PK"):
        raise MaskError("A masks file is the .npz the explorer exports (truth and prediction); "
                        "this file is not one.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = {info.filename: info for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError, ValueError):
        raise MaskError("The masks file is damaged: it could not be opened as .npz.") from None
    if sorted(members) != sorted(PAIR_MEMBERS):
        raise MaskError(f"A masks file holds exactly {' and '.join(PAIR_MEMBERS)}; this one "
                        f"holds {', '.join(sorted(members)) or 'nothing'}.")
    arrays = []
    for name in PAIR_MEMBERS:
        if members[name].file_size > MAX_FILE_BYTES:  # a zip bomb never gets unpacked
            raise MaskError(f"{name} unpacks to more than {MAX_FILE_BYTES // 2**20} MB.")
        try:
            arrays.append(_load_npy(archive.read(name)))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            if isinstance(error, MaskError):
                raise
            raise MaskError(f"{name} in the masks file is damaged.") from None
    truth = _numeric_labels(arrays[0], num_classes)
    prediction = _as_2d(arrays[1])
    if prediction.dtype.kind == "f" and not np.all(prediction == np.round(prediction)):
        if num_classes != 2:
            raise MaskError("The prediction holds probabilities, which only a binary page "
                            "takes; switch Classes to binary or save labels.")
        prediction = _probability_array(prediction)
    else:
        prediction = _numeric_labels(prediction, num_classes)
    if truth.shape != prediction.shape:
        raise MaskError(f"The truth is {truth.shape[0]}x{truth.shape[1]} but the prediction "
                        f"is {prediction.shape[0]}x{prediction.shape[1]}; they must match.")
    return truth, prediction


# ---------------------------------------------------------------------- generating


def shape_mask(kind: str, size: int = 128, *, radius: float = 0.2, center=(0.5, 0.5),
               count: int = 3, seed: int = 0, label: int = 1) -> np.ndarray:
    """A generated mask: ``"circle"``, ``"square"`` or ``"blobs"``. ``radius`` and
    ``center`` are fractions of the side, so size and position vary continuously."""
    labels = np.zeros((size, size), np.int32)
    cy, cx = center[0] * size, center[1] * size
    r = max(radius * size, 0.5)
    if kind == "circle":
        rr, cc = draw.disk((cy, cx), r, shape=labels.shape)
        labels[rr, cc] = label
    elif kind == "square":
        top, left = int(round(cy - r)), int(round(cx - r))
        bottom, right = int(round(cy + r)), int(round(cx + r))
        labels[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = label
    elif kind == "blobs":
        rng = np.random.default_rng(seed)
        for _ in range(count):
            centre = rng.uniform(0.15, 0.85, 2) * size
            axes = r * rng.uniform(0.4, 1.0, 2)
            rr, cc = draw.ellipse(centre[0], centre[1], axes[0], axes[1], shape=labels.shape,
                                  rotation=rng.uniform(0, np.pi))
            labels[rr, cc] = label
    else:
        raise ValueError(f"kind must be 'circle', 'square' or 'blobs', got {kind!r}")
    return labels


# the objects of classes 2, 3, 4, 5 beside class 1's: (kind, offset of the centre from
# class 1's as fractions of the side, radius as a fraction of class 1's radius); each
# smaller than the last, so the classes differ in size as real ones do
COMPANIONS = (("square", (-0.3, -0.3), 0.5), ("circle", (0.3, 0.3), 0.4),
              ("square", (-0.3, 0.3), 0.3), ("circle", (0.3, -0.3), 0.25))


def class_shapes(kind: str, size: int = 128, *, num_classes: int = 2, radius: float = 0.2,
                 center=(0.5, 0.5), count: int = 3, seed: int = 0) -> np.ndarray:
    """One object for every foreground class: class 1 is :func:`shape_mask` (``kind``,
    ``radius``, ``center``), classes 2 .. ``num_classes`` − 1 the smaller squares and circles
    of ``COMPANIONS`` at the four diagonal places 0.3 of the side from its centre, drawn
    over it, so moving or sizing class 1 moves and sizes them all. Binary (2 classes): just
    class 1's object."""
    if not 2 <= num_classes <= len(COMPANIONS) + 2:
        raise ValueError(f"num_classes must be 2 to {len(COMPANIONS) + 2}, got {num_classes}")
    labels = shape_mask(kind, size, radius=radius, center=center, count=count, seed=seed)
    for label, (shape, (dy, dx), scale) in zip(range(2, num_classes), COMPANIONS):
        part = shape_mask(shape, size, radius=radius * scale,
                          center=(center[0] + dy, center[1] + dx))
        labels[part > 0] = label
    return labels


# ---------------------------------------------------------------------- pitfalls
# Pairs of masks the shape controls cannot draw, one per metric pitfall of Metrics Reloaded
# (Reinke et al., Nature Methods 2024): kind -> (what ``amount`` is, its least, most and
# opening value, whether it is in pixels). Pixel amounts are pixels of the mask as made.
PITFALLS = {
    "far blob": ("False-positive blob radius (px)", 1, 16, 6, True),
    "rough edge": ("Edge noise (px)", 0, 12, 5, True),
    "lesions": ("Small lesions (all missed)", 0, 35, 12, False),
    "thin branches": ("Branch width (px)", 1, 9, 1, True),
}
# the three large lesions (centre as fractions of the side) and their radius; the small
# ones take places of a 7 x 7 grid that keep clear of them, in a seeded order
LARGE_LESIONS, LARGE_RADIUS, SMALL_RADIUS = ((0.3, 0.3), (0.3, 0.7), (0.72, 0.5)), 0.09, 0.02
TRUNK_WIDTH = 0.05  # the vessel's trunk, as a fraction of the side
RIM_STEP = 3  # a ragged edge takes a new radius every this many pixels of the rim


def _disk(size: int, cy: float, cx: float, r: float) -> np.ndarray:
    """Pixels (row, col) with (row − cy)² + (col − cx)² < r², as ``skimage.draw.disk``."""
    rows, cols = np.ogrid[:size, :size]
    return (rows - cy) ** 2 + (cols - cx) ** 2 < r ** 2


def _polyline(size: int, points, width: float) -> np.ndarray:
    """A line through ``points`` (row, col in pixels) about ``width`` pixels wide: the pixels
    within (width − 1)/2 of its one-pixel centre line."""
    centre = np.zeros((size, size), bool)
    for (y0, x0), (y1, x1) in zip(points[:-1], points[1:]):
        rr, cc = draw.line(*(int(round(v)) for v in (y0, x0, y1, x1)))
        inside = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        centre[rr[inside], cc[inside]] = True
    return ndimage.distance_transform_edt(~centre) <= (width - 1) / 2


def _vessel_tree(size: int, branch_width: float) -> tuple[np.ndarray, np.ndarray]:
    """A wavy trunk, top to bottom, and six thin branches leaving it; (trunk, branches)."""
    def trunk_x(y):
        return 0.5 + 0.06 * np.sin(2 * np.pi * y)

    trunk = _polyline(size, [(y * size, trunk_x(y) * size) for y in np.linspace(0.06, 0.94, 60)],
                      TRUNK_WIDTH * size)
    branches = np.zeros((size, size), bool)
    for y0 in (0.25, 0.45, 0.65):
        for side in (-1, 1):
            points = [(y0 * size, trunk_x(y0) * size)] + [
                ((y0 + 0.25 * u ** 1.2) * size, (trunk_x(y0) + side * 0.38 * u) * size)
                for u in np.linspace(0.1, 1.0, 12)]
            branches |= _polyline(size, points, branch_width)
    return trunk, branches


def pitfall_pair(kind: str, size: int = 256, *, amount: float | None = None,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A truth and a hard prediction (label maps, class 1) that Dice scores well and another
    metric does not; ``amount`` as ``PITFALLS`` says (its opening value when None):

    * ``"far blob"``: a disc of radius 0.2 and its exact copy plus a false-positive disc of
      radius ``amount`` px far away in the corner (Dice high, HD95 large);
    * ``"rough edge"``: a disc of radius 0.3 and the same disc with a ragged edge, its
      radius moved by up to ± ``amount`` px every few pixels of the rim (Dice high, NSD at
      1 px low); ``amount=0`` is the disc itself;
    * ``"lesions"``: three large lesions (radius 0.09) found exactly, and ``amount`` small
      ones (radius 0.02) all missed (Dice about 0.9, lesion recall low);
    * ``"thin branches"``: a vessel tree (a trunk 0.05 of the side wide, six branches
      ``amount`` px wide); the prediction is the trunk alone (Dice high while the branches
      are thin, clDice low: it weighs centre lines by length, not by area).
    """
    if kind not in PITFALLS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, PITFALLS))}, got {kind!r}")
    amount = PITFALLS[kind][3] if amount is None else amount
    rng = np.random.default_rng(seed)
    if kind == "far blob":
        truth = _disk(size, 0.42 * size, 0.42 * size, 0.2 * size)
        pred = truth | _disk(size, 0.85 * size, 0.85 * size, max(amount, 0.5))
    elif kind == "rough edge":
        radius = 0.3 * size
        rows, cols = np.ogrid[:size, :size]
        dy, dx = rows - size / 2, cols - size / 2
        truth = dy ** 2 + dx ** 2 < radius ** 2
        pieces = max(8, int(2 * np.pi * radius / RIM_STEP))
        offsets = rng.uniform(-amount, amount, pieces)
        piece = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * pieces).astype(int) % pieces
        pred = np.hypot(dy, dx) < radius + offsets[piece]
    elif kind == "lesions":
        pred = np.zeros((size, size), bool)
        for cy, cx in LARGE_LESIONS:
            pred |= _disk(size, cy * size, cx * size, LARGE_RADIUS * size)
        grid = np.linspace(0.08, 0.92, 7)
        places = [(y, x) for y in grid for x in grid
                  if all(np.hypot(y - cy, x - cx) > LARGE_RADIUS + 0.08
                         for cy, cx in LARGE_LESIONS)]
        truth = pred.copy()
        for k in rng.permutation(len(places))[:int(amount)]:
            truth |= _disk(size, places[k][0] * size, places[k][1] * size, SMALL_RADIUS * size)
    else:
        pred, branches = _vessel_tree(size, amount)
        truth = pred | branches
    return truth.astype(np.int32), pred.astype(np.int32)


def shift(labels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move the mask by whole pixels; what leaves the frame is gone, what enters is 0."""
    return ndimage.shift(np.asarray(labels), (dy, dx), order=0, mode="constant", cval=0)


def dilate(labels: np.ndarray, radius: int = 1) -> np.ndarray:
    """Grow every class by ``radius`` pixels (grey dilation: larger labels win ties)."""
    return morphology.dilation(np.asarray(labels), morphology.disk(radius)) if radius else labels


def erode(labels: np.ndarray, radius: int = 1) -> np.ndarray:
    """Shrink the foreground by ``radius`` pixels (eroded pixels become background)."""
    labels = np.asarray(labels)
    if not radius:
        return labels
    kept = morphology.erosion(labels > 0, morphology.disk(radius))
    return np.where(kept, labels, 0)


def invert(labels: np.ndarray) -> np.ndarray:
    """Swap foreground and background (a binary view: every class becomes background)."""
    return (np.asarray(labels) == 0).astype(np.int32)


def fit_classes(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """A binary view (every class is foreground) of a multi-class mask when the page is
    binary; the labels unchanged otherwise."""
    return (labels > 0).astype(np.int32) if num_classes == 2 else labels


def resize_labels(labels: np.ndarray, shape) -> np.ndarray:
    """Nearest-neighbour resize: labels stay labels."""
    return transform.resize(labels, shape, order=0, preserve_range=True,
                            anti_aliasing=False).astype(np.int32)


def resize_probability(prob: np.ndarray, shape) -> np.ndarray:
    """Bilinear resize of a probability map, kept in [0, 1]."""
    return transform.resize(prob, shape, order=1, preserve_range=True,
                            anti_aliasing=False).clip(0, 1).astype(np.float32)


# ------------------------------------------------------------------ soft predictions


def soften(labels: np.ndarray, num_classes: int = 2, *, confidence: float = 0.9,
           blur_sigma: float = 0.0, noise: float = 0.0, temperature: float = 1.0,
           seed: int = 0) -> np.ndarray:
    """Probabilities ``[H, W, C]`` from a hard label map.

    ``confidence`` is the probability given to the drawn class (the rest is shared by
    the others), ``blur_sigma`` softens the edges (Gaussian, pixels), ``noise`` adds
    Gaussian noise of that standard deviation to the logits, and ``temperature``
    divides the logits (above 1: less confident, below 1: more). Binary masks give
    one channel (the foreground probability); several classes give softmax channels.
    """
    labels = np.asarray(labels)
    classes = max(num_classes, 2)
    one_hot = np.eye(classes, dtype=np.float64)[labels.clip(0, classes - 1)]
    probs = one_hot * confidence + (1 - one_hot) * (1 - confidence) / (classes - 1)
    if blur_sigma > 0:
        probs = filters.gaussian(probs, sigma=blur_sigma, channel_axis=-1, preserve_range=True)
    if noise > 0 or temperature != 1:  # only then through logits: confidence 1 stays exact 0/1
        logits = np.log(np.clip(probs, 1e-7, 1))
        if noise > 0:
            logits = logits + np.random.default_rng(seed).normal(0, noise, logits.shape)
        logits = logits / max(temperature, 1e-3)
        logits -= logits.max(-1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(-1, keepdims=True)
    return (probs[..., 1:] if num_classes <= 2 else probs).astype(np.float32)


def one_hot(labels: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """Truth tensor channels: one channel (foreground) when binary, else one-hot."""
    labels = np.asarray(labels)
    if num_classes <= 2:
        return (labels > 0).astype(np.float32)[..., None]
    return np.eye(num_classes, dtype=np.float32)[labels.clip(0, num_classes - 1)]


def to_batch(*arrays: np.ndarray) -> np.ndarray:
    """Stack ``[H, W, C]`` arrays into the library's ``[B, H, W, C]``."""
    return np.stack(arrays).astype(np.float32)


# ----------------------------------------------------------------------- gallery

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


def load_gallery(folder: Path | None = None) -> list[dict]:
    """The shipped sample masks: ``index.json`` entries with ``labels`` loaded (and
    ``background``, the grey source image, where the entry names one)."""
    folder = Path(folder or SAMPLE_DIR / "gallery")
    entries = json.loads((folder / "index.json").read_text())
    for entry in entries:
        entry["labels"] = load_mask(folder / entry["file"], num_classes=entry["num_classes"])
        if entry.get("image"):
            entry["background"] = np.asarray(Image.open(folder / entry["image"]).convert("L"))
    return entries


# ----------------------------------------------------------------------- volumes

VOLUME_NAMES = ("ball", "tube", "lesions")  # sample_data/volumes/volumes.npz, in this order
VOLUME_SHAPE = (24, 96, 96)  # [D, H, W] voxels
VOLUME_SPACING = (3.0, 1.0, 1.0)  # mm per voxel along D, H, W: slices 3 mm apart


def load_volumes(path: Path | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The shipped synthetic volumes (``sample_data/make_volumes.py``): name -> (truth,
    hard prediction), bool arrays ``[D, H, W]`` of ``VOLUME_SHAPE``. Never unpickled."""
    path = Path(path or SAMPLE_DIR / "volumes" / "volumes.npz")
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    volumes = {}
    for name in VOLUME_NAMES:
        pair = tuple(arrays[f"{name}_{part}"].astype(bool) for part in ("truth", "prediction"))
        if any(a.shape != VOLUME_SHAPE for a in pair):
            raise MaskError(f"The volume {name!r} in {path.name} is not {VOLUME_SHAPE}.")
        volumes[name] = pair
    return volumes
