"""Train a small U-Net from the command line (the Train tab without a browser).

    python -m explorer.train --loss dice_loss --epochs 4 --image-size 64 --seed 0 --json run.json
    python -m explorer.train --loss tversky_loss --alpha 0.3 --beta 0.7 --epochs 8
    python -m explorer.train --loss bce_dice_loss --loss-kw per_image=false --csv run.csv
    python -m explorer.train --dataset synthetic --knob foreground_fraction=0.02 --knob n=400

Prints one line per epoch and writes the run (config, device, seconds, one record per
epoch) as JSON and/or CSV. Loss keywords: the named flags below or ``--loss-kw
key=value`` (values parsed as JSON: numbers, true/false, null, lists; else a string).
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
from typing import Callable  # noqa: E402

# the flags that set a loss keyword (dest = keyword); None = not given
_KEYWORD_FLAGS = {
    "smooth": float, "epsilon": float, "alpha": float, "beta": float, "gamma": float,
    "bce_weight": float, "dice_weight": float, "threshold": float,
}
_BOOL_KEYWORD_FLAGS = ("per_image", "squared", "soft_label", "normalize_weights",
                       "include_background", "from_logits")


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
    from explorer.training import DATASETS, SCHEDULES, TrainConfig

    d = TrainConfig()
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--loss", default=d.loss, choices=sorted(LOSSES))
    p.add_argument("--dataset", default=d.dataset, choices=DATASETS)
    p.add_argument("--knob", action="append", metavar="KEY=VALUE",
                   help="a dataset knob (synthetic: n, object_size, object_count, "
                        "foreground_fraction, noise, blur, contrast; coins: stride)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--schedule", default=d.schedule, choices=SCHEDULES)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--depth", type=int, default=d.depth)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--flips", action=argparse.BooleanOptionalAction, default=d.flips)
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
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the run as JSON")
    out.add_argument("--csv", metavar="PATH", help="write the per-epoch records as CSV")
    out.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def config_from_args(args):
    from explorer.training import TrainConfig

    keywords = {name: getattr(args, name) for name in
                (*_KEYWORD_FLAGS, *_BOOL_KEYWORD_FLAGS, "classes")
                if getattr(args, name) is not None}
    keywords.update(_pairs(args.loss_kw, "--loss-kw"))
    return TrainConfig(
        loss=args.loss, loss_keywords=keywords, dataset=args.dataset,
        dataset_knobs=_pairs(args.knob, "--knob"), image_size=args.image_size,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        schedule=args.schedule, width=args.width, depth=args.depth, seed=args.seed,
        flips=args.flips, mixed_precision=args.mixed_precision,
        deterministic=args.deterministic, run_eagerly=args.run_eagerly)


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


def _train(config, args) -> None:
    from explorer import training

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
    return run_command(parser(), argv, _train)


if __name__ == "__main__":
    raise SystemExit(main())
