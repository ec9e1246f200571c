"""A few hundred random widget actions in AppTest: whatever a class does to the page, no
exception reaches it and no panel fails. Seeded, so a failure replays exactly."""

import math
import random

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_app import APP, _choose

STEPS = 240
# widgets that would start long work (training) or leave the Explore page for good
SKIP = ("train_start", "train_stop", "download_")


def _actions(at):
    """Every widget on the page now, as (description, action) pairs."""
    found = []
    for kind in ("slider", "select_slider", "checkbox", "toggle", "selectbox", "radio",
                 "number_input", "multiselect", "button"):
        for widget in at.get(kind):
            key = getattr(widget, "key", None) or ""
            if any(part in key for part in SKIP) or getattr(widget, "disabled", False):
                continue  # a person can't change a disabled widget either
            found.append((kind, widget))
    return found


def _random_value(kind, widget, rng: random.Random):
    if kind == "slider":
        low, high = widget.min, widget.max
        choice = rng.random()
        if choice < 0.3:
            return low if choice < 0.15 else high  # the ends are where things break
        if isinstance(low, int) and isinstance(high, int):
            return rng.randint(low, high)
        step = widget.step or (high - low) / 100
        return min(high, low + round(rng.uniform(0, high - low) / step) * step)
    if kind == "select_slider":
        return rng.choice(widget.options)
    if kind in ("checkbox", "toggle"):
        return not widget.value
    if kind in ("selectbox", "radio"):
        return rng.choice(widget.options)
    if kind == "number_input":
        low = widget.min if widget.min is not None else -1e3
        high = widget.max if widget.max is not None else 1e3
        value = rng.choice([low, high, rng.uniform(low, min(high, 10.0))])
        return int(value) if isinstance(widget.value, int) else float(value)
    if kind == "multiselect":
        return rng.sample(widget.options, rng.randint(0, min(3, len(widget.options))))
    return None


def _apply(kind, widget, value):
    if kind == "button":
        widget.click()
    elif kind in ("selectbox", "radio", "select_slider"):
        _choose(widget, list(widget.options).index(value))
    elif kind == "multiselect":  # the page sends labels: view them as plain (see _choose)
        widget.__class__ = type("Plain" + type(widget).__name__, (type(widget),),
                                {"format_func": property(lambda self: str)})
        widget.set_value(value)
    else:
        widget.set_value(value)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_widget_actions(seed):
    rng = random.Random(seed)
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    history = []
    for step in range(STEPS // 2):
        if rng.random() < 0.05:  # now and then, another sub-tab of Explore
            tab = rng.choice(["Formula and counts", "Compare gradients",
                              "Batch: per image vs whole batch", "Sweeps"])
            at.session_state["explore_tabs"] = tab
            history.append(f"tab {tab}")
        else:
            kind, widget = rng.choice(_actions(at))
            value = _random_value(kind, widget, rng)
            history.append(f"{kind} {getattr(widget, 'key', '') or widget.label!r} -> {value!r}")
            _apply(kind, widget, value)
        at.run()
        where = f"seed {seed}, step {step}: " + " | ".join(history[-4:])
        assert not at.exception, (where, [e.message for e in at.exception])
        failed = [e.value for e in at.error if "could not be shown" in e.value]
        assert not failed, (where, failed)
        shown = [m.value for m in at.metric]
        # the stage writes an undefined value as 0/0 (its label says "undefined")
        assert all(v in ("undefined (0/0)", "0/0") or math.isfinite(float(v)) for v in shown), \
            where


def test_a_failing_panel_is_contained(monkeypatch, caplog):
    """An unexpected exception in one panel shows a short message with the details folded
    away, is logged, and the rest of the page still works."""
    from explorer import analysis

    def boom(*args, **kwargs):
        raise RuntimeError("boom in the gradient note")

    monkeypatch.setattr(analysis, "piecewise_note", boom)
    at = AppTest.from_file(APP, default_timeout=180)
    with caplog.at_level("ERROR", logger="explorer"):
        at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Gradient could not be shown: boom in the gradient note"]
    assert any(x.label == "Details" for x in at.expander)
    assert at.metric[0].value == "0.368159"  # the numbers panel is untouched
    assert "panel 'Gradient' failed" in caplog.text and "RuntimeError" in caplog.text
    at.slider(key="shift_x").set_value(0)
    at.run()  # the page keeps working after the failure
    assert not at.exception and at.metric[0].value != "0.368159"
