"""Comparisons as data, live or replayed: one structure for both, so that the Train tab
draws a recorded run and a live one with the same views.

A *comparison* is a dict::

    {"kind": "live" | "replay", "name", "title", "command", "device",
     "runs": [run, ...], "grid": grid or None}

- a run: ``{"loss", "label", "loss_key", "loss_keywords", "seed", "seconds", "device",
  "stopped", "dataset", "config", "epochs": [record, ...]}``. ``loss`` is the library
  name (``"binary_crossentropy"``), ``label`` the name people read (``"BCE"``),
  ``loss_key`` the key of ``explorer.settings.LOSS_LABELS`` (the two Lovász losses
  share ``"lovasz"``), for one colour per loss. Each record has the keys of
  ``RECORD_KEYS`` plus ``val_small_dice`` (the same number as ``val_dice_small``).
- the grid: validation predictions after every epoch for the runs of one seed (the
  first; other seeds validate on other images): ``{"seed", "index" [k], "image" [k, S,
  S], "truth" [k, S, S], "runs" [indices into runs], "epochs" [[1, 2, ...] per grid
  run], "prediction" [array [E, k, S, S] per grid run]}``, float32 in [0, 1]. The
  pictures are kept at 8 bits (``round(255 p)``) live and on disk alike, so a replay
  shows exactly what the live run showed; ``p >= 0.5`` is unchanged by it.

:class:`Recorder` builds a comparison from :func:`~explorer.training.compare`'s
callbacks, :func:`save_replay` writes one as ``<name>.json`` + ``<name>.npz``,
:func:`load_replay` reads one back, :func:`list_replays` lists the shipped ones
(``sample_data/training/replays/index.json``); :func:`summarize` and
:func:`summary_table` give the mean ± spread over seeds.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np

from explorer.training.data import _float, _jsonable

REPLAY_DIR = Path(__file__).resolve().parents[2] / "sample_data" / "training" / "replays"
REPLAY_INDEX = REPLAY_DIR / "index.json"
METRICS = ("val_dice", "val_small_dice", "val_iou", "loss", "val_loss")
_GREEK = {"alpha": "α", "beta": "β", "gamma": "γ"}


def loss_key(name: str) -> str:
    """The key of ``explorer.settings.LOSS_LABELS`` for a library loss name (the
    Lovász hinge and Lovász-Softmax are both ``"lovasz"``)."""
    return "lovasz" if name.startswith("lovasz") else name


def loss_label(name: str, keywords: dict | None = None) -> str:
    """The name people read, with the keywords that differ from the loss's defaults:
    ``"BCE"``, ``"Dice loss"``, ``"Tversky loss (α 0.3, β 0.7)"``."""
    from explorer import losses
    from explorer.settings import LOSS_LABELS

    label = LOSS_LABELS.get(loss_key(name), name)
    defaults = losses.loss_keywords(losses.LOSSES[name]) if name in losses.LOSSES else {}
    changed = {k: v for k, v in (keywords or {}).items()
               if k not in defaults or not _same(v, defaults[k])}
    if changed:
        label += " (" + ", ".join(f"{_GREEK.get(k, k)} {_value_text(v)}"
                                  for k, v in changed.items()) + ")"
    return label


def _same(a, b) -> bool:
    try:
        return bool(a == b) if not isinstance(a, (list, tuple, np.ndarray)) else (
            np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return False


def _value_text(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return f"{value:g}"


def _epoch_entry(record: dict) -> dict:
    entry = {k: v for k, v in record.items() if k not in ("run", "loss_name")}
    entry["val_small_dice"] = record.get("val_dice_small")
    return _jsonable(entry)


def _run_entry(config) -> dict:
    return {"loss": config.loss, "label": loss_label(config.loss, config.loss_keywords),
            "loss_key": loss_key(config.loss),
            "loss_keywords": _jsonable(config.loss_keywords), "seed": config.seed,
            "seconds": None, "device": None, "stopped": False, "dataset": None,
            "config": config.to_dict(), "epochs": []}


def _bytes(values) -> np.ndarray:
    return np.clip(np.rint(np.asarray(values, np.float64) * 255), 0, 255).astype(np.uint8)


class Recorder:
    """Collects a comparison while :func:`~explorer.training.compare` runs.

    Hand its methods to ``compare`` (or feed them a training job's messages)::

        recorder = Recorder(configs)
        results = compare(configs, on_epoch=recorder.add_epoch,
                          on_samples=recorder.add_samples)
        recorder.add_results(results)
        comparison = recorder.comparison()

    ``add_epoch`` and ``add_samples`` take the tagged records and strips of
    ``compare`` (with ``"run"``); the grid keeps the strips of the runs with the first
    config's seed. A training job feeds it from one thread while a page reads
    :meth:`comparison` from another, hence the lock.
    """

    def __init__(self, configs, *, kind="live", **meta):
        self.configs = list(configs)
        self.runs = [_run_entry(config) for config in self.configs]
        self.meta = {"kind": kind, **meta}
        self.grid_seed = self.configs[0].seed if self.configs else None
        self._grid = None  # image, truth, index of the grid seed's validation images
        self._strips: dict[int, list] = {}  # run -> [(epoch, uint8 [k, S, S])]
        self._lock = threading.Lock()

    def add_epoch(self, record: dict) -> None:
        entry = _epoch_entry(record)
        with self._lock:
            epochs = self.runs[record["run"]]["epochs"]
            if epochs and epochs[-1]["epoch"] == entry["epoch"]:
                epochs[-1] = entry
            else:
                epochs.append(entry)

    def add_samples(self, samples: dict) -> None:
        run = samples["run"]
        if self.configs[run].seed != self.grid_seed:
            return
        prediction = _bytes(samples["prediction"])
        with self._lock:
            if self._grid is None:
                self._grid = {"index": np.asarray(samples["index"], int),
                              "image": _bytes(samples["image"]),
                              "truth": (np.asarray(samples["truth"]) >= 0.5).astype(np.uint8)}
            self._strips.setdefault(run, []).append((int(samples["epoch"]), prediction))

    def add_result(self, run: int, result) -> None:
        epochs = [_epoch_entry(r) for r in result.epochs]
        with self._lock:
            self.runs[run].update(
                seconds=_float(result.seconds), device=result.device,
                stopped=bool(result.stopped), epochs=epochs,
                dataset=result.data.summary() if result.data is not None else None)

    def add_results(self, results) -> None:
        for run, result in enumerate(results):
            self.add_result(run, result)

    def comparison(self) -> dict:
        """The comparison so far (a copy: later epochs do not change it)."""
        with self._lock:
            runs = [dict(r, epochs=list(r["epochs"])) for r in self.runs]
            strips = {run: list(items) for run, items in self._strips.items()}
            grid_arrays = self._grid
        grid = None
        if grid_arrays is not None and strips:
            order = sorted(strips)
            grid = {"seed": self.grid_seed, "index": grid_arrays["index"],
                    "image": grid_arrays["image"].astype(np.float32) / 255,
                    "truth": grid_arrays["truth"].astype(np.float32), "runs": order,
                    "epochs": [[e for e, _ in strips[r]] for r in order],
                    "prediction": [np.stack([p for _, p in strips[r]]).astype(np.float32)
                                   / 255 for r in order]}
        devices = sorted({r["device"] for r in runs if r["device"]})
        return {**self.meta, "device": ", ".join(devices) or None, "runs": runs, "grid": grid}


# ----------------------------------------------------------------- summaries


def _stats(values) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "sd": None, "low": None, "high": None, "values": []}
    array = np.asarray(values, float)
    return {"mean": float(array.mean()),
            "sd": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "low": float(array.min()), "high": float(array.max()), "values": list(values)}


def summarize(comparison: dict) -> list[dict]:
    """One entry per loss (name and keywords), in the order they first appear:
    ``{"loss", "label", "loss_key", "loss_keywords", "seeds", "runs", "seconds",
    "final": {metric: stats}, "curves": {metric: {"epoch": [...], "mean", "sd", "low",
    "high": [...]}}}``. ``stats`` holds ``mean``, ``sd`` (sample standard deviation over
    seeds; 0 for one seed), ``low``, ``high`` and the per-seed ``values``; the curves
    run over the epochs every seed has reached. Metrics: :data:`METRICS`."""
    groups: dict[tuple, dict] = {}
    for i, run in enumerate(comparison["runs"]):
        key = (run["loss"], json.dumps(run["loss_keywords"], sort_keys=True))
        group = groups.setdefault(key, {
            "loss": run["loss"], "label": run["label"], "loss_key": run["loss_key"],
            "loss_keywords": run["loss_keywords"], "seeds": [], "runs": []})
        group["seeds"].append(run["seed"])
        group["runs"].append(i)
    out = []
    for group in groups.values():
        runs = [comparison["runs"][i] for i in group["runs"]]
        finals = [r["epochs"][-1] if r["epochs"] else {} for r in runs]
        group["seconds"] = _stats([r["seconds"] for r in runs])
        group["final"] = {m: _stats([f.get(m) for f in finals]) for m in METRICS}
        reached = min((len(r["epochs"]) for r in runs), default=0)
        curves = {}
        for m in METRICS:
            per_epoch = [_stats([r["epochs"][e].get(m) for r in runs]) for e in range(reached)]
            curves[m] = {"epoch": [runs[0]["epochs"][e]["epoch"] for e in range(reached)],
                         **{s: [p[s] for p in per_epoch] for s in ("mean", "sd", "low", "high")}}
        group["curves"] = curves
        out.append(group)
    return out


def _num(value, spec=".3f") -> str:
    from explorer.analysis import number_text  # the app's one formatter

    return number_text(value, spec)


def summary_table(comparison: dict) -> str:
    """The comparison as a plain-text table: per loss, the final epoch's validation Dice
    and small-object Dice as mean ± sample standard deviation over seeds with each seed's
    value, and the seconds per run; then each loss's small-object Dice minus the first
    loss's, seed by seed."""
    groups = summarize(comparison)
    if not groups:
        return "no runs"
    runs = comparison["runs"]
    seeds = sorted({r["seed"] for r in runs})
    first = runs[0]
    config = first["config"]
    epochs = max((len(r["epochs"]) for r in runs), default=0)
    head = (f"{config['dataset']}, {epochs} epochs of {config['image_size']} px images, "
            f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}, on "
            f"{comparison.get('device') or first.get('device')}")
    width = max(len(g["label"]) for g in groups)

    def cell(stats):
        if stats["mean"] is None:
            return "n/a"
        text = _num(stats["mean"])
        if len(stats["values"]) > 1:
            each = " ".join(_num(v, ".2f") for v in stats["values"])
            text += f" ± {_num(stats['sd'])}  ({each})"
        return text

    cells = [(g["label"], cell(g["final"]["val_dice"]), cell(g["final"]["val_small_dice"]),
              _num(g["seconds"]["mean"], ".0f")) for g in groups]
    widths = [max(width, 4), *(max(len(c[i]) for c in cells) for i in (1, 2))]
    titles = ("loss", "val Dice", "small-object Dice")
    lines = [head, "final epoch; mean ± sd over seeds (each seed)" if len(seeds) > 1
             else "final epoch", ""]
    lines.append("  ".join(t.ljust(w) for t, w in zip(titles, widths)) + "  s/run")
    for label, dice, small, seconds in cells:
        lines.append(f"{label.ljust(widths[0])}  {dice.ljust(widths[1])}  "
                     f"{small.ljust(widths[2])}  {seconds:>5}")
    base = groups[0]
    for group in groups[1:]:
        diffs = []
        for seed in seeds:
            a = _final_of(runs, base, seed)
            b = _final_of(runs, group, seed)
            diffs.append(None if a is None or b is None else a - b)
        shown = [d for d in diffs if d is not None]
        if shown:
            lines.append(f"small-object Dice, {base['label']} minus {group['label']}: "
                         + " ".join(f"{d:+.3f}" for d in shown)
                         + (f" (mean {np.mean(shown):+.3f})" if len(shown) > 1 else ""))
    return "\n".join(lines)


def _final_of(runs, group, seed):
    for i in group["runs"]:
        if runs[i]["seed"] == seed and runs[i]["epochs"]:
            return runs[i]["epochs"][-1].get("val_small_dice")
    return None


# ------------------------------------------------------------------ replays


def to_json_dict(comparison: dict) -> dict:
    """The comparison without its arrays (the grid keeps its layout), for JSON."""
    out = {k: v for k, v in comparison.items() if k != "grid"}
    grid = comparison.get("grid")
    if grid is not None:
        out["grid"] = {"seed": grid["seed"], "index": _jsonable(grid["index"]),
                       "runs": list(grid["runs"]), "epochs": _jsonable(grid["epochs"]),
                       "size": int(grid["image"].shape[-1]), "images": len(grid["index"])}
    return _jsonable(out)


def save_replay(comparison: dict, path) -> tuple[Path, Path | None]:
    """Write ``comparison`` as ``path.json`` (numbers) and ``path.npz`` (8-bit pictures:
    ``image``, ``truth`` and ``prediction`` ``[runs, epochs, k, S, S]``). Returns the two
    paths (the second None without a grid)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix == ".json" else path
    stem.parent.mkdir(parents=True, exist_ok=True)
    data = {**to_json_dict(comparison), "kind": "replay"}
    grid = comparison.get("grid")
    npz = None
    if grid is not None:
        if len({len(e) for e in grid["epochs"]}) != 1:
            raise ValueError("a replay's grid needs the same epochs in every run")
        npz = stem.with_suffix(".npz")
        data["grid"]["file"] = npz.name
        np.savez_compressed(npz, index=np.asarray(grid["index"], np.int32),
                            image=_bytes(grid["image"]), truth=_bytes(grid["truth"]) // 255,
                            prediction=np.stack([_bytes(p) for p in grid["prediction"]]))
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    return json_path, npz


def list_replays(directory=None) -> list[dict]:
    """The replays in ``directory`` (default the shipped ones): the entries of its
    ``index.json`` (``name``, ``title``, ``description``, ``command``, ...)."""
    index = Path(directory or REPLAY_DIR) / "index.json"
    if not index.is_file():
        return []
    return json.loads(index.read_text())["replays"]


def load_replay(name, directory=None) -> dict:
    """A replay as a comparison (``kind == "replay"``), the same structure a live
    :class:`Recorder` gives. ``name`` is a shipped replay's name or a path to its
    ``.json``."""
    path = Path(name)
    if path.suffix != ".json":
        path = Path(directory or REPLAY_DIR) / f"{name}.json"
    if not path.is_file():
        known = ", ".join(r["name"] for r in list_replays(directory)) or "none"
        raise ValueError(f"there is no replay {str(name)!r}; shipped: {known}")
    comparison = json.loads(path.read_text())
    meta = comparison.get("grid")
    comparison["grid"] = None
    if meta and meta.get("file"):
        with np.load(path.parent / meta["file"], allow_pickle=False) as arrays:
            prediction = arrays["prediction"].astype(np.float32) / 255
            comparison["grid"] = {
                "seed": meta["seed"], "index": arrays["index"].astype(int),
                "image": arrays["image"].astype(np.float32) / 255,
                "truth": arrays["truth"].astype(np.float32), "runs": list(meta["runs"]),
                "epochs": meta["epochs"], "prediction": list(prediction)}
    comparison["kind"] = "replay"
    return comparison


def final_difference(comparison: dict, metric="val_small_dice", first=0, second=1):
    """Per seed, the final ``metric`` of the ``first`` loss minus the ``second`` one's
    (indices into :func:`summarize`): ``{seed: difference}``, for checks like "Dice
    beats BCE on small objects in every seed"."""
    groups = summarize(comparison)
    runs = comparison["runs"]
    out = {}
    for i in groups[first]["runs"]:
        seed = runs[i]["seed"]
        for j in groups[second]["runs"]:
            if runs[j]["seed"] == seed and runs[i]["epochs"] and runs[j]["epochs"]:
                a = runs[i]["epochs"][-1].get(metric)
                b = runs[j]["epochs"][-1].get(metric)
                if a is not None and b is not None and math.isfinite(a - b):
                    out[seed] = a - b
    return out
