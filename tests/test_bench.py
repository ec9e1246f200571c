"""The benchmark script runs and prints a well-formed table (no timing is asserted)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from explorer import losses  # noqa: E402
from explorer.bench import losses as bench  # noqa: E402

HEADER = [
    "loss", "C", "size", "compiled ms", "eager ms", "numpy ms",
    "first-call ms", "compiled/eager", "compiled/numpy",
]


def table_lines(out: str):
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("loss "))
    body = [line for line in lines[start + 2:] if line.strip() and not line.startswith("*")]
    return lines[start], lines[start + 1], body


def test_quick_run_prints_the_table(capsys):
    rows = bench.main(["--quick", "--sizes", "32", "--losses", "dice_loss,lovasz_hinge"])
    out = capsys.readouterr().out

    assert out.startswith("machine: ")
    assert "TensorFlow" in out

    header, rule, body = table_lines(out)
    # every column title is there, in order, and the rule under it has one dash run per column
    positions = [header.index(title) for title in HEADER]
    assert positions == sorted(positions)
    assert len(rule.split()) == len(HEADER)

    # dice_loss at C=1 and C=4; lovasz_hinge (binary only) at C=1
    assert [line.split()[:3] for line in body] == [
        ["dice_loss", "1", "32"],
        ["dice_loss", "4", "32"],
        ["lovasz_hinge", "1", "32"],
    ]
    for line in body:
        cells = line.split()
        assert len(cells) == len(HEADER)
        assert float(cells[3]) > 0 and float(cells[4]) > 0  # compiled, eager
        assert float(cells[-3]) > 0  # first call
        assert float(cells[-2]) > 0  # compiled / eager

    assert [(r.loss, r.classes, r.size) for r in rows] == [
        ("dice_loss", 1, 32), ("dice_loss", 4, 32), ("lovasz_hinge", 1, 32),
    ]
    for r in rows:
        assert r.compiled_ms > 0 and r.eager_ms > 0 and r.first_call_ms > 0
        assert r.numpy_ms > 0


def test_quick_defaults_and_argument_checks():
    args = bench.parse_args(["--quick"])
    assert args.sizes == [128, 256] and args.repeats == 5
    assert args.losses == list(bench.losses.LOSSES)
    args = bench.parse_args([])
    assert args.sizes == [128, 256, 512, 1024] and args.repeats == 20
    for bad in (["--losses", "no_such_loss"], ["--sizes", "a,b"], ["--repeats", "0"]):
        try:
            bench.parse_args(bad)
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"{bad} was accepted")


def test_inputs_are_valid_masks():
    for classes in (1, 4):
        y_true, y_pred = bench.make_inputs(40, classes)
        assert y_true.shape == y_pred.shape == (1, 40, 40, classes)
        assert y_true.dtype == y_pred.dtype == "float32"
        assert 0 < y_pred.min() and y_pred.max() < 1
        assert set(map(float, y_true.ravel())) <= {0.0, 1.0}
        if classes > 1:
            assert abs(y_true.sum(-1) - 1).max() == 0
            assert abs(y_pred.sum(-1) - 1).max() < 1e-5
            assert (y_true[..., 1:].reshape(-1, classes - 1).sum(0) > 0).all()  # every object is there


def test_numpy_floor_computes_the_same_values():
    """The floor is honest: it computes what the library computes (default settings)."""
    assert set(bench.NUMPY_FLOOR) == set(losses.LOSSES)
    for classes in (1, 4):
        y_true, y_pred = bench.make_inputs(24, classes)
        for name, floor in bench.NUMPY_FLOOR.items():
            if classes > 1 and name in bench.BINARY_ONLY:
                continue
            p = bench.logits_of(y_pred) if name in losses.TAKES_LOGITS else y_pred
            expected = float(losses.LOSSES[name](y_true.astype(np.float64), p.astype(np.float64)))
            got = floor(y_true.astype(np.float64), p.astype(np.float64))
            assert np.isclose(got, expected, rtol=1e-9, atol=1e-12), (name, classes, got, expected)
