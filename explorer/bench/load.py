"""Classroom load test: N browser sessions on one server, all moving sliders at once.

Run it as ``python -m explorer.bench.load [--sessions 10] [--rounds 6] [--no-training]``.
It starts ``streamlit run app.py`` on a free loopback port and opens headless Chromium:

1. ``idle``: one session alone moves its sliders (the baseline).
2. ``N sessions``: N sessions (separate browser contexts, so separate Streamlit sessions)
   load the page together, half of them draw a stroke on the truth canvas, then each moves
   a slider, waits a random 0.5–3 s after its page has updated (a person looking), and moves
   again, alternating the ``smooth`` slider (the results fragment reruns) and ``Shift x`` (the
   whole Explore tab's fragment). ``--burst`` instead has every session press at the same
   moment (the worst case).
3. ``N sessions + training``: the same while one more session runs a training job.

A rerun is timed inside each page, from the keydown to two animation frames after its run
finished (the same in-page clock as ``explorer.bench.browser``), and to the server's "script
finished" message (the server's share: the browsers run on the same cores as the server here,
which a class's laptops would not). It prints a table: reruns, median and p95 in ms of both,
ratio of the drawn median to the idle one, page exceptions or failed panels, and the server's
memory (RSS of the server and its child processes, peak). Bounded:
``--max-seconds`` stops it. Nothing is asserted; this is a measurement.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from explorer.bench.browser import (ARM_JS, CHROMIUM_ARGS, DONE_JS, ELAPSED_JS, IDLE, REPO,
                                    chromium_path, open_page, percentile, settle,
                                    slider_thumb, start_server, stop_server)

METRIC = '[data-testid="stMetricValue"]'
# keydown to the server's "script finished": the server's share, without the page's drawing
ROUND_TRIP_JS = "() => window.__bench.runDone - window.__bench.t0"
SLIDERS = ("smooth", "Shift x (px)")  # the results fragment, the Explore tab's fragment
FAILED = ('[data-testid="stException"], [data-testid="stAlertContentError"]:has-text('
          '"could not be shown")')


@dataclass
class Phase:
    name: str
    times: list[float]  # keydown to the page drawn
    round_trips: list[float]  # keydown to the server's "script finished"
    errors: int
    rss_mb: float
    at: list[float]  # seconds into the phase each rerun was seen done
    note: str = ""

    def slowest(self, n: int = 3) -> str:
        worst = sorted(zip(self.times, self.at), reverse=True)[:n]
        return (f"{self.name}: slowest " + ", ".join(f"{t:.0f} ms at {a:.0f} s" for t, a in worst)
                + (f"; {self.note}" if self.note else ""))

    def row(self, idle_median: float) -> str:
        def stats(values):
            if not values:
                return float("nan"), float("nan")
            return statistics.median(values), percentile(values, 0.95)

        median, p95 = stats(self.times)
        server_median, server_p95 = stats(self.round_trips)
        return (f"| {self.name:<26} | {len(self.times):>6} | {median:>6.0f} | {p95:>6.0f} | "
                f"{server_median:>6.0f} | {server_p95:>6.0f} | {median / idle_median:>5.2f} | "
                f"{self.errors:>6} | {self.rss_mb:>8.0f} |")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc), in MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def open_session(browser, url: str):
    return open_page(browser, url, 120_000, wait_until="commit")


def wait_loaded(page) -> None:
    page.wait_for_selector(IDLE, timeout=180_000)
    page.wait_for_selector(METRIC, timeout=180_000)


def draw_stroke(page) -> None:
    """Switch the truth to the canvas and draw one horizontal stroke."""
    page.locator('[data-testid="stRadio"]').first.get_by_text("Draw", exact=True).click()
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(state="visible", timeout=120_000)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.2, y)
    page.mouse.down()
    for i in range(1, 9):
        page.mouse.move(box["x"] + box["width"] * (0.2 + 0.07 * i), y, steps=2)
    page.mouse.up()


def press(page, label: str, direction: dict) -> None:
    """Arm the in-page clock and press an arrow key on a slider (turning at its ends)."""
    slider = slider_thumb(page, label)
    value = float(slider.input_value())
    key = (id(page), label)
    if value >= float(slider.get_attribute("max")):
        direction[key] = "ArrowLeft"
    elif value <= float(slider.get_attribute("min")):
        direction[key] = "ArrowRight"
    slider.focus()
    page.evaluate(ARM_JS)
    page.keyboard.press(direction.setdefault(key, "ArrowRight"))


def run_rounds(pages, rounds: int, server_pid: int, deadline: float, *, burst: bool,
               think: tuple[float, float] = (0.5, 3.0), seed: int = 0):
    """Every session makes ``rounds`` slider moves, alternating the two sliders. With
    ``burst`` all sessions press at the same moment each round (the worst case); otherwise
    each waits a random think time after its last rerun finished (a class at work)."""
    rng = random.Random(seed)
    direction: dict = {}
    times, round_trips, at, peak = [], [], [], tree_rss_mb(server_pid)
    for page in pages:
        for label in SLIDERS:
            slider_thumb(page, label).wait_for(state="attached", timeout=120_000)
        settle(page)
    for page in pages:  # one untimed warm-up move each
        press(page, SLIDERS[0], direction)
    for page in pages:
        page.wait_for_function(DONE_JS, timeout=120_000, polling=20)
        page.wait_for_selector(IDLE)
    done = {id(page): 0 for page in pages}
    busy: set[int] = set()
    start = sampled = time.monotonic()
    due = {id(page): start + (0 if burst else rng.uniform(*think)) for page in pages}
    while any(n < rounds for n in done.values()):
        if time.monotonic() > deadline:
            print("stopped early: --max-seconds reached", file=sys.stderr)
            break
        now, all_idle = time.monotonic(), not busy
        for page in pages:
            key = id(page)
            if key in busy:
                if page.evaluate(DONE_JS):
                    times.append(float(page.evaluate(ELAPSED_JS)))
                    round_trips.append(float(page.evaluate(ROUND_TRIP_JS)))
                    at.append(time.monotonic() - start)
                    busy.discard(key)
                    done[key] += 1
                    due[key] = time.monotonic() + (0 if burst else rng.uniform(*think))
            elif done[key] < rounds and now >= due[key] and (all_idle or not burst):
                press(page, SLIDERS[done[key] % 2], direction)
                busy.add(key)
        if time.monotonic() - sampled > 1.0:  # reading /proc is not free: once a second
            peak, sampled = max(peak, tree_rss_mb(server_pid)), time.monotonic()
        time.sleep(0.05)
    return times, round_trips, peak, at


def errors_on(pages) -> int:
    return sum(page.locator(FAILED).count() for page in pages)


def start_training(browser, url: str):
    page = open_session(browser, url)
    wait_loaded(page)
    page.get_by_role("radio", name="Train", exact=True).click()  # the page picker
    start = page.get_by_role("button", name="Start")
    start.wait_for(timeout=120_000)
    settle(page)
    start.click()
    # the first epoch's predictions: the run is really going (not just queued or spawning)
    page.get_by_text("Validation predictions after epoch", exact=False).first.wait_for(
        timeout=300_000)
    return page


def niced(chromium: str, folder: Path, nice: int) -> str:
    """A launcher that starts Chromium at a lower priority: the browsers then stand for the
    class's own laptops, which would not take the server's cores. Playwright starts Chromium
    in a session of its own, and where Linux groups CPU time by session (autogroups) a
    process's nice only counts inside its group: so the group's nice is set too, when the
    kernel has autogroups (the write fails harmlessly otherwise)."""
    launcher = folder / "chromium-niced"
    launcher.write_text(f'#!/bin/sh\necho {int(nice)} > /proc/self/autogroup 2>/dev/null\n'
                        f'exec nice -n {int(nice)} "{chromium}" "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)


def measure(sessions: int, rounds: int, training: bool, max_seconds: float,
            burst: bool = False, browser_nice: int = 0) -> list[Phase]:
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    if chromium is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    folder = tempfile.TemporaryDirectory(prefix="bench_load_")
    if browser_nice:
        chromium = niced(chromium, Path(folder.name), browser_nice)
    deadline = time.monotonic() + max_seconds
    proc, url = start_server(REPO / "app.py", REPO)
    phases = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            alone = open_session(browser, url)
            wait_loaded(alone)
            times, trips, rss, at = run_rounds([alone], max(rounds, 6), proc.pid, deadline,
                                               burst=True)
            phases.append(Phase("idle (1 session)", times, trips, errors_on([alone]), rss, at))
            alone.context.close()

            pages = [open_session(browser, url) for _ in range(sessions)]  # all at once
            for page in pages:
                wait_loaded(page)
            for page in pages[::2]:
                draw_stroke(page)
            times, trips, rss, at = run_rounds(pages, rounds, proc.pid, deadline, burst=burst)
            phases.append(Phase(f"{sessions} sessions", times, trips, errors_on(pages), rss, at))
            if training:
                trainer = start_training(browser, url)
                times, trips, rss, at = run_rounds(pages, rounds, proc.pid, deadline,
                                                   burst=burst, seed=1)
                running = trainer.get_by_role("button", name="Stop").count() > 0
                phases.append(Phase(f"{sessions} sessions + training", times, trips,
                                    errors_on(pages + [trainer]), rss, at,
                                    "training " + ("still running at the end" if running
                                                   else "finished during the phase")))
            browser.close()
    finally:
        stop_server(proc)
        folder.cleanup()
    return phases


def main(argv: list[str] | None = None) -> list[Phase]:
    parser = argparse.ArgumentParser(prog="python -m explorer.bench.load",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--burst", action="store_true",
                        help="every session presses at the same moment (worst case) instead "
                        "of after a random 0.5-3 s think time")
    parser.add_argument("--browser-nice", type=int, default=0,
                        help="run the browsers at this nice level (e.g. 10), so that they stand "
                        "for the class's own machines instead of taking the server's cores")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    phases = measure(args.sessions, args.rounds, not args.no_training, args.max_seconds,
                     args.burst, args.browser_nice)
    idle = statistics.median(phases[0].times)
    mode = "all at once" if args.burst else "after a random 0.5-3 s think time"
    print(f"machine: {os.cpu_count()} cores; {args.sessions} sessions x {args.rounds} moves "
          f"(sliders {' / '.join(SLIDERS)} alternately, each {mode}); browsers at nice "
          f"{args.browser_nice}")
    print("| phase                      | reruns | drawn median | p95 | server median | p95 | "
          "ratio | errors | RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for phase in phases:
        print(phase.row(idle))
    for phase in phases[1:]:
        print(phase.slowest())
    return phases


if __name__ == "__main__":
    main()
