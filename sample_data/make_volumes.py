"""Build the synthetic 3-D volume set ``sample_data/volumes/volumes.npz`` (deterministic).

Run from the repository root::

    python sample_data/make_volumes.py

Three pairs of binary volumes ``[D, H, W]`` = 24 x 96 x 96 voxels, drawn in millimetres for
a voxel of 3 x 1 x 1 mm (slices 3 mm apart, as in many CT and MR series), each a truth and a
hard prediction of it (``uint8``, 0/1):

* ``ball``: a ball of radius 27 mm; the prediction is a ball of radius 30 mm moved 4 mm
  along the slices, so the end slices hold only a sliver of one or the other;
* ``tube``: a thin tube of radius 2.5 mm winding from the first slice to the last; the
  prediction is a tube of radius 3 mm cut in two over three slices;
* ``lesions``: two large lesions (radius 15 and 12 mm) and six small ones (radius 3.5 mm);
  the prediction finds the large ones, 1 mm too large, misses the small ones and adds one
  false-positive blob of radius 4 mm.

No random numbers: every shape is placed by hand. ``explorer.masks.load_volumes`` reads the
file (never unpickled); PROVENANCE.md records how it was made.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from explorer import masks  # noqa: E402  (needs the repository root on the path)

OUT = HERE / "volumes" / "volumes.npz"


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel centres in mm along D, H, W (open grids)."""
    d, h, w = masks.VOLUME_SHAPE
    sd, sh, sw = masks.VOLUME_SPACING
    z, y, x = np.ogrid[:d, :h, :w]
    return z * sd, y * sh, x * sw


def _ball(centre, radius: float) -> np.ndarray:
    z, y, x = _grid()
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius ** 2


def _tube(radius: float, skip=()) -> np.ndarray:
    """A tube along a winding path through every slice: in slice z (mm) its centre is at
    y = 48 + 25 sin(z / 22), x = 20 + 0.8 z; the slices in ``skip`` are left out."""
    z, y, x = _grid()
    cy, cx = 48 + 25 * np.sin(z / 22), 20 + 0.8 * z
    tube = (y - cy) ** 2 + (x - cx) ** 2 <= radius ** 2
    tube[list(skip)] = False
    return tube


LARGE = (((30, 30, 32), 15.0), ((42, 64, 66), 12.0))
SMALL = ((15, 20, 75), (24, 75, 20), (36, 80, 40), (51, 15, 50), (57, 50, 85), (63, 30, 15))
FALSE_POSITIVE = ((60, 82, 82), 4.0)


def build() -> dict[str, np.ndarray]:
    """Every array of the file by name: ``<volume>_truth`` and ``<volume>_prediction``."""
    pairs = {
        "ball": (_ball((36, 48, 48), 27.0), _ball((40, 48, 48), 30.0)),
        "tube": (_tube(2.5), _tube(3.0, skip=(11, 12, 13))),
        "lesions": (
            np.any([_ball(c, r) for c, r in LARGE] + [_ball(c, 3.5) for c in SMALL], axis=0),
            np.any([_ball(c, r + 1) for c, r in LARGE] + [_ball(*FALSE_POSITIVE)], axis=0)),
    }
    assert tuple(pairs) == masks.VOLUME_NAMES
    return {f"{name}_{part}": array.astype(np.uint8)
            for name, pair in pairs.items() for part, array in zip(("truth", "prediction"), pair)}


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **build())
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
