"""The first start's backfill: the shared-table publish in blocks of tickers, the bars table analyzed after it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from markets import calendar, services
from markets.models import DailyBar, Ticker
from markets.providers.polygon import PolygonProvider
from markets.services import market_data_update, shared_data_publish
from markets.shared_tables.database import DatabaseSharedTables
from tests.fakes.polygon_server import polygon_configured

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 11, 20)
SYMBOLS = [f"T{i:03d}" for i in range(7)]


@pytest.fixture
def server(settings):
    with polygon_configured(settings) as fake:
        yield fake


@pytest.fixture
def provider(server):
    return PolygonProvider(sleep=lambda s: None)


class Recording:
    """Shared tables that keep each put_bars call's items."""

    def __init__(self) -> None:
        self.calls: list[list[dict]] = []

    def put_bars(self, items):
        self.calls.append(list(items))
        return len(self.calls[-1])


def backfill(server, provider, settings, sessions: int = 30):
    settings.MARKET_BACKFILL_DAYS = sessions
    server.add_random_walks(SYMBOLS, calendar.trading_days_ending(DAY, sessions + 5))
    return market_data_update(day=DAY, symbols=SYMBOLS, provider=provider, shared_tables=DatabaseSharedTables())


def test_whole_series_go_out_a_block_of_tickers_at_a_time_with_the_same_items(server, provider, settings, monkeypatch):
    backfill(server, provider, settings)
    whole, blocks = Recording(), Recording()
    assert shared_data_publish(symbols=SYMBOLS, day=DAY, full_series=set(SYMBOLS), shared_tables=whole) == 7 * 30
    monkeypatch.setattr(services, "PUBLISH_BLOCK_TICKERS", 3)
    assert shared_data_publish(symbols=SYMBOLS, day=DAY, full_series=set(SYMBOLS), shared_tables=blocks) == 7 * 30

    assert [len({item["ticker"] for item in call}) for call in blocks.calls] == [3, 3, 1]

    def without_as_of(calls):
        return sorted(({k: v for k, v in item.items() if k != "asOf"} for call in calls for item in call), key=str)

    assert without_as_of(blocks.calls) == without_as_of(whole.calls)


def test_a_failed_block_leaves_every_ticker_to_be_published_again(server, provider, settings, monkeypatch):
    settings.MARKET_BACKFILL_DAYS = 30
    server.add_random_walks(SYMBOLS, calendar.trading_days_ending(DAY, 35))
    monkeypatch.setattr(services, "PUBLISH_BLOCK_TICKERS", 3)

    class FailingSecondBlock(Recording):
        def put_bars(self, items):
            if len(self.calls) == 1:
                raise RuntimeError("throttled")
            return super().put_bars(items)

    result = market_data_update(day=DAY, symbols=SYMBOLS, provider=provider, shared_tables=FailingSecondBlock())
    assert "throttled" in result.publish_error
    # The first block was written, but none may count as published: the next update sends all whole series.
    assert not Ticker.objects.filter(published_through__isnull=False).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="ANALYZE is issued on PostgreSQL only")
def test_the_bars_table_is_analyzed_after_a_large_backfill(server, provider, settings, monkeypatch):
    monkeypatch.setattr(services, "ANALYZE_AFTER_ROWS", 7 * 30)
    with CaptureQueriesContext(connection) as queries:
        backfill(server, provider, settings)
    analyzed = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("ANALYZE")]
    assert analyzed == [f'ANALYZE "{DailyBar._meta.db_table}"']


@pytest.mark.skipif(connection.vendor != "postgresql", reason="ANALYZE is issued on PostgreSQL only")
def test_a_small_update_is_not_analyzed(server, provider, settings, monkeypatch):
    monkeypatch.setattr(services, "ANALYZE_AFTER_ROWS", 7 * 30 + 1)
    with CaptureQueriesContext(connection) as queries:
        backfill(server, provider, settings)
    assert not [q for q in queries.captured_queries if q["sql"].startswith("ANALYZE")]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="ANALYZE is issued on PostgreSQL only")
def test_a_failed_analyze_does_not_fail_the_update(server, provider, settings, monkeypatch):
    monkeypatch.setattr(services, "ANALYZE_AFTER_ROWS", 1)

    def broken_analyze(execute, sql, params, many, context):
        # A real error from PostgreSQL, which aborts the transaction it runs in.
        return execute("ANALYZE no_such_table" if sql.startswith("ANALYZE") else sql, params, many, context)

    with connection.execute_wrapper(broken_analyze):
        result = backfill(server, provider, settings)
    # The update went on reading and publishing in the same transaction after the failed statement.
    assert sorted(result.backfilled) == SYMBOLS and not result.publish_error
    assert DailyBar.objects.filter(ticker__symbol="T003").count() == 30
