"""Only one run_daily at a time, and the demo provider's data is the same every time."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from markets.providers.demo import DemoProvider
from newsletters.locks import LockHeld, exclusive

pytestmark = pytest.mark.django_db


def test_a_second_run_exits_at_once_with_a_clear_message(trading_day, outbox):
    call_command("seed_demo", "--quiet")
    with exclusive("run_daily"):
        with pytest.raises(CommandError, match="already running"):
            call_command("run_daily", "--date", trading_day.isoformat())
    assert not outbox.exists() or not list(outbox.glob("*.eml"))
    # Released: the next run goes ahead.
    call_command("run_daily", "--date", trading_day.isoformat())
    assert len(list(outbox.glob("*.eml"))) == 5


def test_the_lock_is_exclusive_and_released():
    with exclusive("demo-lock"):
        with pytest.raises(LockHeld), exclusive("demo-lock"):
            pass
    with exclusive("demo-lock"):
        pass


def test_demo_prices_are_deterministic_and_history_never_changes():
    provider = DemoProvider()
    early = provider.daily_bars("AAPL", dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    later = provider.daily_bars("AAPL", dt.date(2026, 1, 1), dt.date(2026, 11, 20))
    assert early == later[: len(early)]
    assert len(provider.daily_bars("AAPL", dt.date(2024, 11, 20), dt.date(2026, 11, 20))) >= 500
    market = provider.grouped_daily(dt.date(2026, 11, 20))
    assert market["AAPL"] == later[-1]
    assert provider.grouped_daily(dt.date(2026, 11, 21)) == {}
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in later)
    assert provider.ticker_details("ZZZZ") is None
    assert provider.ticker_details("msft").name.startswith("Microsoft")
    # Symbols that start with the query come first, then names that contain it.
    assert [t.symbol for t in provider.search_tickers("micro")] == ["AMD", "MSFT"]
    assert next(t.symbol for t in provider.search_tickers("ms")) == "MSFT"
