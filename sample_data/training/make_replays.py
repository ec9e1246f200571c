"""Record the Train tab's replays: each preset trained with the main losses on 3 seeds.

    python sample_data/training/make_replays.py              # all, from the repository root
    python sample_data/training/make_replays.py tiny-objects # only the named ones

For each replay it runs the command line (``python -m explorer.train``, in this process)
with the dataset's preset and ``--compare``, ``--seeds`` and ``--replay``, which writes
``replays/<name>.json`` (every run's curves, as ``--json``) and ``replays/<name>.npz`` (4
validation images of the first seed, their truth, and every loss's prediction after every
epoch, 8-bit), then rewrites ``replays/index.json``. The Train tab plays them back with
``explorer.training.load_replay(name)``.

Training is deterministic on the CPU (op determinism), so the numbers are reproducible
with the same TensorFlow build; the seconds are this machine's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from explorer.training import __main__ as cli  # noqa: E402
from explorer.training import replays  # noqa: E402

LOSSES = ("dice_loss,binary_crossentropy,bce_dice_loss,tversky_loss(alpha=0.3,beta=0.7),"
          "lovasz_hinge")
SEEDS = "0,1,2"
REPLAYS = {
    "tiny-objects": {
        "title": "Tiny objects: BCE misses them, Dice finds them",
        "description": "1-4 tiny objects per 64 px image, 0.5 % foreground; the "
                       "tiny-objects preset with five losses on 3 seeds.",
    },
    "synthetic": {
        "title": "Synthetic shapes: every loss does well",
        "description": "Discs, ellipses and blobs of many sizes, 7 % foreground; the default "
                       "preset with five losses on 3 seeds.",
    },
    "coins": {
        "title": "Coins: a real picture, large objects",
        "description": "Tiles of scikit-image's coins picture, 33 % foreground; the coins "
                       "preset with five losses on 3 seeds.",
    },
}


def record(name: str) -> dict:
    argv = ["--dataset", name, "--compare", LOSSES, "--seeds", SEEDS, "--quiet",
            "--replay", str(replays.REPLAY_DIR / name)]
    start = time.perf_counter()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    if code:
        raise SystemExit(f"{name}: the command failed with status {code}")
    seconds = time.perf_counter() - start
    print(out.getvalue(), end="", flush=True)
    played = replays.load_replay(name)
    runs = played["runs"]
    files = [f"{name}.json", f"{name}.npz"]
    return {"name": name, **REPLAYS[name], "dataset": name,
            "losses": list(dict.fromkeys(r["label"] for r in runs)),
            "seeds": sorted({r["seed"] for r in runs}),
            "epochs": max(len(r["epochs"]) for r in runs),
            "grid_images": len(played["grid"]["index"]),
            "device": played["device"], "seconds": round(seconds),
            "command": "python -m explorer.train " + " ".join(
                f'"{a}"' if "(" in a else a for a in argv[:-1]) + f" replays/{name}",
            "files": files,
            "bytes": sum((replays.REPLAY_DIR / f).stat().st_size for f in files),
            "table": replays.summary_table(played)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = argv or list(REPLAYS)
    unknown = [n for n in names if n not in REPLAYS]
    if unknown:
        raise SystemExit(f"unknown replay {unknown[0]!r}; known: {', '.join(REPLAYS)}")
    replays.REPLAY_DIR.mkdir(parents=True, exist_ok=True)
    index_path = replays.REPLAY_DIR / "index.json"
    entries = {e["name"]: e for e in replays.list_replays()}
    for name in names:
        entries[name] = record(name)
        ordered = [entries[n] for n in REPLAYS if n in entries]
        index_path.write_text(json.dumps({"replays": ordered}, indent=1,
                                         ensure_ascii=False) + "\n")
        print(f"{name}: {entries[name]['bytes'] / 1024:.0f} KiB in "
              f"{entries[name]['seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
