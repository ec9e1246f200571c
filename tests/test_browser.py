"""End-to-end checks of the running app in headless Chromium (Playwright).

Starts ``streamlit run app.py`` on a free local port, drives the page like a user and
looks for exceptions. Skipped where Chromium or Playwright is missing, except in CI
(``CI=true``), where their absence is a failure.
"""

from __future__ import annotations

import os

import pytest

from explorer.bench.browser import (CHROMIUM_ARGS, IDLE, REPO, chromium_path, start_server,
                                    stop_server)

ARTIFACTS = REPO / "tests" / "artifacts"
METRIC = '[data-testid="stMetricValue"]'

# Arms a watcher that records the script state going to "running"; wait_rerun() then
# waits for it to be back at "notRunning" (a rerun may be too brief to poll for).
ARM_JS = """() => {
  window.__sawRunning = false;
  if (window.__stateObserver) window.__stateObserver.disconnect();
  const check = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (app && app.getAttribute('data-test-script-state') === 'running') window.__sawRunning = true;
  };
  window.__stateObserver = new MutationObserver(check);
  window.__stateObserver.observe(document.body, {attributes: true, subtree: true,
                                                 attributeFilter: ['data-test-script-state']});
  check();
}"""
RERUN_DONE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return window.__sawRunning && app && app.getAttribute('data-test-script-state') === 'notRunning';
}"""


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def _chromium() -> str:
    path = chromium_path()
    if not path:
        _missing("chromium is not installed")
    return path


@pytest.fixture(scope="module")
def server():
    chromium = _chromium()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed")
    proc, url = start_server(REPO / "app.py", REPO)
    try:
        yield {"url": url, "chromium": chromium}
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=server["chromium"], args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(server, browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(server["url"])
    page.wait_for_selector(IDLE, timeout=120_000)
    page.wait_for_selector(METRIC, timeout=120_000)
    yield page
    context.close()


def _arm(page):
    page.evaluate(ARM_JS)


def _wait_rerun(page, timeout=60_000):
    page.wait_for_function(RERUN_DONE_JS, timeout=timeout)
    page.wait_for_selector(IDLE)


def _metric(page) -> str:
    return page.locator(METRIC).first.inner_text().strip()


def _no_exception(page):
    assert page.locator('[data-testid="stException"]').count() == 0, \
        page.locator('[data-testid="stException"]').first.inner_text()


def test_page_loads(page):
    _no_exception(page)
    label = page.locator('[data-testid="stMetric"]').first.inner_text()
    assert "Dice loss" in label
    assert _metric(page)


# What the stage must show inside the window without scrolling: pictures or charts at
# least 120 px a side, the chosen loss's value (st.metric) and the gradient's label.
STAGE_JS = """() => {
  const inside = (r) => r.width > 0 && r.top >= 0 && r.left >= 0
      && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
  const main = document.querySelector('[data-testid="stMain"]');
  const views = [...document.querySelectorAll(
      '.st-key-stage [data-testid="stImage"] img, .st-key-stage [data-testid="stPlotlyChart"]')]
    .map(e => e.getBoundingClientRect())
    .filter(r => inside(r) && r.width >= 120 && r.height >= 120);
  const value = document.querySelector('.st-key-stage [data-testid="stMetricValue"]');
  const label = [...document.querySelectorAll('.st-key-stage strong')]
    .find(e => /^∂L\/∂(p|logit) of /.test(e.innerText.trim()));
  return {pictures: views.length, scrolled: main ? main.scrollTop : 0,
          value: value && inside(value.getBoundingClientRect()) ? value.innerText : null,
          label: label && inside(label.getBoundingClientRect()) ? label.innerText : null};
}"""


def _stage_fits(page, where: str) -> dict:
    page.wait_for_selector(IDLE)
    page.wait_for_selector(".st-key-stage " + METRIC)
    page.wait_for_timeout(500)  # the pictures' layout settles after the run
    seen = page.evaluate(STAGE_JS)
    assert seen["scrolled"] == 0, where
    assert seen["pictures"] >= 3, f"{where}: {seen}"
    assert seen["value"], f"{where}: the chosen loss's value is not in the window: {seen}"
    assert seen["label"], f"{where}: the gradient's label is not in the window: {seen}"
    _no_exception(page)
    return seen


@pytest.mark.parametrize("width, height, query", [(1280, 720, "?presenter=true"),
                                                  (1920, 1080, "")])
def test_the_stage_fits_the_window(server, browser, width, height, query):
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(server["url"] + query)
        page.wait_for_selector(IDLE, timeout=120_000)
        _stage_fits(page, f"{width}x{height}{query}")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"stage_{width}x{height}.png"))
    finally:
        context.close()


def test_every_scenario_fits_1280x720(server, browser):
    """Click each scenario's button in the sidebar: its stage fits the window too."""
    from explorer.ui.scenarios import SCENARIOS

    context = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(server["url"])
        page.wait_for_selector(IDLE, timeout=120_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for scenario in SCENARIOS:
            _arm(page)
            page.locator(f'.st-key-scenario_button_{scenario.key} button').first.click()
            _wait_rerun(page)
            page.wait_for_function(
                "title => { const e = document.querySelector('.st-key-scenario_panel');"
                " return e && e.innerText.includes(title); }", arg=scenario.title)
            _stage_fits(page, scenario.key)
            page.screenshot(path=str(ARTIFACTS / f"scenario_{scenario.key}.png"))
    finally:
        context.close()


def test_drawing_changes_the_loss(page):
    _arm(page)
    page.locator('[data-testid="stRadio"]').first.get_by_text("Draw", exact=True).click()
    _wait_rerun(page)
    canvas = page.locator("canvas.upper-canvas").first  # Fabric's event layer (shadow DOM)
    canvas.wait_for(state="visible")
    canvas.scroll_into_view_if_needed()
    page.wait_for_selector(METRIC)
    before = _metric(page)
    box = canvas.bounding_box()
    assert box and box["width"] > 50 and box["height"] > 50
    _arm(page)
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.2, y)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(box["x"] + box["width"] * (0.2 + 0.06 * i), y + (i % 3) * 4, steps=2)
    page.mouse.up()
    _wait_rerun(page)
    page.wait_for_function(
        "([sel, before]) => { const e = document.querySelector(sel);"
        " return e && e.innerText.trim() !== before; }", arg=[METRIC, before], timeout=30_000)
    assert _metric(page) != before
    _no_exception(page)


def test_shift_slider_and_screenshot(page):
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Shift x (px)")
    thumb = slider.locator('input[type="range"]').first  # react-aria's focusable input
    shown = slider.locator('[data-testid="stSliderThumbValue"]').first
    before = shown.inner_text().strip()
    thumb.focus()
    _arm(page)
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    _wait_rerun(page)
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE)
    after = shown.inner_text().strip()
    assert after != before
    assert int(after) > int(before)
    assert thumb.input_value() == after
    _no_exception(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Streamlit scrolls an inner container, so full_page alone stops at the viewport:
    # grow the viewport to the content's height first.
    height = page.evaluate("""() => Math.max(...[...document.querySelectorAll(
        '[data-testid="stMain"], [data-testid="stAppViewContainer"], body')]
        .map(e => e.scrollHeight))""")
    page.set_viewport_size({"width": 1600, "height": min(max(int(height), 1200), 12_000)})
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)


def test_link_reopens_the_same_view(page, browser):
    """Pick a scenario, change two settings, open the page's address in a new tab: same
    controls, same numbers."""
    _arm(page)
    page.locator('[data-testid="stSidebar"]').get_by_role(
        "button", name="A shifted prediction").click()
    _wait_rerun(page)
    page.wait_for_function("() => location.search.includes('shift_x=16')", timeout=30_000)
    exact = page.get_by_label("smooth, exact")
    exact.fill("0.01")
    _arm(page)
    exact.press("Enter")
    _wait_rerun(page)
    _arm(page)
    page.locator('[data-testid="stCheckbox"]').filter(has_text="Per image").first.locator(
        "label").click()
    _wait_rerun(page)
    page.wait_for_function("() => location.search.includes('per_image=false')"
                           " && location.search.includes('smooth=0.01')", timeout=30_000)
    link, shown = page.url, page.locator(METRIC).all_inner_texts()
    other = browser.new_context(viewport={"width": 1600, "height": 1200}).new_page()
    try:
        other.set_default_timeout(60_000)
        other.goto(link)
        other.wait_for_selector(IDLE, timeout=120_000)
        other.wait_for_selector(METRIC, timeout=120_000)
        assert other.locator(METRIC).all_inner_texts() == shown
        assert other.get_by_label("smooth, exact").input_value() == "0.01"
        assert "A shifted prediction" in other.locator(".st-key-scenario_panel").inner_text()
        _no_exception(other)
    finally:
        other.context.close()
