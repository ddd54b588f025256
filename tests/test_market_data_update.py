"""The market-data stage with the Polygon provider against the fake server: requests, backfill, quality, splits."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError

from markets import calendar
from markets.models import DailyBar, Ticker
from markets.providers.polygon import PolygonProvider
from markets.selectors import ticker_snapshots
from markets.services import backfill_plan, market_data_update
from markets.shared_tables.database import DatabaseSharedTables
from tests.fakes.polygon_server import Reply, polygon_configured

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 11, 20)  # a Friday
PREVIOUS = calendar.previous_trading_day(DAY)
NEXT = dt.date(2026, 11, 23)


@pytest.fixture
def server(settings):
    with polygon_configured(settings) as fake:
        yield fake


@pytest.fixture
def provider(server):
    return PolygonProvider(sleep=lambda s: None)


@pytest.fixture
def tables():
    return DatabaseSharedTables()


def sessions(count: int, end: dt.date = NEXT) -> list[dt.date]:
    return calendar.trading_days_ending(end, count)


def update(day, symbols, provider, tables):
    return market_data_update(day=day, symbols=symbols, provider=provider, shared_tables=tables)


def test_the_plan_takes_the_fewest_requests():
    assert backfill_plan(new=0, window=400, catch_up=1) == ("daily", 1)
    assert backfill_plan(new=3, window=400, catch_up=1) == ("by_ticker", 4)
    # First start with 2,000 followed tickers: 400 dates beat 2,000 tickers.
    assert backfill_plan(new=2000, window=400, catch_up=0) == ("by_date", 400)
    assert backfill_plan(new=400, window=400, catch_up=1) == ("by_date", 400)


def test_new_tickers_get_400_sessions_then_one_request_a_day(server, provider, tables):
    server.add_random_walks(["AAPL", "MSFT"], sessions(430))
    result = update(DAY, ["AAPL", "msft"], provider, tables)
    assert result.plan == "by_ticker" and sorted(result.backfilled) == ["AAPL", "MSFT"]
    assert server.count("/v2/aggs/ticker/") == 2 and server.count() == 2
    assert DailyBar.objects.filter(ticker__symbol="AAPL").count() == 400
    assert len(tables.get_series("AAPL")) == 400
    snapshot = ticker_snapshots(["AAPL", "MSFT"], DAY)["AAPL"]
    # Defined from the first email: SMA50, the 180-day drawdown and the 52-week range.
    assert None not in (snapshot.sma50, snapshot.drawdown180, snapshot.high52, snapshot.low52, snapshot.rsi14)
    assert not snapshot.stale and snapshot.source == "polygon" and not snapshot.demo

    before = server.count()
    result = update(NEXT, ["AAPL", "MSFT"], provider, tables)
    assert server.count() - before == 1  # the whole market in one request
    assert server.requests[-1].path.endswith(f"/{NEXT.isoformat()}")
    assert sorted(result.updated) == ["AAPL", "MSFT"] and result.plan == "daily"
    assert Ticker.objects.get(symbol="MSFT").last_bar_date == NEXT
    latest = tables.get_series("AAPL", start=NEXT.isoformat())
    assert len(latest) == 1 and latest[0]["rsi14"] > 0 and "sma50" in latest[0]


def test_many_new_tickers_are_backfilled_by_date(server, provider, tables, settings):
    settings.MARKET_BACKFILL_DAYS = 30
    symbols = [f"T{i:03d}" for i in range(40)]
    server.add_random_walks([*symbols, "NOISE"], sessions(40, DAY))
    result = update(DAY, symbols, provider, tables)
    assert result.plan == "by_date"
    assert server.count("/v2/aggs/grouped/") == 30 and server.count("/v2/aggs/ticker/") == 0
    assert sorted(result.backfilled) == symbols
    assert DailyBar.objects.filter(ticker__symbol="T007").count() == 30
    assert not Ticker.objects.filter(symbol="NOISE").exists()  # only followed tickers are kept
    assert len(tables.get_series("T039")) == 30


def test_a_few_sessions_missed_are_caught_up_with_grouped_requests(server, provider, tables):
    days = sessions(430)
    server.add_random_walks(["AAPL"], days)
    update(days[-5], ["AAPL"], provider, tables)
    before = server.count()
    result = update(NEXT, ["AAPL"], provider, tables)
    assert server.count() - before == 4 and server.count("/v2/aggs/ticker/") == 1
    assert result.updated == ["AAPL"]
    assert [i["date"] for i in tables.get_series("AAPL")][-4:] == [d.isoformat() for d in days[-4:]]


def test_no_results_for_the_day_is_no_data_and_the_ticker_is_stale(server, provider, tables):
    server.add_random_walks(["AAPL"], sessions(430))
    update(PREVIOUS, ["AAPL"], provider, tables)
    server.unpublished.add(DAY)
    result = update(DAY, ["AAPL"], provider, tables)
    assert result.stale == ["AAPL"] and not result.failed
    assert result.no_data == f"no data published yet for {DAY.isoformat()}"
    snapshot = ticker_snapshots(["AAPL"], DAY)["AAPL"]
    assert snapshot.stale and snapshot.as_of == PREVIOUS  # never yesterday shown as today


def test_a_closure_announced_by_the_provider_is_named(server, provider, tables):
    server.add_random_walks(["AAPL"], sessions(430))
    update(PREVIOUS, ["AAPL"], provider, tables)
    server.unpublished.add(DAY)
    server.holidays = [{"exchange": "NYSE", "name": "Day of Mourning", "date": DAY.isoformat(), "status": "closed"}]
    result = update(DAY, ["AAPL"], provider, tables)
    assert result.no_data == f"market closed on {DAY.isoformat()} (Day of Mourning)"


def test_a_failed_market_request_marks_tickers_failed_and_goes_on(server, provider, tables):
    server.add_random_walks(["AAPL", "MSFT"], sessions(430))
    update(PREVIOUS, ["AAPL", "MSFT"], provider, tables)
    server.script("/v2/aggs/grouped", Reply(500, {}), Reply(500, {}), Reply(500, {}))
    result = update(DAY, ["AAPL", "MSFT"], provider, tables)
    assert sorted(result.failed) == ["AAPL", "MSFT"] and "HTTP 500" in result.failed["AAPL"]
    assert not result.stale and not result.updated


def test_one_ticker_failing_its_backfill_does_not_stop_the_others(server, provider, tables):
    server.add_random_walks(["AAPL"], sessions(430))
    server.script("/v2/aggs/ticker/BAD/", Reply(500, {}), Reply(500, {}), Reply(500, {}))
    result = update(DAY, ["AAPL", "BAD", "GHOST"], provider, tables)
    assert result.backfilled == ["AAPL"]
    assert "history request failed" in result.failed["BAD"]
    assert result.failed["GHOST"] == "the provider returned no history"


def test_impossible_bars_are_rejected(server, provider, tables):
    server.add_random_walks(["AAPL", "MSFT"], sessions(430))
    update(PREVIOUS, ["AAPL", "MSFT"], provider, tables)
    server.set_bar("AAPL", DAY, 10, 9, 11, 10, 1000)  # high below low
    server.set_bar("MSFT", DAY, 10, 11, 9, -1, 1000)
    result = update(DAY, ["AAPL", "MSFT"], provider, tables)
    assert result.rejected == {f"AAPL {DAY}": "high below low", f"MSFT {DAY}": "non-positive price"}
    assert sorted(result.stale) == ["AAPL", "MSFT"]
    assert not DailyBar.objects.filter(date=DAY).exists()


def test_an_outlier_move_without_a_split_is_flagged(server, provider, tables):
    server.add_random_walks(["AAPL", "MSFT"], sessions(430))
    update(PREVIOUS, ["AAPL", "MSFT"], provider, tables)
    close = DailyBar.objects.get(ticker__symbol="AAPL", date=PREVIOUS).close
    server.set_bar("AAPL", DAY, close, close * 1.6, close, close * 1.55, 1e7)
    result = update(DAY, ["AAPL", "MSFT"], provider, tables)
    assert list(result.flagged) == ["AAPL"]
    assert "unusual move of +55.0%" in result.flagged["AAPL"]
    assert DailyBar.objects.get(ticker__symbol="AAPL", date=DAY).flagged == result.flagged["AAPL"]
    snapshots = ticker_snapshots(["AAPL", "MSFT"], DAY)
    assert snapshots["AAPL"].flagged.startswith("unusual move") and snapshots["MSFT"].flagged == ""
    assert server.count("/v3/reference/splits") == 1
    assert server.count("/v2/aggs/ticker/AAPL/") == 2  # the first backfill, then the check that nothing changed


def test_adjusted_history_that_no_longer_matches_is_fetched_again(server, provider, tables):
    # A split the reference data does not list (yet): the adjusted history itself shows it.
    server.add_random_walks(["NVDA"], sessions(430))
    update(PREVIOUS, ["NVDA"], provider, tables)
    stored = DailyBar.objects.get(ticker__symbol="NVDA", date=PREVIOUS).close
    server.apply_split("NVDA", DAY, 4)
    server.splits.clear()
    o, h, lo, c, v = server.bars["NVDA"][DAY]
    server.set_bar("NVDA", DAY, o / 4, h / 4, lo / 4, c / 4, v)
    result = update(DAY, ["NVDA"], provider, tables)
    assert result.refetched == {"NVDA": "adjusted history changed"} and not result.flagged
    assert DailyBar.objects.get(ticker__symbol="NVDA", date=PREVIOUS).close == pytest.approx(stored / 4, rel=1e-3)


def test_a_split_refetches_the_adjusted_history(server, provider, tables):
    server.add_random_walks(["NVDA"], sessions(430))
    update(PREVIOUS, ["NVDA"], provider, tables)
    stored = DailyBar.objects.get(ticker__symbol="NVDA", date=PREVIOUS).close
    server.apply_split("NVDA", DAY, 10)
    o, h, lo, c, v = server.bars["NVDA"][DAY]
    server.set_bar("NVDA", DAY, o / 10, h / 10, lo / 10, c / 10, v)
    before = server.count()
    result = update(DAY, ["NVDA"], provider, tables)
    assert result.refetched == {"NVDA": f"split on {DAY.isoformat()}"} and not result.flagged
    assert server.count() - before == 3  # the market, the split record, the history
    assert DailyBar.objects.get(ticker__symbol="NVDA", date=PREVIOUS).close == pytest.approx(stored / 10, rel=1e-3)
    shared = {i["date"]: i for i in tables.get_series("NVDA")}
    assert shared[PREVIOUS.isoformat()]["close"] == pytest.approx(stored / 10, rel=1e-3)
    assert abs(shared[DAY.isoformat()]["change_pct"]) < 20


def test_short_histories_leave_indicators_absent(server, provider, tables, settings):
    server.add_random_walks(["IPO"], sessions(30, DAY))
    update(DAY, ["IPO"], provider, tables)
    snapshot = ticker_snapshots(["IPO"], DAY)["IPO"]
    assert snapshot.rsi14 is not None and snapshot.close is not None
    assert snapshot.sma50 is None and snapshot.drawdown180 is None and snapshot.high52 is None
    latest = tables.get_series("IPO")[-1]
    assert "sma50" not in latest and "drawdown180" not in latest


def test_market_data_delete_removes_bars_and_recomputes(server, provider, tables, settings):
    settings.SHARED_TABLES_BACKEND = "markets.shared_tables.database.DatabaseSharedTables"
    days = sessions(430, DAY)
    server.add_random_walks(["AAPL"], days)
    update(DAY, ["AAPL"], provider, tables)
    gap = days[-10:-7]
    call_command("market_data", "delete", "--ticker", "aapl", "--from", gap[0].isoformat(), "--to", gap[-1].isoformat())
    assert not DailyBar.objects.filter(ticker__symbol="AAPL", date__in=gap).exists()
    shared = {i["date"]: i for i in tables.get_series("AAPL")}
    assert not set(d.isoformat() for d in gap) & set(shared)
    before, after = days[-11].isoformat(), days[-7].isoformat()
    # The bar after the gap is now compared with the one before it.
    expected = (shared[after]["close"] / shared[before]["close"] - 1) * 100
    assert shared[after]["change_pct"] == pytest.approx(expected, abs=1e-6)


def test_market_data_delete_refuses_bad_input(server, settings):
    Ticker.objects.create(symbol="AAPL")
    with pytest.raises(CommandError, match="before --from"):
        call_command("market_data", "delete", "--ticker", "AAPL", "--from", "2026-11-20", "--to", "2026-11-01")
    with pytest.raises(CommandError, match="no ticker ZZZ"):
        call_command("market_data", "delete", "--ticker", "ZZZ", "--from", "2026-11-01", "--to", "2026-11-20")
    with pytest.raises(CommandError, match="not a valid date"):
        call_command("market_data", "delete", "--ticker", "AAPL", "--from", "yesterday", "--to", "2026-11-20")


def test_market_data_backfill_refetches_one_ticker(server, capsys):
    server.add_random_walks(["AAPL"], sessions(430, DAY))
    call_command("market_data", "backfill", "--ticker", "AAPL", "--date", DAY.isoformat())
    assert DailyBar.objects.filter(ticker__symbol="AAPL").count() == 400
    assert "in 1 request(s)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="backfill of NOPE failed"):
        call_command("market_data", "backfill", "--ticker", "NOPE", "--date", DAY.isoformat())


def test_market_data_update_command(server, capsys):
    server.add_random_walks(["AAPL"], sessions(430, DAY))
    call_command("market_data", "update", "--ticker", "AAPL", "--date", DAY.isoformat())
    assert "1 backfilled" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["delete", "backfill", "update"])
def test_each_market_data_action_answers_help(action, capsys):
    with pytest.raises(SystemExit) as exit_info:
        call_command("market_data", action, "--help")
    assert exit_info.value.code == 0
    assert "--ticker" in capsys.readouterr().out


def test_create_shared_tables_with_the_database_backend_has_nothing_to_do(capsys):
    call_command("create_shared_tables")
    assert "Nothing to create" in capsys.readouterr().out


def test_closures_come_from_the_api_with_the_local_calendar_as_fallback(server, provider):
    from markets.selectors import market_closed_reason

    server.holidays = [{"exchange": "NYSE", "name": "Day of Mourning", "date": DAY.isoformat(), "status": "closed"}]
    assert market_closed_reason(DAY, provider) == f"{DAY.isoformat()} is a market holiday (Day of Mourning)"
    assert "Thanksgiving" in market_closed_reason(dt.date(2026, 11, 26), provider)
    assert market_closed_reason(NEXT, provider) is None
    cache.clear()
    server.script("/v1/marketstatus/upcoming", Reply(500, {}), Reply(500, {}), Reply(500, {}))
    assert market_closed_reason(DAY, provider) is None  # the API is down: the local calendar says open
    assert market_closed_reason(DAY, object()) is None


def test_the_daily_path_gives_the_numbers_of_the_full_series(server, provider, tables, monkeypatch):
    """Snapshots and the day's published bars come from the latest-session indicators: the same numbers as compute."""
    import numpy as np

    from markets import indicators
    from markets.selectors import load_history
    from markets.snapshots import CHART_SESSIONS, clean

    server.add_random_walks(["AAPL", "MSFT"], sessions(430))
    server.add_random_walks(["NVDA"], sessions(60))  # listed lately: no drawdown, no 52-week range yet
    update(DAY, ["AAPL", "MSFT", "NVDA"], provider, tables)
    whole_series = []
    compute = indicators.compute
    monkeypatch.setattr(indicators, "compute", lambda *args: whole_series.append(args) or compute(*args))
    update(NEXT, ["AAPL", "MSFT", "NVDA"], provider, tables)
    assert whole_series == []  # one new session per ticker: no whole series computed
    monkeypatch.undo()

    history = load_history(["AAPL", "MSFT", "NVDA"], NEXT)
    full = indicators.compute(history.closes, history.highs, history.lows)
    snapshots = ticker_snapshots(["AAPL", "MSFT", "NVDA"], NEXT)
    for i, symbol in enumerate(history.symbols):
        snapshot = snapshots[symbol]
        for name in ("rsi14", "sma50", "drawdown180", "change_pct", "high52", "low52"):
            assert getattr(snapshot, name) == pytest.approx(clean(getattr(full, name)[i, -1]), abs=2e-6), name
        chart = full.sma50[i, -CHART_SESSIONS:][~np.isnan(history.closes[i, -CHART_SESSIONS:])]
        assert snapshot.chart_sma50 == pytest.approx(tuple(clean(x, 4) for x in chart), abs=2e-4, nan_ok=True)
        published = tables.get_series(symbol, start=NEXT.isoformat())
        assert len(published) == 1
        for name in ("rsi14", "sma50", "drawdown180", "change_pct"):
            assert published[0].get(name) == pytest.approx(clean(getattr(full, name)[i, -1]), abs=2e-6), name
    assert snapshots["NVDA"].drawdown180 is None and snapshots["NVDA"].high52 is None
    assert snapshots["NVDA"].rsi14 is not None and snapshots["AAPL"].drawdown_rank is not None


def test_a_rerun_that_fetches_nothing_new_updates_no_ticker(trading_day):
    from markets.providers.demo import DemoProvider
    from markets.services import market_data_update

    first = market_data_update(day=trading_day, symbols=["AAPL", "MSFT"], provider=DemoProvider())
    again = market_data_update(day=trading_day, symbols=["AAPL", "MSFT"], provider=DemoProvider())
    assert sorted(first.updated + first.backfilled) == ["AAPL", "MSFT"]
    assert again.updated == [] and again.backfilled == [] and again.stale == [] and again.failed == {}


def test_a_daily_run_reads_the_history_once_and_computes_the_latest_indicators_once(trading_day, monkeypatch):
    import markets.indicators
    import markets.selectors
    import markets.services
    from newsletters.pipeline import daily_run
    from subscriptions.models import Subscriber
    from subscriptions.services import subscriber_create

    subscriber_create(email="ada@example.com", symbols=["AAPL", "MSFT"], status=Subscriber.Status.ACTIVE)
    daily_run(day=calendar.previous_trading_day(trading_day))  # histories in place: the next day is a normal one
    calls = {"load_history": 0, "compute_latest": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    history = counted("load_history", markets.selectors.load_history)
    monkeypatch.setattr(markets.selectors, "load_history", history)
    monkeypatch.setattr(markets.services, "load_history", history)
    monkeypatch.setattr(
        markets.indicators, "compute_latest", counted("compute_latest", markets.indicators.compute_latest)
    )
    run = daily_run(day=trading_day)
    assert run.status == "succeeded" and run.emails_sent == 1 and run.tickers_updated == 2
    assert calls == {"load_history": 1, "compute_latest": 1}
