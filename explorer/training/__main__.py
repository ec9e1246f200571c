"""Train a small U-Net from the command line (the Train tab without a browser).

    python -m explorer.train --loss dice_loss --epochs 4 --image-size 64 --seed 0 --json run.json
    python -m explorer.train --loss tversky_loss --alpha 0.3 --beta 0.7 --epochs 8
    python -m explorer.train --loss bce_dice_loss --loss-kw per_image=false --csv run.csv
    python -m explorer.train --dataset synthetic --knob foreground_fraction=0.02 --knob n=400
    python -m explorer.train --dataset tiny-objects --compare dice_loss,binary_crossentropy \
        --seeds 0,1,2 --json out.json
    python -m explorer.train --dataset tiny-objects \
        --compare "dice_loss,tversky_loss(alpha=0.3,beta=0.7)" --replay replays/tiny

Each dataset trains with its preset (``explorer.training.PRESETS``: epochs, image size,
batch size, learning rate, ...) unless a flag says otherwise.

One run prints one line per epoch and writes the run (config, device, seconds, one record
per epoch) as JSON and/or CSV. ``--compare`` (and/or ``--seeds``) trains each loss on each
seed, prints a table (final validation Dice and small-object Dice, mean ± standard
deviation over seeds) and writes ``{"runs": [{"loss", "seed", "seconds", "device",
"epochs": [{"loss", "val_dice", "val_iou", "val_small_dice", ...}]}]}`` (the layout of
``explorer.training.replays``); ``--replay PATH`` also keeps every epoch's validation
predictions, as a replay for the Train tab.

Loss keywords: the named flags below or ``--loss-kw key=value`` (values parsed as JSON:
numbers, true/false, null, lists; else a string). With ``--compare`` they go to every
compared loss that takes them, and a name may carry its own in parentheses.
``python -m explorer.training`` is the same command. The same training flags time
training (``python -m explorer.bench.training``) and measure how much a run slows the
server's own work (``python -m explorer.bench.isolation``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

# the flags that set a loss keyword (dest = keyword); None = not given
_KEYWORD_FLAGS = {
    "smooth": float, "epsilon": float, "alpha": float, "beta": float, "gamma": float,
    "bce_weight": float, "dice_weight": float, "threshold": float,
}
_BOOL_KEYWORD_FLAGS = ("per_image", "squared", "soft_label", "normalize_weights",
                       "include_background", "from_logits")
# the flags whose default is the dataset's preset (explorer.training.PRESETS)
_PRESET_FLAGS = {"epochs": int, "image-size": int, "batch-size": int, "learning-rate": float,
                 "schedule": str, "width": int, "depth": int, "flips": bool}


def _value(text: str):
    """A command-line value: JSON when it parses (1, 0.5, true, null, [1, 2]), else the
    string itself (``present``)."""
    lowered = {"none": "null", "true": "true", "false": "false"}.get(text.lower(), text)
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        return text


def _pairs(items, what):
    found = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {what} takes key=value, got {item!r}")
        found[key.strip().replace("-", "_")] = _value(text.strip())
    return found


def config_arguments() -> argparse.ArgumentParser:
    """The flags of a :class:`~explorer.training.TrainConfig` (read by
    :func:`config_from_args`), as a parent parser for every command that trains."""
    from explorer.losses import LOSSES
    from explorer.training import DATASETS, PRESETS, SCHEDULES, TrainConfig

    d = TrainConfig()
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--loss", default=d.loss, choices=sorted(LOSSES))
    p.add_argument("--dataset", default=d.dataset, choices=DATASETS,
                   help="the data, and the preset of training settings the flags below "
                        "default to")
    p.add_argument("--knob", action="append", metavar="KEY=VALUE",
                   help="a dataset knob (synthetic and tiny-objects: n, object_size, "
                        "object_count, foreground_fraction, noise, blur, contrast; coins: "
                        "stride)")

    def preset_help(name):
        changed = {dataset: preset[name] for dataset, preset in PRESETS.items()
                   if name in preset}
        return "default: the dataset's preset: " + ", ".join(
            [f"{getattr(d, name)}"] + [f"{v} for {k}" for k, v in changed.items()])

    for flag, kind in _PRESET_FLAGS.items():
        name = flag.replace("-", "_")
        extra = {"choices": SCHEDULES} if name == "schedule" else {}
        # SUPPRESS: absent from the namespace unless given (and no "(default: None)")
        if kind is bool:
            p.add_argument("--" + flag, action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=preset_help(name))
        else:
            p.add_argument("--" + flag, type=kind, default=argparse.SUPPRESS,
                           help=preset_help(name), **extra)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--samples", type=int, default=d.samples,
                   help="validation images whose predictions are kept every epoch")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                   help="float16 compute (default: on only when a GPU is visible)")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                   help="tf.config.experimental.enable_op_determinism (default: on the CPU "
                        "only)")
    p.add_argument("--run-eagerly", action="store_true",
                   help="no tf.function (debugging, tiny runs): no tracing, slower steps")
    kw = p.add_argument_group("loss keywords (only those given are passed)")
    for name, kind in _KEYWORD_FLAGS.items():
        kw.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    for name in _BOOL_KEYWORD_FLAGS:
        kw.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                        default=None)
    kw.add_argument("--classes", choices=("present", "all"), default=None)
    kw.add_argument("--loss-kw", action="append", metavar="KEY=VALUE",
                    help="any loss keyword, repeatable (e.g. class_weights=[1,3])")
    return p


def command_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A parser for a command that trains: ``prog``, the first paragraph of ``doc`` as its
    description, and the flags of :func:`config_arguments`."""
    return argparse.ArgumentParser(
        prog=prog, description=doc.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[config_arguments()])


def parser() -> argparse.ArgumentParser:
    p = command_parser("python -m explorer.train", __doc__)
    many = p.add_argument_group("comparing losses and seeds")
    many.add_argument("--compare", metavar="LOSSES",
                      help="comma-separated loss names, each optionally with keywords: "
                           "dice_loss,binary_crossentropy,tversky_loss(alpha=0.3,beta=0.7)")
    many.add_argument("--seeds", metavar="SEEDS",
                      help="comma-separated seeds (data, initialisation, shuffling), e.g. "
                           "0,1,2 (default: --seed)")
    many.add_argument("--replay", metavar="PATH",
                      help="also write the comparison with every epoch's validation "
                           "predictions as a replay: PATH.json and PATH.npz")
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the run (or comparison) as JSON")
    out.add_argument("--csv", metavar="PATH", help="write the per-epoch records as CSV")
    out.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def _loss_keywords(args) -> dict:
    keywords = {name: getattr(args, name) for name in
                (*_KEYWORD_FLAGS, *_BOOL_KEYWORD_FLAGS, "classes")
                if getattr(args, name) is not None}
    keywords.update(_pairs(args.loss_kw, "--loss-kw"))
    return keywords


def config_from_args(args):
    """The :class:`~explorer.training.TrainConfig` of the flags: the dataset's preset,
    then every flag given. With ``--compare`` the keyword flags are left to
    :func:`comparison_configs` (they go to the compared losses that take them)."""
    from explorer.training import preset_config

    given = {flag.replace("-", "_"): getattr(args, flag.replace("-", "_"), None)
             for flag in _PRESET_FLAGS}
    keywords = {} if getattr(args, "compare", None) else _loss_keywords(args)
    return preset_config(
        args.dataset, **{k: v for k, v in given.items() if v is not None},
        loss=args.loss, loss_keywords=keywords,
        dataset_knobs=_pairs(args.knob, "--knob"), seed=args.seed,
        samples=getattr(args, "samples", 4), mixed_precision=args.mixed_precision,
        deterministic=args.deterministic, run_eagerly=args.run_eagerly)


def parse_losses(text: str) -> list[tuple[str, dict]]:
    """``"dice_loss, tversky_loss(alpha=0.3, beta=0.7)"`` as ``[("dice_loss", {}),
    ("tversky_loss", {"alpha": 0.3, "beta": 0.7})]``; a bad name or keyword is a
    ``ValueError`` sentence."""
    from explorer.losses import LOSSES

    items, depth, current = [], 0, ""
    for char in text:  # split on the commas outside parentheses
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    out = []
    for item in (i.strip() for i in items):
        name, _, rest = item.partition("(")
        name = name.strip()
        if name not in LOSSES:
            raise ValueError(f"--compare takes loss names ({', '.join(sorted(LOSSES))}), "
                             f"got {name or item!r}")
        if rest and not rest.rstrip().endswith(")"):
            raise ValueError(f"--compare: the keywords of {name} must end with ')', "
                             f"got {item!r}")
        inner = rest.rstrip()[:-1] if rest else ""
        out.append((name, _pairs([p for p in inner.split(",") if p.strip()],
                                 f"--compare {name}(...)")))
    return out


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds takes whole numbers separated by commas, got {text!r}") \
            from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds has a seed twice: {text!r}")
    return seeds


def comparison_configs(config, args) -> list:
    """One :class:`~explorer.training.TrainConfig` per (seed, loss) of ``--seeds`` and
    ``--compare``, seed by seed (each seed's losses together). Keyword flags go to every
    loss that takes them (one that none takes is an error); keywords in parentheses go
    to their loss."""
    import dataclasses

    from explorer import losses

    picked = (parse_losses(args.compare) if args.compare
              else [(config.loss, None)])
    seeds = parse_seeds(args.seeds) if args.seeds else [config.seed]
    flags = _loss_keywords(args)
    unused = set(flags)
    runs = []
    for name, own in picked:
        if own is None:  # --seeds alone: the --loss with its keyword flags
            keywords = dict(flags)
            unused.clear()
        else:
            takes = losses.loss_keywords(losses.LOSSES[name])
            keywords = {k: v for k, v in flags.items() if k in takes}
            unused -= set(keywords)
            keywords.update(own)
        runs.append((name, keywords))
    if unused:
        raise ValueError(f"no compared loss takes the keyword {sorted(unused)[0]!r}")
    configs = [dataclasses.replace(config, loss=name, loss_keywords=keywords, seed=seed)
               for seed in seeds for name, keywords in runs]
    for run in configs:
        run.validate()
    return configs


def _fmt(value) -> str:
    from explorer.analysis import number_text  # the app's one formatter (loads TensorFlow)

    return f"{number_text(value, '.4f'):>6}"


def epoch_line(record, epochs) -> str:
    return (f"epoch {record['epoch']:>3}/{epochs}  loss {_fmt(record['loss'])}  "
            f"val_loss {_fmt(record['val_loss'])}  val_dice {_fmt(record['val_dice'])}  "
            f"val_iou {_fmt(record['val_iou'])}  val_dice_small "
            f"{_fmt(record['val_dice_small'])}  {record['seconds']:.1f} s"
            + ("" if record.get("complete", True) else "  (stopped)"))


def run_command(p: argparse.ArgumentParser, argv, work: Callable) -> int:
    """Parse ``argv`` with ``p`` (a :func:`command_parser`), then ``work(config, args)``
    on the validated :class:`~explorer.training.TrainConfig`. A ``ValueError`` (a bad
    setting) is printed as one plain sentence, no traceback, and the status is 2."""
    args = p.parse_args(argv)
    try:
        config = config_from_args(args)
        config.validate()
        work(config, args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _compare(configs, args) -> None:
    from explorer import training
    from explorer.training import replays

    recorder = replays.Recorder(configs, command="python -m explorer.train " + " ".join(
        args.argv))
    total = len(configs)

    def on_start(i, run):
        if not args.quiet:
            print(f"run {i + 1}/{total}: {replays.loss_label(run.loss, run.loss_keywords)}, "
                  f"seed {run.seed}", flush=True)

    def on_epoch(record):
        recorder.add_epoch(record)
        if not args.quiet:
            print("  " + epoch_line(record, configs[record["run"]].epochs), flush=True)

    results = training.compare(configs, on_start=on_start, on_epoch=on_epoch,
                               on_samples=recorder.add_samples if args.replay else None)
    recorder.add_results(results)
    comparison = recorder.comparison()
    print(replays.summary_table(comparison))
    if args.json:
        Path(args.json).write_text(json.dumps(replays.to_json_dict(comparison), indent=1,
                                              allow_nan=False) + "\n")
    if args.csv:
        Path(args.csv).write_text(_comparison_csv(comparison))
    if args.replay:
        for path in replays.save_replay(comparison, args.replay):
            if path is not None:
                print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


def _comparison_csv(comparison) -> str:
    import csv
    import io

    from explorer.training import RECORD_KEYS

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=("loss_name", "seed") + RECORD_KEYS,
                            lineterminator="\n")
    writer.writeheader()
    for run in comparison["runs"]:
        for record in run["epochs"]:
            writer.writerow({"loss_name": run["loss"], "seed": run["seed"],
                             **{k: ("" if record.get(k) is None else record.get(k))
                                for k in RECORD_KEYS}})
    return out.getvalue()


def _train(config, args) -> None:
    from explorer import training

    if args.compare or args.seeds:
        _compare(comparison_configs(config, args), args)
        return

    def on_epoch(record):
        if not args.quiet:
            print(epoch_line(record, config.epochs), flush=True)

    result = training.train(config, on_epoch=on_epoch)
    final = result.final or {}
    print(f"{config.loss} on {result.data.name} {config.image_size}px: val_dice "
          f"{_fmt(final.get('val_dice'))}, val_iou {_fmt(final.get('val_iou'))} after "
          f"{len(result.epochs)} epochs in {result.seconds:.1f} s on {result.device}")
    if args.json:
        result.to_json(args.json)
    if args.csv:
        result.to_csv(args.csv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def work(config, args):
        args.argv = argv
        _train(config, args)

    return run_command(parser(), argv, work)


if __name__ == "__main__":
    raise SystemExit(main())
