"""explorer.ui.state is the one home of the app's keys and defaults: no page names a key
it does not hold, and its defaults are the opening view."""

import ast
from pathlib import Path

import pytest

from explorer.settings import Settings
from explorer.ui import runtime, state

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "app.py", *sorted((ROOT / "explorer" / "ui").glob("*.py"))]
# elements whose key is their identity on the page, not a value in the session
ELEMENTS = {"plotly_chart", "dataframe", "container", "figure_or_picture", "gradient_view",
            "_measures"}


def _literal(node) -> str | None:
    """A key written in the source: a string, or an f-string's text before its first field."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and isinstance(node.values[0], ast.Constant):
        return node.values[0].value + "…"
    return None


def _keys_in_the_pages():
    """(file, line, key) for every key a page writes down itself: ``key=...`` of a widget,
    ``st.session_state[...]`` and ``st.session_state.get(...)``."""
    for path in PAGES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            found = None
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                found = next((k.value for k in node.keywords if k.arg == "key"), None)
                if name in ELEMENTS:
                    found = None
                elif name in ("get", "setdefault") and "session_state" in ast.unparse(node.func):
                    found = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith(
                    "session_state"):
                found = node.slice
            key = _literal(found) if found is not None else None
            if key is not None:
                yield path.name, node.lineno, key


def test_the_pages_name_only_keys_that_state_holds():
    unknown = []
    for name, line, key in _keys_in_the_pages():
        if key.endswith("…"):  # an f-string: its stem must start a family or a known key
            known = key[:-1].startswith(state.FAMILIES) or any(
                k.startswith(key[:-1]) for k in state.DEFAULTS)
        else:
            known = key in state.DEFAULTS
        if not known:
            unknown.append(f"{name}:{line} {key}")
    assert not unknown


def test_an_unknown_key_is_refused():
    with pytest.raises(KeyError, match="'shfit_x' is not a key of explorer/ui/state.py"):
        state.with_value("shfit_x")
    assert state.keyed("scenario_button_perfect") == {"key": "scenario_button_perfect"}


def test_where_each_value_is_kept():
    assert state.keyed("shift_x") == {"key": "shift_x", "bind": "query-params",
                                      "persist_state": "session"}
    assert state.keyed("train_epochs") == {"key": "train_epochs", "persist_state": "session"}
    assert state.keyed("train_start") == {"key": "train_start"}
    assert set(state.EXPLORE) <= set(state.SHARED)
    assert not set(state.SHARED) & set(state.KEPT) and not set(state.KEPT) & set(state.PLAIN)


def test_loss_defaults_are_the_library_settings():
    settings = Settings()
    for key in ("loss", "smooth", "epsilon", "per_image", "threshold", "alpha", "focal_gamma",
                "normalize_weights", "include_background"):
        assert state.default(key) == getattr(settings, key), key


def test_widget_keywords_carry_the_default():
    assert state.with_value("shift_x")["value"] == 8
    assert state.with_value("lovasz_step")["value"] == 1  # the first pixel taken, then on
    assert state.with_value("sweep_log_y")["value"] is False
    assert state.with_index("truth_source", ["Draw", "Shape"])["index"] == 1
    assert state.with_index("loss", ["bce", "dice_loss"])["index"] == 1
    assert state.with_default("compare_losses")["default"] == [
        "dice_loss", "binary_crossentropy", "lovasz"]


def test_defaults_that_depend_on_the_options():
    assert state.with_index("prediction_gallery", ["a", "b", "c"])["index"] == 1
    assert state.with_index("prediction_gallery", ["a"])["index"] == 0
    assert state.with_index("truth_gallery", ["a", "b"])["index"] == 0
    assert state.with_default("batch_gallery", ["a", "b", "c"])["default"] == ["a", "b"]


def test_a_gpu_opens_the_train_tab_with_a_larger_run(monkeypatch):
    monkeypatch.setattr(runtime, "has_gpu", lambda: False)
    cpu = [state.default(k) for k in ("train_size", "train_batch", "train_width")]
    monkeypatch.setattr(runtime, "has_gpu", lambda: True)
    gpu = [state.default(k) for k in ("train_size", "train_batch", "train_width")]
    assert cpu == [64, 16, 8] and gpu == [128, 64, 16]
    assert state.default("train_depth") == 3  # the same on both
