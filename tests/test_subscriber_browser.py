"""A person's whole journey in a real browser (Debian's Chromium, headless): subscribe with the ticker autocomplete,
confirm from the email, change tickers, unsubscribe. A screenshot of each page goes to test-artifacts/browser/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connections

from subscriptions import links
from subscriptions.models import Subscriber
from tests.test_subscribe_pages import link_in, outbox_messages

# Playwright's sync API runs an event loop in this thread; the ORM calls made here between page steps are ordinary
# blocking calls, which Django would otherwise refuse inside a running loop.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium phones home at start-up, which a closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: scripts/test installs it with apt-get when it can"
    ),
]


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        # The ORM calls made while Playwright's loop ran opened connections of their own (the loop gives the test
        # another context); close them, or PostgreSQL refuses to drop the test database at the end.
        connections.close_all()


@pytest.fixture
def shoot():
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    counter = iter(range(1, 100))

    def take(page, name: str) -> None:
        page.screenshot(path=str(SHOTS / f"{next(counter):02d}-{name}.png"), full_page=True)

    return take


def local(url: str, live_server) -> str:
    """An emailed link (built on SITE_URL) pointed at the test server."""
    return live_server.url + url.removeprefix(django_settings.SITE_URL)


def pick(page, typed: str, symbol: str) -> None:
    """Type into the ticker field and choose ``symbol`` from the suggestions, as a person does with the mouse."""
    field = page.locator("#id_tickers")
    field.click()
    field.press_sequentially(typed, delay=20)
    option = page.locator("#id_tickers-options li[role=option]", has_text=symbol).first
    option.wait_for(state="visible")
    option.click()
    sync_api.expect(page.locator("ul.chips li", has_text=symbol)).to_be_visible()


def test_subscribe_confirm_change_tickers_and_unsubscribe(transactional_db, live_server, browser, outbox, shoot):
    cache.clear()
    expect = sync_api.expect
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)

    # Subscribe: an address and two tickers found by name through the autocomplete.
    page.goto(f"{live_server.url}/")
    expect(page.locator("h1")).to_have_text("Your stocks, explained every morning")
    shoot(page, "subscribe")
    page.fill("#id_email", "Grace@Example.com")
    pick(page, "micro", "MSFT")
    pick(page, "nvid", "NVDA")
    expect(page.locator("#id_tickers-value")).to_have_value("MSFT, NVDA")
    shoot(page, "tickers-picked")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("h1")).to_have_text("Check your inbox")
    assert page.url == f"{live_server.url}/subscribe/check-your-inbox/"
    shoot(page, "check-inbox")
    subscriber = Subscriber.objects.get(email="grace@example.com")
    assert subscriber.status == Subscriber.Status.PENDING
    assert sorted(subscriber.tickers.values_list("symbol", flat=True)) == ["MSFT", "NVDA"]

    # Confirm from the email. Without script the page only shows the button (what a link scanner sees): click it.
    (message,) = outbox_messages(outbox)
    assert message["To"] == "grace@example.com"
    confirm_url = live_server.url + link_in(message, "confirm")
    no_script = browser.new_context(java_script_enabled=False)
    scanner = no_script.new_page()
    scanner.goto(confirm_url)
    expect(scanner.locator("h1")).to_have_text("Confirm your subscription")
    shoot(scanner, "confirm")
    assert Subscriber.objects.get(pk=subscriber.pk).status == Subscriber.Status.PENDING
    scanner.get_by_role("button", name="Confirm my subscription").click()
    expect(scanner.locator("h1")).to_have_text("You're subscribed")
    shoot(scanner, "confirmed")
    no_script.close()
    assert Subscriber.objects.get(pk=subscriber.pk).status == Subscriber.Status.ACTIVE

    # Preferences: remove one ticker chip and save.
    page.goto(local(links.preferences_url(subscriber.pk), live_server))
    expect(page.locator("ul.chips li")).to_have_count(2)
    shoot(page, "preferences")
    page.get_by_role("button", name="Remove NVDA").click()
    expect(page.locator("#id_tickers-value")).to_have_value("MSFT")
    page.get_by_role("button", name="Save tickers").click()
    expect(page.locator(".notice")).to_have_text("Your tickers are saved.")
    expect(page.locator("ul.chips li")).to_have_count(1)
    shoot(page, "preferences-saved")
    assert list(subscriber.tickers.values_list("symbol", flat=True)) == ["MSFT"]

    # Unsubscribe through the link every email carries.
    page.goto(local(links.unsubscribe_url(subscriber.pk), live_server))
    expect(page.locator("h1")).to_have_text("Unsubscribe grace@example.com?")
    shoot(page, "unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.locator("h1")).to_have_text("You are unsubscribed")
    shoot(page, "unsubscribed")
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.UNSUBSCRIBED and subscriber.unsubscribed_at is not None

    context.close()
    assert len(list(SHOTS.glob("*.png"))) == 9
