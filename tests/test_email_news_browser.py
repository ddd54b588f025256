"""The email's news section and the public archive in Chromium: links present and clickable, nothing wider than a
phone at 390 px, every chart image loaded. Screenshots go to test-artifacts/browser/email-news/ and archive/."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re

import pytest
from django.core.management import call_command
from django.db import connections
from django.urls import reverse

from markets.selectors import ticker_snapshots
from markets.snapshots import NewsItem
from newsletters.compose import PersonalLinks, chart_cid, email_compose, issue_content_build
from newsletters.models import Analysis
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create
from tests.test_subscriber_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, sync_api
from tests.test_subscriber_browser import pytestmark as browser_marks

pytestmark = [*browser_marks]

SYMBOLS = ["AAPL", "MSFT", "NVDA"]
LINKS = PersonalLinks(view="https://w.example/v", preferences="https://w.example/p", unsubscribe="https://w.example/u")
LONG_TITLE = (
    "Chipmaker's record quarter beats every estimate as data-centre demand keeps climbing, "
    "https://example.com/an-unbroken-address-that-would-push-a-narrow-screen-sideways-if-it-could-not-wrap"
)

PAGE_FACTS = """() => ({
  width: document.documentElement.clientWidth,
  scroll: document.documentElement.scrollWidth,
  links: [...document.querySelectorAll('a.news-link')].map(a => {
    a.scrollIntoView({block: 'center'});
    const r = a.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + Math.min(r.width, 20) / 2, r.top + r.height / 2);
    return {href: a.href, text: a.textContent, right: r.right, clickable: a === hit || a.contains(hit)};
  }),
  items: [...document.querySelectorAll('.news-item')].map(p => p.getBoundingClientRect().right),
})"""
IMAGES = """(selector) => [...document.querySelectorAll(selector)].map(img => ({
  src: img.getAttribute('src'), alt: img.alt, complete: img.complete, natural: img.naturalWidth,
  right: img.getBoundingClientRect().right,
}))"""


def _news(symbol: str, day: dt.date) -> tuple[NewsItem, ...]:
    close = dt.datetime.combine(day, dt.time(21, 0), tzinfo=dt.UTC)
    titles = [LONG_TITLE if symbol == "NVDA" else f"{symbol} story one", f"{symbol} story two", "<b>Not bold</b>"]
    return tuple(
        NewsItem(
            title=title,
            publisher=f"Wire {n}",
            url=f"https://news.example/{symbol.lower()}/{n}" if n != 3 else "javascript:alert(1)",
            published_at=close - dt.timedelta(minutes=37 * n),
        )
        for n, title in enumerate(titles, start=1)
    )


@pytest.fixture
def chromium():
    """A browser for a page read from a file: no live server, so no database connections of its own to close."""
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def site_browser(chromium):
    """For the live server: as in the subscriber's journey, close the connections Playwright's loop opened."""
    yield chromium
    connections.close_all()


@pytest.fixture
def email_page(db, trading_day, tmp_path):
    """The email as sent, with news on every card, its charts put inline as data so the page loads them."""
    subscriber_create(email="ann@example.com", symbols=SYMBOLS, status=Subscriber.Status.ACTIVE)
    call_command("run_daily", "--date", trading_day.isoformat(), "--stage", "data")
    # The day's moves set so that NVDA leads and AAPL lags, whatever the demo prices did.
    moves = {"NVDA": 2.4, "MSFT": 0.3, "AAPL": -1.1}
    snapshots = {
        symbol: dataclasses.replace(snapshot, news=_news(symbol, trading_day), change_pct=moves[symbol])
        for symbol, snapshot in ticker_snapshots(SYMBOLS, trading_day, demo=True).items()
    }
    phrases = {"AAPL": "slips under its 50-day line", "MSFT": "holds its ground", "NVDA": "hits a record"}
    analyses = {
        s: Analysis(
            date=trading_day,
            model="m",
            prompt_version="v1",
            headline=f"{s} in the news",
            summary=f"{s} is covered by three stories [1] [2] [3].",
            stance="neutral",
            score=50,
            phrase=phrases[s],
        )
        for s in SYMBOLS
    }
    content = issue_content_build(day=trading_day, snapshots=snapshots, analyses=analyses)
    composed = email_compose(content=content, symbols=SYMBOLS, email="ann@example.com", links=LINKS)
    html = composed.html
    for symbol, png in content.charts.items():
        html = html.replace(f"cid:{chart_cid(symbol)}", "data:image/png;base64," + base64.b64encode(png).decode())
    assert "cid:" not in html
    page = tmp_path / "email.html"
    page.write_text(html)
    return page


@pytest.mark.parametrize("width", [1280, 390])
def test_the_news_section_reads_and_clicks_on_desktop_and_phone(email_page, chromium, width):
    page = chromium.new_page(viewport={"width": width, "height": 900})
    opened = []

    def story(route) -> None:
        opened.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<h1>the story</h1>")

    page.route("https://news.example/**", story)
    page.goto(email_page.as_uri())
    facts = page.evaluate(PAGE_FACTS)
    charts = page.evaluate(IMAGES, "img.chart")
    (SHOTS / "email-news").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "email-news" / f"{width}px.png"), full_page=True)

    # Two linked stories per ticker, under the cards in their order (the day's best move first); the third has a
    # javascript: address and is shown as plain text.
    assert [link["href"] for link in facts["links"]] == [
        f"https://news.example/{s.lower()}/{n}" for s in ("NVDA", "MSFT", "AAPL") for n in (1, 2)
    ]
    assert all(link["clickable"] for link in facts["links"]), facts["links"]
    assert page.locator(".news-item", has_text="<b>Not bold</b>").count() == 3
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator(".news-item").first.inner_text().startswith("[1] ")
    assert facts["scroll"] <= facts["width"], "the email is wider than the screen"
    assert max(facts["items"]) <= facts["width"]
    assert len(charts) == 3 and all(c["complete"] and c["natural"] == 600 for c in charts), charts
    assert all(c["right"] <= facts["width"] for c in charts)
    assert page.locator("h1").inner_text() == "NVDA hits a record, AAPL slips under its 50-day line"

    page.locator("a.news-link").nth(2).click()  # MSFT's first story
    page.wait_for_url("https://news.example/msft/1")
    assert opened == ["https://news.example/msft/1"]
    assert page.locator("h1").inner_text() == "the story"
    page.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_the_public_archive_index_and_day_page_with_their_charts(
    transactional_db, live_server, site_browser, outbox, trading_day, width
):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat())
    shots = SHOTS / "archive"
    shots.mkdir(parents=True, exist_ok=True)
    page = site_browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(10_000)

    page.goto(live_server.url + reverse("newsletters:archive"))
    page.screenshot(path=str(shots / f"index-{width}px.png"), full_page=True)
    day_link = page.get_by_role("link", name=trading_day.isoformat())
    sync_api.expect(day_link).to_be_visible()
    day_link.click()
    page.wait_for_url(re.compile(rf"/archive/{trading_day.isoformat()}/$"))
    sync_api.expect(page.locator("h1")).to_contain_text("What moved the most-followed stocks")

    charts = page.locator("img.archive-chart")
    assert charts.count() >= 10
    for i in range(charts.count()):
        charts.nth(i).scroll_into_view_if_needed()  # they load lazily, as a reader scrolls
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.archive-chart')].every(img => img.complete && img.naturalWidth > 0)"
    )
    images = page.evaluate(IMAGES, "img.archive-chart")
    page.screenshot(path=str(shots / f"day-{width}px.png"), full_page=True)
    assert all(img["natural"] == 600 for img in images)
    assert all(re.fullmatch(rf"/archive/{trading_day.isoformat()}/charts/[A-Z.]+\.png", img["src"]) for img in images)
    assert all("closing prices over six months" in img["alt"] for img in images)
    overflow = page.evaluate(
        """() => [document.documentElement, document.querySelector('.table-scroll')]
                 .map(box => box.scrollWidth - box.clientWidth)"""
    )
    assert overflow == [0, 0], "the archive page or its table is wider than the screen"
    page.close()
