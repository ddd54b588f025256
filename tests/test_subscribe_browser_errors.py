"""A mistyped symbol in Chromium: its chip is marked at once and named next to the field, an unknown prefix says
"no match", and the server's error sits under the field with the same style as the email field's.
Screenshots go to test-artifacts/browser/subscribe-errors/."""

from __future__ import annotations

from django.core.cache import cache

from tests.test_subscriber_browser import SHOTS, browser, sync_api  # noqa: F401 (browser is a fixture)
from tests.test_subscriber_browser import pytestmark as browser_marks

pytestmark = [*browser_marks]


def test_an_unknown_symbol_is_marked_at_once_and_named_by_the_field(transactional_db, live_server, browser):  # noqa: F811
    cache.clear()
    expect = sync_api.expect
    shots = SHOTS / "subscribe-errors"
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_context(viewport={"width": 900, "height": 900}).new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/")
    field = page.locator("#id_tickers")

    field.click()
    field.press_sequentially("qqqqq", delay=10)
    note = page.locator("#id_tickers-options .options-note")
    expect(note).to_have_text("No listed ticker matches \u201cqqqqq\u201d.")
    field.fill("")

    field.press_sequentially("AAPL, ZZZZQ,", delay=10)
    expect(page.locator("ul.chips li.chip-bad")).to_have_count(1)
    expect(page.locator("ul.chips li.chip-bad")).to_contain_text("ZZZZQ")
    expect(page.locator("ul.chips li:not(.chip-bad)")).to_contain_text("AAPL")
    live = page.locator("#id_tickers-live-error")
    expect(live).to_have_text("\u201cZZZZQ\u201d is not a listed US ticker.")
    expect(page.locator(".chips-input")).to_have_class("chips-input invalid")
    assert field.get_attribute("aria-invalid") == "true"
    assert "id_tickers-live-error" in field.get_attribute("aria-describedby")
    page.screenshot(path=str(shots / "01-marked.png"), full_page=True)

    # Submitted anyway: the server says the same, right under the field, and the field is marked like the email's.
    page.fill("#id_email", "grace@example.com")
    page.get_by_role("button", name="Subscribe").click()
    server_error = page.locator("#tickers-error")
    expect(server_error).to_contain_text('"ZZZZQ" is not a listed US ticker.')
    below_field = page.evaluate(
        "() => document.getElementById('tickers-error').getBoundingClientRect().top"
        " < document.getElementById('tickers-help').getBoundingClientRect().top"
    )
    assert below_field, "the error comes before the help text, next to the field"
    expect(page.locator("ul.chips li.chip-bad")).to_contain_text("ZZZZQ")
    expect(live).to_be_hidden()  # said once, by the server
    colours = page.evaluate(
        "() => [getComputedStyle(document.querySelector('.chips-input')).borderTopColor,"
        " getComputedStyle(document.getElementById('email-error') || document.getElementById('tickers-error')).color]"
    )
    assert colours[0] == colours[1], "the field's border is the error colour"
    page.screenshot(path=str(shots / "02-server-error.png"), full_page=True)

    # Removing the bad chip clears the marks.
    page.get_by_role("button", name="Remove ZZZZQ").click()
    expect(live).to_be_hidden()
    expect(server_error).to_be_hidden()
    expect(page.locator(".chips-input")).to_have_class("chips-input")
