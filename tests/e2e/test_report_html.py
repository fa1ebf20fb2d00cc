"""The HTML report in a real browser: headless Chromium renders it without a console error or a
refused load, and the screenshot (kept in test-artifacts/) shows a page, not a blank.

Skipped, saying so, where Chromium is not installed (``apt-get install chromium``); under CI that
fails instead, as .ci/run installs it: a CI run never passes by skipping.
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from tests import chromium
from tests.audit_events import SINCE, UNTIL, bypasses, demo_lifecycles, hand_checked, trail
from worker.commands.report import build
from worker.commands.report.page import to_html

pytestmark = pytest.mark.e2e
GENERATED = datetime(2026, 11, 28, 19, 3, 14, tzinfo=UTC)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> str:
    binary = chromium.find()
    if binary is None:
        reason = "needs Chromium (apt-get install chromium) to render the HTML report"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def page() -> str:
    events = sorted(trail(hand_checked() + demo_lifecycles()) + bypasses(), key=lambda e: e["time"])
    return to_html(build(events, SINCE, UNTIL), GENERATED)


def test_the_report_renders_cleanly(browser: str, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    html.write_text(page(), encoding="utf-8")
    shown = chromium.render(browser, html.as_uri(), tmp_path / "profile")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.write_bytes(shown.png)
    print(f"screenshot of the HTML report: {shot}")

    assert shown.errors == []
    image = Image.open(io.BytesIO(shown.png)).convert("RGB")
    width, height = image.size
    assert width == 1280 and height > 1500  # the whole page, charts and tables included
    counted = image.getcolors(maxcolors=width * height) or []
    colours = {colour: n for n, colour in counted}
    drawn = 1 - max(colours.values()) / (width * height)  # the most common colour: the background
    assert drawn > 0.05, f"only {drawn:.1%} of the screenshot differs from its background"
    # The charts' colours are on it: the verified bars and the failed ones.
    assert colours.get((0, 158, 115), 0) > 1000 and colours.get((213, 94, 0), 0) > 100
    # The demo's lifted gates (one per desk, by agent 9001) and hand-set markers are shown.
    assert "Gates lifted and markers overturned" in shown.text
    assert "2 verifications had their gate lifted" in shown.text
    assert "9001\t2" in shown.text  # the agent and the gates they lifted, a table row
    assert "Verified markers Deskgate did not write, set to error." in shown.text
    # The bypasses' section is drawn, its high-severity row in its own colour (#ffebe9).
    assert colours.get((255, 235, 233), 0) > 500


def test_the_browser_check_sees_console_errors_and_refused_loads(
    browser: str, tmp_path: Path
) -> None:
    """The control: the same page with a script and an outside image slipped in. Both must be
    reported, or the clean result above would prove nothing."""
    html = tmp_path / "tampered.html"
    slipped = (
        '<script>console.error("slipped in")</script>'
        '<img alt="" src="https://deskgate.invalid/pixel.png">'
    )
    html.write_text(page().replace("<main>", "<main>" + slipped, 1), encoding="utf-8")
    shown = chromium.render(browser, html.as_uri(), tmp_path / "profile")
    assert any("inline script" in e for e in shown.errors), shown.errors
    assert any("deskgate.invalid" in e for e in shown.errors), shown.errors

    # Without the page's policy the script runs: its console error and its exception are seen.
    html.write_text(
        page()
        .replace('http-equiv="Content-Security-Policy"', 'name="policy-removed"')
        .replace("<main>", '<main><script>console.error("slipped in"); no_such()</script>', 1),
        encoding="utf-8",
    )
    shown = chromium.render(browser, html.as_uri(), tmp_path / "profile")
    assert "console.error: slipped in" in shown.errors, shown.errors
    assert any("ReferenceError: no_such is not defined" in e for e in shown.errors), shown.errors
