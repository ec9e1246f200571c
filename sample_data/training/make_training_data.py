"""Write sample_data/training/coins.npz: the training picture and its mask.

    python sample_data/training/make_training_data.py     # from the repository root

The file holds ``image`` (``skimage.data.coins()``, 303x384 uint8) and ``mask``
(303x384 uint8, 0/1) from ``explorer.training.coins_source()`` (local threshold,
small specks removed, holes filled, opening; see sample_data/PROVENANCE.md). The
training tiles are cut from it at load time by ``explorer.training.coins_dataset``.
Shipping the mask keeps the sample data identical whatever scikit-image version is
installed; without the file the loader computes the same arrays itself.

The synthetic set is not shipped: ``explorer.training.synthetic_dataset`` makes it
in well under a second, deterministically from its seed.

``--check`` verifies instead that the shipped file equals a fresh computation.
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from explorer.training import COINS_FILE, coins_source  # noqa: E402


def arrays() -> dict:
    grey, mask = coins_source()
    return {"image": np.ascontiguousarray(grey, np.uint8),
            "mask": np.ascontiguousarray(mask, np.uint8)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fresh = arrays()
    if "--check" in argv:
        with np.load(COINS_FILE, allow_pickle=False) as shipped:
            same = all(np.array_equal(shipped[k], v) for k, v in fresh.items())
        print("coins.npz matches a fresh computation" if same else
              "coins.npz DIFFERS from a fresh computation (other scikit-image version?)")
        return 0 if same else 1
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **fresh)
    COINS_FILE.parent.mkdir(parents=True, exist_ok=True)
    COINS_FILE.write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()[:16]
    print(f"wrote {COINS_FILE.relative_to(ROOT)} ({COINS_FILE.stat().st_size / 1024:.0f} KiB, "
          f"sha256 {digest}…; foreground {fresh['mask'].mean():.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
