"""The archive day page shows each listed ticker's chart, served publicly per session and symbol, nothing personal."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from django.core.management import call_command
from django.urls import reverse
from PIL import Image

from markets.models import Ticker
from markets.selectors import ticker_snapshots
from newsletters import archive_pages
from newsletters.models import Delivery
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create
from tests.test_archive_pages import _private_strings

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]

DAY = "2026-11-20"


@pytest.fixture
def archived(outbox):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", DAY)
    assert Delivery.objects.filter(status=Delivery.Status.SENT).exists()
    return DAY


def chart_url(symbol: str, date: str = DAY) -> str:
    return reverse("newsletters:archive-chart", kwargs={"date": date, "symbol": symbol})


def test_the_day_page_shows_a_chart_per_listed_ticker_with_alt_text(client, archived):
    html = client.get(reverse("newsletters:archive-day", kwargs={"date": archived})).content.decode()
    listed = [t.symbol for t, _ in archive_pages.most_followed_tickers()]
    snapshots = ticker_snapshots(listed, dt.date.fromisoformat(archived), demo=True)
    # The run fetched only the tickers active readers follow; the others are listed with "Data unavailable".
    with_data = [s for s in listed if snapshots[s].close is not None and not snapshots[s].stale]
    assert 10 <= len(with_data) < len(listed)
    images = re.findall(r'<img class="archive-chart" src="([^"]+)"[^>]*alt="([^"]+)"', html)
    assert [src for src, _ in images] == [chart_url(s) for s in with_data]
    for (_, alt), symbol in zip(images, with_data, strict=True):
        assert alt.startswith(f"{symbol} closing prices over six months to November 20, 2026")


def test_a_chart_is_a_png_that_caches_publicly_and_revalidates_by_etag(client, archived):
    response = client.get(chart_url("NVDA"))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (600, 160)
    assert "public" in response["Cache-Control"] and "max-age=86400" in response["Cache-Control"]
    assert "private" not in response["Cache-Control"] and "Set-Cookie" not in response
    etag = response["ETag"]
    again = client.get(chart_url("NVDA"), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again["ETag"] == etag and not again.content
    other = client.get(chart_url("AAPL"))
    assert other.status_code == 200 and other["ETag"] != etag and other.content != response.content


def test_a_chart_is_drawn_once_however_many_visitors_load_it(client, archived, monkeypatch):
    drawn = []
    real = archive_pages.chart_png
    monkeypatch.setattr(archive_pages, "chart_png", lambda s: drawn.append(s.symbol) or real(s))
    first = client.get(chart_url("MSFT")).content
    assert client.get(chart_url("MSFT")).content == first
    assert drawn == ["MSFT"]


@pytest.mark.parametrize(
    ("date", "symbol"),
    [
        ("2026-11-19", "NVDA"),  # a session with no archived issue
        ("2026-13-40", "NVDA"),
        ("yesterday", "NVDA"),
        (DAY, "ZZZZ"),  # no such ticker
        (DAY, "nvda"),
        (DAY, "../NVDA"),
    ],
)
def test_unknown_session_or_symbol_is_404(client, archived, date, symbol):
    assert client.get(f"/archive/{date}/charts/{symbol}.png").status_code == 404


def test_a_ticker_nobody_follows_has_no_public_chart(client, archived):
    # A ticker with the session's data that nobody follows any more: not part of the public page.
    unfollowed = "PLTR"
    former = subscriber_create(email="former@example.com", symbols=[unfollowed], status=Subscriber.Status.ACTIVE)
    call_command("run_daily", "--date", archived, "--stage", "data")
    former.tickers.clear()
    assert Ticker.objects.get(symbol=unfollowed).bars.filter(date=archived).exists()
    assert client.get(chart_url(unfollowed)).status_code == 404


def test_a_ticker_without_data_for_the_session_has_no_chart(client, archived):
    subscriber_create(email="late@example.com", symbols=["NEWCO"], status=Subscriber.Status.ACTIVE)
    assert "NEWCO" in [t.symbol for t, _ in archive_pages.most_followed_tickers()]
    html = client.get(reverse("newsletters:archive-day", kwargs={"date": archived})).content.decode()
    assert "NEWCO" in html and chart_url("NEWCO") not in html
    assert client.get(chart_url("NEWCO")).status_code == 404


def test_the_page_and_charts_carry_no_subscriber_data(client, archived):
    private = _private_strings()
    bodies = [client.get(reverse("newsletters:archive-day", kwargs={"date": archived})).content]
    bodies += [client.get(chart_url(s)).content for s in ("NVDA", "AAPL")]
    for body in bodies:
        for value in private:
            assert value.encode() not in body
