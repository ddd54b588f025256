"""The email on a phone: in Chromium at 390 px the figures stack two by two, no label breaks inside, the DEMO DATA
badge stays whole; at desktop width the four figures share one row. Screenshots go to test-artifacts/browser/email/."""

from __future__ import annotations

import email
import re
from email import policy

import pytest
from django.core.management import call_command

from tests.test_subscriber_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, sync_api
from tests.test_subscriber_browser import pytestmark as browser_marks

pytestmark = [pytest.mark.django_db, *browser_marks]

LAYOUT = """() => {
  const boxes = [...document.querySelectorAll('.figure')].map(f => {
    const r = f.getBoundingClientRect();
    const label = f.querySelector('.figure-label').getBoundingClientRect();
    const value = f.querySelector('.figure-value').getBoundingClientRect();
    return {top: Math.round(r.top), left: Math.round(r.left), right: r.right, label: label.height, value: value.height};
  });
  const badges = [...document.querySelectorAll('.label')].map(b => b.getClientRects().length);
  return {boxes, badges, width: document.documentElement.clientWidth, scroll: document.documentElement.scrollWidth};
}"""


@pytest.fixture
def email_html(trading_day, outbox, tmp_path):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat())
    message = email.message_from_bytes(sorted(outbox.glob("*.eml"))[0].read_bytes(), policy=policy.default)
    html = message.get_body(("html",)).get_content()
    page = tmp_path / "email.html"
    page.write_text(re.sub(r'src="cid:[^"]+"', 'src=""', html))
    return page


@pytest.mark.parametrize("width", [390, 640])
def test_figures_fit_the_screen(email_html, width):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(email_html.as_uri())
            layout = page.evaluate(LAYOUT)
            (SHOTS / "email").mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "email" / f"{width}px.png"), full_page=False)
        finally:
            browser.close()
    boxes = layout["boxes"]
    assert boxes and len(boxes) % 4 == 0
    assert layout["scroll"] <= layout["width"], "the email is wider than the screen"
    line = min(b["label"] for b in boxes)
    for box in boxes:
        assert box["label"] < 1.5 * line and box["value"] < 1.5 * line, f"a figure wraps inside: {box}"
        assert box["right"] <= layout["width"]
    assert all(rects == 1 for rects in layout["badges"]), "the DEMO DATA badge splits"
    card = boxes[:4]
    rows = len({b["top"] for b in card})
    if width == 390:
        assert rows == 2 and card[0]["top"] == card[1]["top"] and card[2]["left"] == card[0]["left"]
    else:
        assert rows == 1
