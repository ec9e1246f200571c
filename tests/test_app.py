"""The Streamlit entry point runs headless (AppTest) and shows what explorer.losses computes."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

# AppTest.from_file resolves a relative path against the calling file (tests/), so give it the
# absolute path of the app at the repository root.
APP = str(ROOT / "app.py")

# The demo's geometry, restated here on purpose (an independent copy, not imported from app.py).
SIZE, RADIUS, CY, CX = 64, 12, 31.5, 19.5


def circle(shift):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
    inside = (yy - CY) ** 2 + (xx - CX - shift) ** 2 <= RADIUS**2
    return inside.astype(np.float32)[None, :, :, None]


def shown(at):
    """The two metrics the page shows, as {label: float}."""
    return {m.label: float(m.value) for m in at.metric}


def sliders(at):
    shift = next(s for s in at.slider if s.label.startswith("Prediction shift"))
    smooth = next(s for s in at.slider if s.label.startswith("smooth"))
    return shift, smooth


@pytest.fixture(scope="module")
def at():
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    return app


def test_runs_without_exception(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Dice Loss Explorer"
    assert set(shown(at)) == {"Dice coefficient", "Dice loss"}


def test_shown_numbers_equal_the_library(at):
    from explorer import losses

    for shift_value, smooth_value in [(4, 1.0), (0, 0.0), (13, 7.5), (30, 100.0), (30, 0.0)]:
        shift, smooth = sliders(at)
        shift.set_value(shift_value)
        smooth.set_value(smooth_value)
        at.run()
        assert not at.exception, at.exception
        y_true, y_pred = circle(0.0), circle(float(shift_value))
        want_c = float(losses.dice_coefficient(y_true, y_pred, smooth=smooth_value))
        want_l = float(losses.dice_loss(y_true, y_pred, smooth=smooth_value))
        got = shown(at)
        assert got["Dice coefficient"] == pytest.approx(want_c, abs=5e-7), (shift_value, smooth_value)
        assert got["Dice loss"] == pytest.approx(want_l, abs=5e-7), (shift_value, smooth_value)
        # and the library agrees with the textbook formula on these hard masks
        inter, total = float((y_true * y_pred).sum()), float(y_true.sum() + y_pred.sum())
        assert want_c == pytest.approx((2 * inter + smooth_value) / (total + smooth_value), rel=1e-5)


def test_sliders_at_extremes_change_the_metric(at):
    shift, smooth = sliders(at)
    shift.set_value(shift.min).run()
    smooth.set_value(smooth.min).run()
    _, smooth = sliders(at)
    perfect = shown(at)
    assert perfect["Dice coefficient"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["Dice loss"] == pytest.approx(0.0, abs=1e-6)

    shift, _ = sliders(at)
    shift.set_value(shift.max).run()
    apart = shown(at)
    assert apart["Dice coefficient"] < 0.01  # the circles no longer overlap and smooth is 0
    assert apart["Dice loss"] > 0.99

    _, smooth = sliders(at)
    smooth.set_value(smooth.max).run()
    smoothed = shown(at)
    assert smoothed["Dice coefficient"] > apart["Dice coefficient"] + 0.05  # smooth softens the penalty
    assert not at.exception


def test_a_library_error_shows_a_message_not_a_traceback(monkeypatch):
    from explorer import losses

    def broken(*args, **kwargs):
        raise ValueError("smooth must be >= 0, got -1")

    monkeypatch.setattr(losses, "dice_coefficient", broken)
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception
    assert len(app.error) == 1
    assert "smooth must be >= 0" in app.error[0].value
    assert not app.metric
