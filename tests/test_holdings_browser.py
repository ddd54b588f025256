"""The shares box on each ticker chip, in a real browser (Debian's Chromium, headless): what is typed there is what
the form sends ("MSFT:2.5, NVDA:10"), and the preferences page gives the boxes back filled."""

from __future__ import annotations

from decimal import Decimal

from django.core.cache import cache

from subscriptions import links
from subscriptions.models import Subscriber
from subscriptions.selectors import holdings_of
from tests.test_subscriber_browser import browser, local, pick, pytestmark, sync_api  # noqa: F401 (fixture, marks)


def test_shares_typed_in_a_chip_are_sent_kept_and_shown_again(transactional_db, live_server, browser, outbox):  # noqa: F811
    cache.clear()
    expect = sync_api.expect
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/")
    page.fill("#id_email", "grace@example.com")
    pick(page, "micro", "MSFT")
    page.get_by_label("Shares of MSFT you hold (optional)").fill("2.5")
    expect(page.locator("#id_tickers-value")).to_have_value("MSFT:2.5")
    # Typed in one go: the symbol becomes a chip and the count goes in its box.
    page.locator("#id_tickers").fill("nvda:10")
    page.locator("#id_tickers").press("Enter")
    expect(page.get_by_label("Shares of NVDA you hold (optional)")).to_have_value("10")
    pick(page, "KO", "KO")
    expect(page.locator("#id_tickers-value")).to_have_value("MSFT:2.5, NVDA:10, KO")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("h1")).to_have_text("Check your inbox")
    subscriber = Subscriber.objects.get(email="grace@example.com")
    assert holdings_of(subscriber) == {"MSFT": Decimal("2.5"), "NVDA": Decimal(10)}

    page.goto(local(links.preferences_url(subscriber.pk), live_server))
    expect(page.get_by_label("Shares of NVDA you hold (optional)")).to_have_value("10")
    page.get_by_role("button", name="Remove MSFT").click()
    page.get_by_label("Shares of KO you hold (optional)").fill("40")
    page.get_by_label("Shares of NVDA you hold (optional)").fill("")
    expect(page.locator("#id_tickers-value")).to_have_value("KO:40, NVDA")
    page.get_by_role("button", name="Save tickers").click()
    expect(page.locator(".notice")).to_have_text("Your tickers are saved.")
    assert holdings_of(subscriber) == {"KO": Decimal(40)}

    # A bad count: the server's message stands next to the field, and the chips keep what was typed.
    page.get_by_label("Shares of KO you hold (optional)").fill("-4")
    page.get_by_role("button", name="Save tickers").click()
    expect(page.locator("#tickers-error")).to_contain_text("The shares of KO must be more than 0")
    expect(page.get_by_label("Shares of KO you hold (optional)")).to_have_value("-4")
    assert holdings_of(subscriber) == {"KO": Decimal(40)}
    context.close()
