"""Every control's label reads in full, in headless Chromium (Playwright) at the two
window sizes the issue names: a label cut to "Squared …" or "Include back…" fails.
Skipped where Chromium or Playwright is missing, as ``test_browser``."""

from __future__ import annotations

from explorer.bench.browser import IDLE
from tests.test_browser import ARTIFACTS, browser, server  # noqa: F401 (the fixtures)

# text the page has cut with an ellipsis (wider than its box), in the main area
CUT_JS = """() => [...document.querySelectorAll('[data-testid="stMain"] *')]
  .filter(e => e.offsetParent && e.children.length <= 3 && e.innerText
          && getComputedStyle(e).textOverflow === 'ellipsis' && e.scrollWidth > e.clientWidth + 1)
  .map(e => e.innerText.trim())"""
SIX_CLASSES = "?num_classes=6+%28softmax%29"  # every class weight shown, in its label form


SIZES = ((1280, 720), (1920, 1080))  # a projector and a large screen, as the issue names


def test_no_label_is_cut_off(server, browser):  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    try:
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.goto(server["url"] + SIX_CLASSES, timeout=60_000)
            page.wait_for_selector(IDLE, timeout=120_000)
            page.get_by_text("Tversky, focal, Lovász, BCE + Dice").click()  # open the fold
            page.get_by_text("Tversky α (false positives)").wait_for(timeout=60_000)
            page.wait_for_timeout(500)
            for label in ("Squared denominator", "Soft labels (L1)", "Inverse frequency",
                          "Normalise weights", "Include background", "class 5"):
                assert page.get_by_text(label, exact=True).first.is_visible(), label
            cut = page.evaluate(CUT_JS)
            if cut:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"labels_cut_{width}x{height}.png"))
            assert not cut, f"{width}x{height}: cut off: {cut}"
    finally:
        context.close()
