"""The README's quick start and what CI runs cannot drift apart; the README's examples run."""

import os
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

README = (ROOT / "README.md").read_text(encoding="utf-8")
BENCH_README = ROOT / "explorer" / "bench" / "README.md"
MAX_README_LINES = 250
CI_RUN = ROOT / ".ci" / "run"

FENCE = re.compile(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def section(title: str) -> str:
    """The text of the README section headed `## <title>`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}[ \t]*\n(.*?)(?=^## |\Z)", README, re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def code_blocks(text: str, language: str | None = None) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if language is None or lang == language]


def commands(text: str) -> list[str]:
    """Non-empty, non-comment lines of the section's fenced code blocks."""
    lines = [line.strip() for block in code_blocks(text) for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_readme_opens_with_the_quick_start():
    first_heading = re.findall(r"^## (.+)$", README, re.MULTILINE)[0]
    assert first_heading.strip() == "Quick start"


def test_quick_start_is_exactly_two_commands():
    run_app, run_tests = commands(section("Quick start"))  # exactly two
    assert run_app == "python3 -m pip install -r requirements.txt && streamlit run app.py"
    assert run_tests == (
        "(command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)) && "
        "python3 -m pip install -r requirements.txt -r tests/requirements.txt && "
        "python3 -m pytest -q tests"
    )


def test_ci_runs_the_readme_test_command_verbatim():
    run_tests = commands(section("Quick start"))[1]
    ci_lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    assert run_tests in ci_lines, f".ci/run does not contain the README's test command:\n{run_tests}"


def test_ci_script_is_strict_and_executable():
    text = CI_RUN.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash") or text.startswith("#!/bin/bash")
    assert "set -euo pipefail" in text
    assert os.access(CI_RUN, os.X_OK), ".ci/run must be executable (chmod +x)"


def test_requirement_files_named_by_the_commands_exist():
    assert (ROOT / "requirements.txt").is_file()
    tests_requirements = (ROOT / "tests" / "requirements.txt").read_text(encoding="utf-8")
    assert "-r ../requirements.txt" in tests_requirements.splitlines()
    for name in ("pytest", "hypothesis"):
        assert re.search(rf"^{name}\s*[<>=~]", tests_requirements, re.MULTILINE), name
    app_requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8").lower()
    for name in ("tensorflow", "streamlit", "numpy", "plotly", "scikit-image", "pillow"):
        assert re.search(rf"^{name}\s*[<>=~]", app_requirements, re.MULTILINE), name


def test_files_in_the_layout_exist():
    (layout,) = code_blocks(section("Layout"))
    parents: list[tuple[int, str]] = []  # (indent, folder) of the folders we are inside
    for line in layout.splitlines():
        if not line.strip():
            continue
        indent, name = len(line) - len(line.lstrip()), line.split()[0]
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = "".join(folder for _, folder in parents) + name
        if name.endswith("/"):
            parents.append((indent, name))
            continue  # folders: some (sample_data/) may still be empty, which git does not keep
        assert (ROOT / path).is_file(), f"README's layout names {path}, which does not exist"


def test_python_examples_run(tmp_path, monkeypatch):
    """The README's Keras examples, run in order on a tiny made-up data set."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    images = rng.random((4, 16, 16, 3)).astype("float32")
    masks = (images[..., :1] > 0.5).astype("float32")
    namespace = {"images": images, "masks": masks}
    blocks = code_blocks(section("Using `explorer.losses` in your own Keras model"), "python")
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert 0.0 <= namespace["score"] <= 1.0


def test_readme_is_a_short_reference():
    lines = README.count("\n") + (not README.endswith("\n"))
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; keep it to {MAX_README_LINES}"


def test_every_module_the_readmes_run_exists():
    """Each `python -m explorer...` the READMEs name is a module file or a package with __main__."""
    named = set()
    for text in (README, BENCH_README.read_text(encoding="utf-8")):
        named |= {m.rstrip(".") for m in re.findall(r"python3? -m (explorer[\w.]*)", text)}
    assert "explorer.bench" in named and "explorer.train" in named
    for module in sorted(named):
        path = ROOT.joinpath(*module.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), (
            f"the README runs `python -m {module}`, which has no module")
