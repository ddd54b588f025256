"""One contract for every market-data provider: the demo provider and Polygon (through `massive`, on loopback).

The daily job relies only on what the Protocol promises, so each implementation must keep the same promises:
one session's bars by symbol, a backfill range oldest first, unknown symbols reported as None, search capped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.core.cache import cache

from markets import calendar
from markets.providers.base import EVENT_KINDS, Bar, EventListing, MarketDataProvider
from markets.providers.demo import DemoProvider
from markets.providers.polygon import PolygonProvider
from tests.fakes.polygon_server import FakePolygon

SESSION = dt.date(2026, 11, 20)
SATURDAY = dt.date(2026, 11, 21)


@dataclass
class Case:
    provider: MarketDataProvider
    known: str  # a symbol with history
    name_fragment: str  # part of that symbol's company name, for search


@pytest.fixture(params=["demo", "polygon"])
def case(request) -> Iterator[Case]:
    cache.clear()
    if request.param == "demo":
        yield Case(DemoProvider(), known="AAPL", name_fragment="APPLE")
        return
    server = FakePolygon().start()
    sessions = calendar.trading_days_between(SESSION - dt.timedelta(days=120), SESSION)
    server.add_random_walks(["AAPL", "MSFT"], sessions)
    server.names["AAPL"] = "Apple Inc."
    server.add_dividend("AAPL", SESSION + dt.timedelta(days=5), SESSION + dt.timedelta(days=12), 0.26)
    server.splits.append({"ticker": "MSFT", "execution_date": "2026-11-30", "split_from": 1, "split_to": 2})

    start, end = calendar.news_window(SESSION)
    server.add_news(
        "Apple ships a new phone", ["AAPL"], end - dt.timedelta(hours=2), insights={"AAPL": ("positive", "")}
    )
    server.add_news("Microsoft and Apple in talks", ["MSFT", "AAPL"], end - dt.timedelta(hours=1))
    server.add_news("Exxon drills", ["XOM"], end - dt.timedelta(hours=3))
    server.add_news("Apple, the day before", ["AAPL"], start - dt.timedelta(hours=1))
    provider = PolygonProvider(
        api_key="test-key",
        base_url=server.url,
        requests_per_minute=600_000,
        connect_timeout=1.0,
        read_timeout=2.0,
        retries=1,
        sleep=lambda seconds: None,
    )
    yield Case(provider, known="AAPL", name_fragment="APPLE")
    server.stop()
    cache.clear()


def _valid(bar: Bar) -> bool:
    return 0 < bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high and bar.volume >= 0


def test_it_satisfies_the_protocol_and_says_where_its_data_comes_from(case):
    assert isinstance(case.provider, MarketDataProvider)
    assert isinstance(case.provider.source, str) and case.provider.source
    assert isinstance(case.provider.is_demo, bool)


def test_grouped_daily_gives_valid_bars_of_that_session_by_symbol(case):
    bars = case.provider.grouped_daily(SESSION)
    assert case.known in bars
    for symbol, bar in bars.items():
        assert bar.symbol == symbol and bar.date == SESSION and _valid(bar)


def test_grouped_daily_on_a_day_without_a_session_is_no_data(case):
    assert case.provider.grouped_daily(SATURDAY) == {}


def test_daily_bars_are_oldest_first_inside_the_range_and_end_with_the_grouped_bar(case):
    start = SESSION - dt.timedelta(days=60)
    bars = case.provider.daily_bars(case.known, start, SESSION)
    assert len(bars) >= 35  # about 41 sessions in 60 days
    dates = [b.date for b in bars]
    assert dates == sorted(set(dates)) and dates[0] >= start and dates[-1] == SESSION
    assert all(calendar.is_trading_day(d) and _valid(b) for d, b in zip(dates, bars, strict=True))
    grouped = case.provider.grouped_daily(SESSION)[case.known]
    assert bars[-1].close == pytest.approx(grouped.close)


def test_list_tickers_lists_every_symbol_once_in_order_with_its_name(case):
    listed = case.provider.list_tickers()
    symbols = [t.symbol for t in listed]
    assert len(symbols) == len(set(symbols)) and symbols == sorted(symbols)
    assert case.name_fragment in {t.symbol: t.name for t in listed}[case.known].upper()


def test_upcoming_events_of_a_window_come_soonest_first_and_every_kind_is_accounted_for(case):
    start, end = SESSION + dt.timedelta(days=1), SESSION + dt.timedelta(days=100)
    listing = case.provider.upcoming_events(start, end)
    assert isinstance(listing, EventListing)
    # Each kind was listed whole, skipped on purpose (a plan without it) or failed, and says so.
    assert listing.listed | set(listing.skipped) | set(listing.failed) == set(EVENT_KINDS)
    events = listing.events
    assert events == sorted(events, key=lambda e: (e.date, EVENT_KINDS.index(e.kind), e.symbol))
    assert case.known in {e.symbol for e in events}
    for event in events:
        assert start <= event.date <= end and event.kind in listing.listed and event.symbol == event.symbol.upper()
        assert (event.amount is None or event.amount > 0) if "dividend" in event.kind else event.amount is None
        assert bool(event.ratio) == (event.kind == "split")
    narrower = case.provider.upcoming_events(start, start + dt.timedelta(days=30)).events
    assert set(narrower) == {e for e in events if e.date <= start + dt.timedelta(days=30)}


def test_news_lists_the_window_s_articles_about_the_tickers_each_once_newest_first(case):
    start, end = calendar.news_window(SESSION)
    symbols = [case.known, "MSFT"]
    articles = case.provider.news(start=start, end=end, symbols=symbols)
    assert articles, "no news in a window that has some"
    assert len({a.url for a in articles}) == len(articles)
    assert [a.published_at for a in articles] == sorted((a.published_at for a in articles), reverse=True)
    for article in articles:
        assert start < article.published_at <= end and article.published_at.utcoffset() == dt.timedelta(0)
        assert article.title and article.url.startswith("https://") and set(article.tickers) & set(symbols)
        assert all(i.sentiment in {"", "positive", "neutral", "negative"} for i in article.insights)
    plan = case.provider.news_plan(start=start, end=end, symbols=symbols)
    assert plan.requests >= 0 and plan.seconds >= 0 and plan.how in {"listing", "by_ticker", "embedded"}


def test_news_of_no_ticker_is_nothing(case):
    start, end = calendar.news_window(SESSION)
    assert case.provider.news(start=start, end=end, symbols=[]) == []
    assert case.provider.news_plan(start=start, end=end, symbols=[]).requests == 0
