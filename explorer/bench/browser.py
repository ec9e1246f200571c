"""Browser benchmark: how long a slider change takes to show, in this app vs an empty one.

Run it as ``python -m explorer.bench.browser [--changes 15]``. It starts two Streamlit
servers on free local ports: this app (``app.py``) and a baseline (a one-slider app written
to a temp dir), opens each in headless Chromium at 1600x1200, and for each measured
slider presses ArrowRight on its focused thumb (ArrowLeft once it reaches the end), after
three warm-up changes. One change is timed in the page, from the keydown until the
script state has gone to ``running`` and back to ``notRunning`` and two animation frames
have passed (a MutationObserver on ``data-test-script-state`` catches brief runs).

Measured here, at the default 256x256 masks: the loss-settings "smooth" select_slider, the
truth's "Centre x" slider (a new truth mask) and the prediction's "Shift x (px)"; each reruns
the Explore page's fragment (the stage, the controls, the view below). Prints a machine line,
a table (median and p90 ms, ratio to the baseline median) and the worst ratio.
No timing is asserted anywhere. Needs Playwright (python) and a Chromium binary.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
WARMUP = 3
TARGET, AIM = 3.0, 2.0
BASELINE_APP = 'import streamlit as st\n\nst.slider("x", 0, 1000, 0, key="x")\n'

# (app, slider label as shown, the aria-label of its range input)
SLIDERS = (
    ("baseline", "x", "x"),
    ("app", "smooth", "smooth"),
    ("app", "truth's Centre x", "Centre x"),
    ("app", "Shift x (px)", "Shift x (px)"),
)

# Installed before the page loads: reads the top-level fields of each ForwardMsg on
# Streamlit's WebSocket (protobuf) and reports ``script_finished`` (field 6) and
# ``session_status_changed`` (field 9, whose field 2 is script_is_running). Needed because
# a quick run's "running" state can be batched away by React: the
# ``data-test-script-state`` attribute then never shows "running" in the DOM.
WS_JS = """(() => {
  const Orig = window.WebSocket;
  const varint = (b, i) => {
    let v = 0, m = 1;
    while (i < b.length) { const x = b[i++]; v += (x & 0x7f) * m; m *= 128; if (x < 128) break; }
    return [v, i];
  };
  const fields = (b) => {  // [[field, wire, value or [start, end]], ...]
    const out = [];
    let i = 0;
    while (i < b.length) {
      let tag, v; [tag, i] = varint(b, i);
      const field = Math.floor(tag / 8), wire = tag & 7;
      if (wire === 0) { [v, i] = varint(b, i); out.push([field, 0, v]); }
      else if (wire === 2) { [v, i] = varint(b, i); out.push([field, 2, [i, i + v]]); i += v; }
      else if (wire === 1) { i += 8; } else if (wire === 5) { i += 4; } else break;
    }
    return out;
  };
  const onMessage = (data) => {
    const b = new Uint8Array(data);
    let top;
    try { top = fields(b); } catch (e) { return; }
    for (const [field, wire, value] of top) {
      if (field === 6 && wire === 0 && value !== 2 && window.__benchFinished) {
        window.__benchFinished(value);  // 0 done, 1 compile error, 3 fragment run done
      }
      if (field === 9 && wire === 2 && window.__benchStatus) {
        const inner = fields(b.subarray(value[0], value[1]));
        window.__benchStatus(inner.some(([f, w, v]) => f === 2 && w === 0 && v === 1));
      }
    }
  };
  function Patched(...args) {
    const ws = new Orig(...args);
    ws.addEventListener('message', (e) => {
      if (e.data instanceof ArrayBuffer) onMessage(e.data);
      else if (e.data && e.data.arrayBuffer) e.data.arrayBuffer().then(onMessage);
    });
    const send = ws.send.bind(ws);
    ws.send = (d) => { if (window.__benchSent) window.__benchSent(); return send(d); };
    return ws;
  }
  Patched.prototype = Orig.prototype;
  Object.assign(Patched, Orig);
  window.WebSocket = Patched;
})();"""

# Times one change in the page: t0 at the keydown; t1 two animation frames after the run
# the change started has finished (the server said script_finished or "not running" after
# "running", or the page's script state went "running" then "notRunning") and the state
# attribute reads "notRunning".
ARM_JS = """() => {
  const s = window.__bench = {t0: null, t1: null, sent: false, sawRunning: false,
                              finished: null};
  if (window.__benchObserver) window.__benchObserver.disconnect();
  if (window.__benchKey) document.removeEventListener('keydown', window.__benchKey, true);
  window.__benchKey = () => { if (s.t0 === null) s.t0 = performance.now(); };
  document.addEventListener('keydown', window.__benchKey, true);
  const state = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state');
  };
  const finish = () => {
    if (s.t1 !== null || s.t0 === null) return;
    s.t1 = -1;  // pending
    s.runDone = performance.now();
    const wait = () => {
      if (state() !== 'notRunning') { requestAnimationFrame(wait); return; }
      requestAnimationFrame(() => requestAnimationFrame(() => { s.t1 = performance.now(); }));
    };
    wait();
  };
  window.__benchSent = () => { if (s.t0 !== null) s.sent = true; };
  window.__benchFinished = (status) => { if (s.sent) { s.finished = status; finish(); } };
  window.__benchStatus = (running) => {
    if (!s.sent) return;
    if (running) s.serverRunning = true;
    else if (s.serverRunning) finish();
  };
  window.__benchObserver = new MutationObserver(() => {
    const now = state();
    if (now === 'running' && s.t0 !== null) s.sawRunning = true;
    else if (now === 'notRunning' && s.sawRunning) finish();
  });
  window.__benchObserver.observe(document.body, {attributes: true, subtree: true,
                                                 attributeFilter: ['data-test-script-state']});
}"""
DONE_JS = "() => window.__bench && window.__bench.t1 !== null && window.__bench.t1 > 0"
ELAPSED_JS = "() => window.__bench.t1 - window.__bench.t0"


@dataclass
class Row:
    app: str
    slider: str
    median_ms: float
    p90_ms: float
    ratio: float


def chromium_path() -> str | None:
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(script: Path, cwd: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_server(proc)
                raise RuntimeError(f"streamlit did not start for {script}")
            time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def settle(page) -> None:
    """Wait until the page has been idle (script not running) for half a second."""
    page.wait_for_function("""() => {
      const app = document.querySelector('[data-testid="stApp"]');
      const idle = app && app.getAttribute('data-test-script-state') === 'notRunning';
      const now = performance.now();
      if (!idle) { window.__idleSince = null; return false; }
      if (!window.__idleSince) window.__idleSince = now;
      return now - window.__idleSince > 500;
    }""", polling=50, timeout=120_000)


def open_page(browser, url: str, timeout_ms: int, **goto):
    """A page in a browser context of its own (a Streamlit session of its own) at 1600x1200,
    with the WebSocket probe ``WS_JS`` installed, gone to ``url`` (``goto``: Playwright's
    ``page.goto`` options)."""
    page = browser.new_context(viewport={"width": 1600, "height": 1200}).new_page()
    page.set_default_timeout(timeout_ms)
    page.add_init_script(WS_JS)
    page.goto(url, **goto)
    return page


def slider_thumb(page, aria_label: str):
    """The range input of the slider whose label is ``aria_label`` (the first one)."""
    return page.locator(f'[data-testid="stSlider"] input[type="range"][aria-label="{aria_label}"]'
                        ).first


def time_slider(page, aria_label: str, changes: int) -> list[float]:
    """Milliseconds per change, after WARMUP untimed changes."""
    thumb = slider_thumb(page, aria_label)
    thumb.wait_for(state="attached", timeout=60_000)
    thumb.scroll_into_view_if_needed()
    settle(page)
    step = "ArrowRight"
    times = []
    for i in range(WARMUP + changes):
        value, top = float(thumb.input_value()), float(thumb.get_attribute("max"))
        bottom = float(thumb.get_attribute("min"))
        if step == "ArrowRight" and value >= top:
            step = "ArrowLeft"
        elif step == "ArrowLeft" and value <= bottom:
            step = "ArrowRight"
        thumb.focus()
        page.evaluate(ARM_JS)
        page.keyboard.press(step)
        try:
            page.wait_for_function(DONE_JS, timeout=60_000, polling=20)
        except Exception as error:
            state = page.evaluate("() => JSON.stringify(window.__bench)")
            raise RuntimeError(f"slider {aria_label!r}, change {i}: no finished run seen "
                               f"({state})") from error
        if i >= WARMUP:
            times.append(float(page.evaluate(ELAPSED_JS)))
        page.wait_for_selector(IDLE)
    return times


def measure(changes: int) -> tuple[list[Row], str]:
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    if chromium is None:
        raise RuntimeError("chromium is not installed")
    servers = []
    tmp = tempfile.TemporaryDirectory(prefix="bench_browser_")
    try:
        baseline = Path(tmp.name) / "baseline.py"
        baseline.write_text(BASELINE_APP)
        servers.append(start_server(baseline, Path(tmp.name)))
        servers.append(start_server(REPO / "app.py", REPO))
        urls = {"baseline": servers[0][1], "app": servers[1][1]}
        results: dict[tuple[str, str], list[float]] = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                version = browser.version
                for app, url in urls.items():
                    page = open_page(browser, url, 60_000)
                    page.wait_for_selector(IDLE, timeout=180_000)
                    if app == "app":
                        page.wait_for_selector('[data-testid="stMetricValue"]', timeout=180_000)
                    for row_app, name, aria in SLIDERS:
                        if row_app == app:
                            results[(app, name)] = time_slider(page, aria, changes)
                    page.context.close()
            finally:
                browser.close()
    finally:
        for proc, _ in servers:
            stop_server(proc)
        tmp.cleanup()
    base = statistics.median(results[("baseline", "x")])
    rows = [Row(app, name, statistics.median(t), percentile(t, 0.9),
                statistics.median(t) / base) for (app, name), t in results.items()]
    return rows, version


def machine_line(browser_version: str) -> str:
    import streamlit

    cpu = platform.processor() or platform.machine()
    return (f"machine: {platform.platform()} ({cpu}), {os.cpu_count()} CPUs; "
            f"Python {platform.python_version()}, streamlit {streamlit.__version__}, "
            f"chromium {browser_version}")


def format_table(rows: list[Row]) -> str:
    header = f"{'app':<9} {'slider':<26} {'median ms':>10} {'p90 ms':>10} {'ratio':>7}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.app:<9} {r.slider:<26} {r.median_ms:>10.1f} {r.p90_ms:>10.1f} "
                     f"{r.ratio:>7.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m explorer.bench.browser",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=15,
                        help="timed slider changes per slider (after 3 warm-up changes)")
    args = parser.parse_args(argv)
    if args.changes < 1:
        parser.error("--changes must be at least 1")
    rows, version = measure(args.changes)
    print(machine_line(version))
    print(format_table(rows))
    worst = max((r for r in rows if r.app == "app"), key=lambda r: r.ratio)
    print(f"worst ratio ({worst.slider}) = {worst.ratio:.2f}, target <= {TARGET:g} "
          f"(aim {AIM:g})")
    return rows


if __name__ == "__main__":
    main()
