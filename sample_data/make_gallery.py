"""Build the sample mask gallery in ``sample_data/gallery/`` (deterministic).

Run from the repository root::

    python sample_data/make_gallery.py

Every mask is written as a palette PNG with :func:`explorer.masks.save_mask_png`, so the
palette index is the class (0 = background). Real-looking masks come only from images
bundled inside the scikit-image wheel (nothing is downloaded); the grey source crop is
saved next to each one. ``gallery/index.json`` lists every entry; PROVENANCE.md explains.
"""

from __future__ import annotations

import inspect
import io
import json
import sys
from pathlib import Path

import numpy as np
import skimage
from PIL import Image
from scipy import ndimage as ndi
from skimage import data, draw, filters, measure, morphology, transform

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from explorer import masks  # noqa: E402  (needs the repository root on the path)

GALLERY = HERE / "gallery"
SKIMAGE = f"scikit-image {skimage.__version__}"


# --------------------------------------------------------------------------- helpers


def _remove_small(binary: np.ndarray, size: int) -> np.ndarray:
    """``morphology.remove_small_objects`` dropping components of ``size`` pixels or fewer
    (the keyword was renamed in scikit-image 0.26: ``max_size`` replaces ``min_size``)."""
    if "max_size" in inspect.signature(morphology.remove_small_objects).parameters:
        return morphology.remove_small_objects(binary, max_size=size)
    return morphology.remove_small_objects(binary, min_size=size + 1)


def _largest_component(binary: np.ndarray) -> np.ndarray:
    labelled = measure.label(binary, connectivity=2)
    if labelled.max() == 0:
        return binary
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == sizes.argmax()


def _downsize_mask(binary: np.ndarray, side: int) -> np.ndarray:
    """Area-average the binary mask to ``side`` x ``side`` and keep pixels at least half
    covered (smoother than nearest-neighbour on a 2x reduction)."""
    small = transform.resize(binary.astype(np.float64), (side, side), order=1,
                             anti_aliasing=True, preserve_range=True)
    return small >= 0.5


def _downsize_image(grey: np.ndarray, side: int) -> np.ndarray:
    small = transform.resize(grey.astype(np.float64), (side, side), order=1,
                             anti_aliasing=True, preserve_range=True)
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


def _grey_png(grey: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.asarray(grey, np.uint8), mode="L").save(out, format="PNG",
                                                               optimize=True)
    return out.getvalue()


# ---------------------------------------------------------------------- real masks


def coins():
    """Greek coins: local threshold on the whole image, small specks removed, holes filled,
    a light opening, then a 256x256 window at 1:1 pixels."""
    grey = data.coins()  # 303x384
    foreground = grey > filters.threshold_local(grey, block_size=151, offset=-10)
    foreground = _remove_small(foreground, 300)
    foreground = ndi.binary_fill_holes(foreground)
    foreground = ndi.binary_opening(foreground, structure=morphology.disk(2))
    foreground = _remove_small(foreground, 300)
    window = (slice(24, 280), slice(8, 264))
    return grey[window], foreground[window].astype(np.int32)


def coins_by_size(foreground: np.ndarray) -> np.ndarray:
    """Three classes from the coins mask: coins touching the border dropped, then every
    whole coin labelled 1 (smaller than the median coin) or 2 (the median or larger)."""
    labelled = measure.label(foreground > 0, connectivity=1)
    border = np.unique(np.concatenate([labelled[0], labelled[-1],
                                       labelled[:, 0], labelled[:, -1]]))
    areas = np.bincount(labelled.ravel())
    keep = [i for i in range(1, labelled.max() + 1) if i not in border]
    median = np.median(areas[keep])
    out = np.zeros_like(labelled, np.int32)
    for i in keep:
        out[labelled == i] = 1 if areas[i] < median else 2
    return out


def horse():
    """Horse silhouette: the bundled image is True on the white background, so invert it;
    pad the 328x400 image to a 400x400 square with background, area-resize to 256."""
    silhouette = ~data.horse()
    pad = (400 - silhouette.shape[0]) // 2
    square = np.pad(silhouette, ((pad, 400 - silhouette.shape[0] - pad), (0, 0)))
    grey = np.where(square, 0, 255).astype(np.uint8)  # the drawing itself, black on white
    return _downsize_image(grey, 256), _downsize_mask(square, 256).astype(np.int32)


def camera():
    """Camera man: the dark coat, hair and gloves (grey < 40), the largest 8-connected
    component, holes filled, area-resized from 512 to 256."""
    grey = data.camera()
    coat = _largest_component(grey < 40)
    coat = ndi.binary_fill_holes(coat)
    return _downsize_image(grey, 256), _downsize_mask(coat, 256).astype(np.int32)


# ----------------------------------------------------------------- synthetic masks


def tiny_object(side=128):
    labels = np.zeros((side, side), np.int32)
    labels[70:73, 40:43] = 1  # 3x3 = 9 pixels
    return labels


def large_object(side=128):
    return masks.shape_mask("circle", side, radius=0.42, center=(0.5, 0.5))


def many_small_blobs(side=128):
    return masks.shape_mask("blobs", side, radius=0.035, count=40, seed=7)


def empty(side=128):
    return np.zeros((side, side), np.int32)


def thin_ring(side=128):
    labels = np.zeros((side, side), np.int32)
    rr, cc = draw.disk((64, 64), 40, shape=labels.shape)
    labels[rr, cc] = 1
    rr, cc = draw.disk((64, 64), 38, shape=labels.shape)
    labels[rr, cc] = 0
    return labels


def thin_line(side=128):
    labels = np.zeros((side, side), np.int32)
    rr, cc = draw.line(10, 12, 117, 100)
    labels[rr, cc] = 1
    return labels


def nested_4class(side=128):
    labels = np.zeros((side, side), np.int32)
    labels[16:112, 16:112] = 1
    rr, cc = draw.disk((64, 64), 36, shape=labels.shape)
    labels[rr, cc] = 2
    labels[52:76, 52:76] = 3
    return labels


# --------------------------------------------------------------------------- build


def build() -> list[dict]:
    entries = []

    def add(name, labels, *, kind, num_classes, description, provenance, image=None,
            image_file=None):
        labels = np.asarray(labels, np.int32)
        present = set(np.unique(labels).tolist())
        assert present <= set(range(num_classes)), (name, present)
        (GALLERY / f"{name}.png").write_bytes(masks.save_mask_png(labels))
        entry = {"name": name, "file": f"{name}.png", "kind": kind,
                 "num_classes": num_classes, "size": list(labels.shape),
                 "foreground_fraction": round(float((labels > 0).mean()), 5),
                 "description": description, "provenance": provenance, "image": None}
        if image is not None:
            (GALLERY / f"{name}_image.png").write_bytes(_grey_png(image))
            entry["image"] = f"{name}_image.png"
        elif image_file is not None:  # shares another entry's source image
            entry["image"] = image_file
        entries.append(entry)

    grey, mask = coins()
    add("coins", mask, kind="real", num_classes=2, image=grey,
        description="Greek coins from Pompeii: 19 coin regions (7 cut by the frame), "
                    "many medium objects, binary.",
        provenance=f"skimage.data.coins() ({SKIMAGE}; Brooklyn Museum Collection, 'No known "
                   "copyright restrictions'): on the whole 303x384 image, grey > "
                   "filters.threshold_local(block_size=151, offset=-10); "
                   "remove_small_objects (<= 300 px); ndimage.binary_fill_holes; "
                   "ndimage.binary_opening with disk(2); remove_small_objects (<= 300 px); "
                   "then the window rows 24:280, cols 8:264 (1:1 pixels).")
    add("coins_by_size", coins_by_size(mask), kind="real", num_classes=3,
        image_file="coins_image.png",
        description="The same coins in three classes: background, smaller coins (1), "
                    "larger coins (2); coins cut by the frame are background.",
        provenance="Derived from the 'coins' mask: connected components (4-connected), "
                   "components touching the border dropped, class 1 if the area is below "
                   "the median coin area, else class 2.")
    grey, mask = horse()
    add("horse", mask, kind="real", num_classes=2, image=grey,
        description="Horse silhouette: one large object with thin legs, binary.",
        provenance=f"skimage.data.horse() ({SKIMAGE}; openclipart, CC0 by Andreas Preuss "
                   "(marauder)), inverted (the bundled image is True on the background), "
                   "padded with background to 400x400, area-resized to 256x256 "
                   "(transform.resize with anti-aliasing, kept where >= 0.5).")
    grey, mask = camera()
    add("camera_coat", mask, kind="real", num_classes=2, image=grey,
        description="The camera man's dark coat, hair and gloves: one large irregular "
                    "object, binary.",
        provenance=f"skimage.data.camera() ({SKIMAGE}; CC0 by the photographer Lav "
                   "Varshney); grey < 40; largest 8-connected component; "
                   "ndimage.binary_fill_holes; area-resized 512 -> 256 (transform.resize "
                   "with anti-aliasing, kept where >= 0.5).")

    made = "Generated by sample_data/make_gallery.py"
    add("tiny_object", tiny_object(), kind="synthetic", num_classes=2,
        description="A tiny object: a 3x3 square (9 pixels) in a 128x128 frame.",
        provenance=f"{made}: labels[70:73, 40:43] = 1.")
    add("large_object", large_object(), kind="synthetic", num_classes=2,
        description="A large disk covering about half of the frame.",
        provenance=f"{made}: explorer.masks.shape_mask('circle', 128, radius=0.42).")
    add("many_small_blobs", many_small_blobs(), kind="synthetic", num_classes=2,
        description="Many small elliptical blobs (some overlap).",
        provenance=f"{made}: explorer.masks.shape_mask('blobs', 128, radius=0.035, "
                   "count=40, seed=7).")
    add("empty", empty(), kind="synthetic", num_classes=2,
        description="An empty mask: no foreground at all (the 0/0 case of Dice).",
        provenance=f"{made}: np.zeros((128, 128)).")
    add("thin_ring", thin_ring(), kind="synthetic", num_classes=2,
        description="A thin ring, 2 pixels wide: almost all boundary.",
        provenance=f"{made}: skimage.draw.disk((64, 64), 40) minus disk((64, 64), 38).")
    add("thin_line", thin_line(), kind="synthetic", num_classes=2,
        description="A one-pixel-wide diagonal line: a one-pixel shift can miss it "
                    "entirely.",
        provenance=f"{made}: skimage.draw.line(10, 12, 117, 100).")
    add("nested_4class", nested_4class(), kind="synthetic", num_classes=4,
        description="Four classes, nested: a square (1) holding a disk (2) holding a "
                    "small square (3).",
        provenance=f"{made}: labels[16:112, 16:112] = 1; disk((64, 64), 36) = 2; "
                   "labels[52:76, 52:76] = 3.")
    return entries


def main() -> None:
    GALLERY.mkdir(parents=True, exist_ok=True)
    for old in GALLERY.glob("*.png"):
        old.unlink()
    entries = build()
    (GALLERY / "index.json").write_text(json.dumps(entries, indent=2) + "\n")
    total = sum(p.stat().st_size for p in GALLERY.iterdir())
    print(f"wrote {len(entries)} entries to {GALLERY} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
