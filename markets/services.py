"""Writes of market data: the daily update, backfills, data-quality flags, deletions, publishing to the shared tables."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from . import calendar, indicators
from .models import DailyBar, ListedTicker, NewsArticle, NewsFetch, NewsMention, Ticker, TickerEvent
from .news import Candidate, dedupe, news_item, relevance, title_key, top_news
from .providers import Article, Bar, MarketDataProvider, ProviderError, get_provider
from .quality import missing_share_reason, outlier_caution, outlier_sigmas, rejection_reason
from .selectors import History, events_window, load_history
from .shared_tables import SharedTables, get_shared_tables
from .snapshots import CHART_SESSIONS, NewsItem, clean

logger = logging.getLogger("walter.markets")

# A ticker more sessions behind than this is refetched like a new one rather than caught up date by date.
GROUPED_CATCH_UP_LIMIT = 5
# Stored and refetched adjusted closes further apart than this mean the history was adjusted since (a split).
ADJUSTMENT_TOLERANCE = 1e-3
# Tickers whose shared-table items are built and written at once: 100 whole series are 40,000 items.
PUBLISH_BLOCK_TICKERS = 100
# Bars stored by one update past which the bars table's planner statistics are refreshed (PostgreSQL).
ANALYZE_AFTER_ROWS = 20_000


@dataclass
class EventsRefresh:
    """What one refresh of the upcoming events did: a side output of the data stage."""

    start: dt.date
    end: dt.date
    stored: int = 0
    removed: int = 0
    requests: int = 0
    #: Kinds left out on purpose and why (the plan does not include earnings): worth knowing, not a failure.
    notes: list[str] = field(default_factory=list)
    #: Why some or all of the listing failed; the events stored before stay as they were.
    error: str = ""


@dataclass
class MarketUpdate:
    day: dt.date
    updated: list[str] = field(default_factory=list)
    backfilled: list[str] = field(default_factory=list)
    refetched: dict[str, str] = field(default_factory=dict)  # history fetched again, and why (a split)
    stale: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    flagged: dict[str, str] = field(default_factory=dict)
    no_data: str = ""  # why the market answer for ``day`` was empty, when it was
    closed: str = ""  # the market had no session on ``day`` after all (the provider says so): nothing to report
    market_error: str = ""  # the whole-market request for ``day`` failed after every retry
    plan: str = "daily"
    requests: int = 0
    bars_stored: int = 0
    shared_items_written: int = 0
    publish_error: str = ""  # the shared tables refused the publish; it is retried by the next update
    # The followed tickers' stored history up to ``day``, read once after the update, and its latest indicators:
    # the outlier check, the shared-table publish and the email's numbers all read these.
    history: History | None = None
    latest: indicators.LatestIndicators | None = None
    events: EventsRefresh | None = None  # the upcoming events' refresh, when it ran

    @property
    def unavailable(self) -> dict[str, str]:
        """Tickers whose data for ``day`` failed while the market answered, and why: never shown as stale."""
        day = self.day.isoformat()
        rejected = {key.split()[0]: f"bad data: {why}" for key, why in self.rejected.items() if key.endswith(day)}
        return {**rejected, **self.failed}

    def missing_reason(self, *, followed: int, max_failed_share: float) -> str:
        """Why the session's market data cannot be had (nobody may get an issue yet), or "" when it can.

        The whole-market request failed, the provider has not published the session yet, or more than
        ``max_failed_share`` of the ``followed`` tickers failed: each is retried by a later run, never reported
        to readers as "no new data".
        """
        if self.closed:
            return ""
        if self.market_error:
            # One line: it ends up in the command's exit message and the alert's subject.
            error = " ".join(self.market_error.split())
            return f"market data for {self.day.isoformat()} could not be had: {error}"
        if self.no_data:
            return f"{self.no_data}; retry later"
        return missing_share_reason(
            missing=len(self.unavailable), followed=followed, day=self.day, max_share=max_failed_share
        )


def ticker_ensure(*, symbol: str, name: str = "") -> Ticker:
    """The Ticker row for ``symbol``, created when new."""
    ticker, created = Ticker.objects.get_or_create(symbol=symbol.strip().upper(), defaults={"name": name})
    if not created and name and not ticker.name:
        ticker.name = name
        ticker.save(update_fields=["name", "updated_at"])
    return ticker


def backfill_plan(*, new: int, window: int, catch_up: int) -> tuple[str, int]:
    """How to fill ``new`` tickers' ``window`` sessions of history with the fewest requests, and how many.

    By ticker: one range request per new ticker, plus one grouped request per session the followed tickers lack
    (normally just today). By date: one grouped request per session of the window, which serves every ticker at
    once; it wins when there are more new tickers than sessions (2,000 new tickers, 400 sessions).
    """
    if not new:
        return "daily", catch_up
    by_ticker = new + catch_up
    if window < by_ticker:
        return "by_date", window
    return "by_ticker", by_ticker


def _store_bars(ticker_ids: dict[str, int], bars: Iterable[Bar], source: str, update: MarketUpdate) -> int:
    rows = []
    for bar in bars:
        reason = rejection_reason(bar)
        if reason:
            update.rejected[f"{bar.symbol} {bar.date}"] = reason
            logger.warning("rejected %s %s: %s", bar.symbol, bar.date, reason)
            continue
        rows.append(
            DailyBar(
                ticker_id=ticker_ids[bar.symbol],
                date=bar.date,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=bar.volume,
                vwap=bar.vwap,
                source=source,
            )
        )
    DailyBar.objects.bulk_create(
        rows,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["ticker", "date"],
        update_fields=["open", "high", "low", "close", "volume", "vwap", "source"],
    )
    update.bars_stored += len(rows)
    return len(rows)


def _bars_analyze(update: MarketUpdate) -> None:
    """Refresh the planner's statistics of the bars table after a large backfill, on PostgreSQL.

    Autovacuum gets to a freshly loaded table minutes later; until then the planner guesses, and the history read
    right after a first start once ran for 17 minutes. Statistics are an optimisation: a failure is logged only.
    """
    if update.bars_stored < ANALYZE_AFTER_ROWS or connection.vendor != "postgresql":
        return
    table = connection.ops.quote_name(DailyBar._meta.db_table)
    try:
        with transaction.atomic(), connection.cursor() as cursor:  # a savepoint: a failure leaves no broken transaction
            cursor.execute(f"ANALYZE {table}")
    except DatabaseError as exc:
        logger.warning("ANALYZE of %s after %d bars failed: %s", table, update.bars_stored, exc)
        return
    logger.info("analyzed %s after storing %d bars", table, update.bars_stored)


def _replace_history(ticker_id: int, symbol: str, bars: list[Bar], source: str, update: MarketUpdate) -> bool:
    """Store a freshly fetched adjusted history in place of what is stored; True when the two disagreed."""
    fetched = {b.date: b.close for b in bars}
    stored = dict(DailyBar.objects.filter(ticker_id=ticker_id, date__in=list(fetched)).values_list("date", "close"))
    adjusted = any(abs(fetched[d] / c - 1.0) > ADJUSTMENT_TOLERANCE for d, c in stored.items() if c)
    with transaction.atomic():
        if adjusted:
            # The old series is on another basis: none of it may survive next to the new one.
            DailyBar.objects.filter(ticker_id=ticker_id, date__gte=bars[0].date, date__lte=bars[-1].date).delete()
        _store_bars({symbol: ticker_id}, bars, source, update)
    return adjusted


def _fetch_history(
    provider: MarketDataProvider, symbol: str, ticker_id: int, window: list[dt.date], update: MarketUpdate
) -> bool | None:
    """One ticker's whole window by a range request; None when it failed (recorded), else whether it was adjusted."""
    try:
        update.requests += 1
        bars = provider.daily_bars(symbol, window[0], window[-1])
    except ProviderError as exc:
        update.failed[symbol] = f"history request failed: {exc}"
        logger.warning("history of %s failed: %s", symbol, exc)
        return None
    if not bars:
        update.failed[symbol] = "the provider returned no history"
        return None
    return _replace_history(ticker_id, symbol, bars, provider.source, update)


def _no_data_reason(provider: MarketDataProvider, day: dt.date) -> tuple[bool, str]:
    """Why the whole-market answer for ``day`` was empty, and whether it is a closure (else: not published yet)."""
    market_holidays = getattr(provider, "market_holidays", None)
    if market_holidays is not None:
        try:
            # The market answered "no data": a closure announced since the list was last fetched must count.
            name = market_holidays(fresh=True).get(day)
        except ProviderError:
            name = None
        if name:
            return True, f"market closed on {day.isoformat()} ({name})"
    reason = calendar.closed_reason(day)
    if reason:
        return True, reason
    return False, f"no data published yet for {day.isoformat()}"


def market_data_update(
    *,
    day: dt.date,
    symbols: Sequence[str],
    provider: MarketDataProvider | None = None,
    shared_tables: SharedTables | None = None,
    publish: bool = True,
    events: bool = False,
) -> MarketUpdate:
    """Bring every followed ticker's history up to session ``day`` and publish it to the shared tables.

    The daily update is one grouped request for the whole market. Tickers with no history get
    ``MARKET_BACKFILL_DAYS`` sessions, by ticker or by date, whichever takes fewer requests. A ticker that cannot
    be fetched is recorded as failed and the others go on; one with no bar for ``day`` is stale, never shown with
    an older day's numbers as today's. Publishing is a side output: when the shared tables fail, the failure is
    recorded and what was not published goes out with the next update. ``publish=False`` (a dry run) writes
    nothing to them. With ``events`` (the daily job, unless a dry run), the coming sessions' events are refreshed
    last, after the prices they must never delay, and only when the session's market data was had.
    """
    provider = provider or get_provider()
    shared_tables = shared_tables or get_shared_tables()
    update = MarketUpdate(day=day)
    symbols = sorted({s.strip().upper() for s in symbols if s.strip()})
    tickers = {t.symbol: t for t in Ticker.objects.filter(symbol__in=symbols)}
    for symbol in symbols:
        if symbol not in tickers:
            tickers[symbol] = ticker_ensure(symbol=symbol)
    ticker_ids = {s: t.pk for s, t in tickers.items()}
    last_dates: dict[str, dt.date] = dict(
        DailyBar.objects.filter(ticker_id__in=ticker_ids.values(), date__lte=day)
        .values("ticker__symbol")
        .annotate(last=Max("date"))
        .values_list("ticker__symbol", "last")
    )

    window = calendar.trading_days_ending(day, max(settings.MARKET_BACKFILL_DAYS, GROUPED_CATCH_UP_LIMIT + 1))
    catch_up_from = window[-GROUPED_CATCH_UP_LIMIT - 1]
    new = [s for s in symbols if last_dates.get(s) is None or last_dates[s] < catch_up_from]
    current = [s for s in symbols if s not in new]
    oldest_current = min((last_dates[s] for s in current), default=day)
    catch_up_dates = [d for d in window if d > oldest_current] if current else []
    update.plan, _ = backfill_plan(new=len(new), window=len(window), catch_up=len(catch_up_dates))

    if update.plan == "by_ticker":
        for symbol in new:
            adjusted = _fetch_history(provider, symbol, ticker_ids[symbol], window, update)
            if adjusted is not None:
                update.backfilled.append(symbol)
        grouped_dates, grouped_symbols = catch_up_dates, current
    elif update.plan == "by_date":
        grouped_dates, grouped_symbols = window, symbols
    else:
        grouped_dates, grouped_symbols = catch_up_dates, current

    filled: set[str] = set()
    for session in grouped_dates:
        try:
            update.requests += 1
            market = provider.grouped_daily(session)
        except ProviderError as exc:
            logger.warning("grouped daily %s failed: %s", session, exc)
            if session == day:
                update.market_error = str(exc)
                for symbol in grouped_symbols:
                    update.failed.setdefault(symbol, f"market data for {session} failed: {exc}")
            continue
        if not market:
            # No results is "no data" (a closure, or not published yet), never an empty market.
            if session == day:
                closed, update.no_data = _no_data_reason(provider, day)
                update.closed = update.no_data if closed else ""
                logger.warning("no market data for %s: %s", day, update.no_data)
            continue
        wanted = [market[s] for s in grouped_symbols if s in market and (s in new or last_dates[s] < session)]
        _store_bars(ticker_ids, wanted, provider.source, update)
        filled.update(b.symbol for b in wanted)
    if update.plan == "by_date":
        update.backfilled = [s for s in new if s in filled]
        for symbol in new:
            if symbol not in filled:
                update.failed.setdefault(symbol, "no history in the market answers")

    _bars_analyze(update)
    history = load_history(symbols, day)
    _check_latest_moves(provider, day, ticker_ids, last_dates, window, update, history)
    if update.refetched:  # a split rewrote those histories: read them again
        history = load_history(symbols, day)
    update.history = history
    update.latest = indicators.compute_latest(
        history.closes, history.highs, history.lows, series_sessions=CHART_SESSIONS
    )

    stored_today = set(
        DailyBar.objects.filter(ticker_id__in=ticker_ids.values(), date=day).values_list("ticker__symbol", flat=True)
    )
    written = filled | set(update.refetched)  # a rerun finds today's bars stored already: those are not updates
    for symbol in symbols:
        if symbol in stored_today:
            if symbol in written and symbol not in update.backfilled:
                update.updated.append(symbol)
        elif symbol not in update.failed:
            update.stale.append(symbol)
    _last_bar_dates_refresh(ticker_ids.values())

    full_series = set(update.backfilled) | set(update.refetched)
    if full_series:
        # Their whole series is new: until it is published, the shared table must get all of it, not a tail.
        Ticker.objects.filter(symbol__in=full_series).update(published_through=None)
    if publish:
        shared_data_publish_pending(symbols=symbols, day=day, shared_tables=shared_tables, update=update)
    if events and not (update.market_error or update.no_data or update.closed):
        update.events = ticker_events_refresh(day=day, symbols=symbols, provider=provider)
    return update


def ticker_events_refresh(
    *, day: dt.date, symbols: Sequence[str], provider: MarketDataProvider | None = None
) -> EventsRefresh:
    """Replace ``symbols``' stored events in the window after session ``day`` with what the provider lists now.

    The provider lists the whole market's events by date window, so the requests do not grow with the followed
    tickers. Only kinds listed whole are replaced: a kind skipped or failed keeps what was stored. A side output:
    a failure is recorded on the result, never raised.
    """
    provider = provider or get_provider()
    start, end = events_window(day)
    refresh = EventsRefresh(start=start, end=end)
    try:
        listing = provider.upcoming_events(start, end)
    except Exception as exc:  # a side output: recorded, retried by the next run, never stops email
        refresh.error = f"upcoming events not refreshed: {type(exc).__name__}: {exc}"
        logger.warning("%s", refresh.error)
        return refresh
    refresh.requests = listing.requests
    refresh.notes = [listing.skipped[kind] for kind in sorted(listing.skipped)]
    if listing.failed:
        refresh.error = "; ".join(why for _, why in sorted(listing.failed.items()))
        logger.warning("upcoming events partly failed: %s", refresh.error)
    wanted = {s.strip().upper() for s in symbols}
    now = timezone.now()
    # One row per key, even if the provider lists an event twice.
    rows = {
        (e.symbol, e.kind, e.date): TickerEvent(
            symbol=e.symbol,
            kind=e.kind,
            date=e.date,
            amount=e.amount,
            ratio=e.ratio,
            source=provider.source,
            refreshed_at=now,
        )
        for e in listing.events
        if e.symbol in wanted and e.kind in listing.listed and start <= e.date <= end
    }
    stored = TickerEvent.objects.filter(
        symbol__in=sorted(wanted), kind__in=sorted(listing.listed), date__gte=start, date__lte=end
    )
    with transaction.atomic():
        before = set(stored.values_list("symbol", "kind", "date"))
        stored.delete()
        TickerEvent.objects.bulk_create(rows.values(), batch_size=1000)
    refresh.stored = len(rows)
    refresh.removed = len(before - set(rows))
    logger.info(
        "upcoming events %s..%s: %d stored, %d removed, %d requests",
        start,
        end,
        refresh.stored,
        refresh.removed,
        refresh.requests,
    )
    return refresh


def shared_data_publish_pending(
    *, symbols: Sequence[str], day: dt.date, shared_tables: SharedTables, update: MarketUpdate
) -> None:
    """Publish every stored session of ``symbols`` up to ``day`` not yet in the shared table (``published_through``).

    A side output: whatever the shared tables answer, the failure is recorded on ``update`` and email goes on;
    the ticker's ``published_through`` stays where it was, so the next update publishes the same sessions again.
    """
    rows = Ticker.objects.filter(symbol__in=symbols).values_list("pk", "symbol", "published_through")
    published = {symbol: (pk, through) for pk, symbol, through in rows}
    latest: dict[str, dt.date] = dict(
        DailyBar.objects.filter(ticker_id__in=[pk for pk, _ in published.values()], date__lte=day)
        .values("ticker__symbol")
        .annotate(last=Max("date"))
        .values_list("ticker__symbol", "last")
    )
    pending = sorted(s for s, last in latest.items() if published[s][1] is None or published[s][1] < last)
    if not pending:
        return
    full_series = {s for s in pending if published[s][1] is None}
    since = {s: published[s][1] for s in pending if s not in full_series}
    try:
        update.shared_items_written = shared_data_publish(
            symbols=pending,
            day=day,
            full_series=full_series,
            shared_tables=shared_tables,
            since=since,
            history=update.history,
            latest=update.latest,
        )
    except Exception as exc:  # any failure of a side output: recorded, retried next time, never stops email
        update.publish_error = f"{len(pending)} tickers not published to the shared table: {type(exc).__name__}: {exc}"
        logger.warning("%s", update.publish_error)
        return
    by_date: dict[dt.date, list[int]] = {}
    for symbol in pending:
        by_date.setdefault(latest[symbol], []).append(published[symbol][0])
    for through, ids in by_date.items():
        Ticker.objects.filter(pk__in=ids).update(published_through=through)


def _check_latest_moves(
    provider: MarketDataProvider,
    day: dt.date,
    ticker_ids: dict[str, int],
    last_dates: dict[str, dt.date],
    window: list[dt.date],
    update: MarketUpdate,
    history: History,
) -> None:
    """An outlier move on ``day``: refetch the history when it is a split, else flag it for staff and the email."""
    checked = [s for s in ticker_ids if s not in update.backfilled and s not in update.failed]
    if not checked:
        return
    lookback = settings.OUTLIER_LOOKBACK
    rows = [history.symbols.index(s) for s in sorted(checked)]
    today = np.array([history.dates[i, -1] == day for i in rows])
    sigmas = outlier_sigmas(history.closes[rows, -(lookback + 2) :], lookback=lookback)
    unusual = [(rows[k], sigmas[k]) for k in np.flatnonzero(today & (sigmas > settings.OUTLIER_SIGMA))]
    splits_of = getattr(provider, "splits", None)
    for i, sigma in unusual:
        symbol = history.symbols[i]
        previous = history.dates[i, -2] or window[0]
        split_dates: list[dt.date] = []
        if splits_of is not None:
            try:
                update.requests += 1
                split_dates = [d for d in splits_of(symbol, previous) if previous < d <= day]
            except ProviderError as exc:
                logger.warning("split check of %s failed: %s", symbol, exc)
        # With or without a split record, fetch the adjusted history again: when it no longer matches what is
        # stored, the move is an adjustment (a split the reference data does not list yet), not a market move.
        attempt = MarketUpdate(day=day)
        adjusted = _fetch_history(provider, symbol, ticker_ids[symbol], window, attempt)
        update.requests += attempt.requests
        update.rejected.update(attempt.rejected)
        if adjusted is not None and (split_dates or adjusted):
            reason = f"split on {split_dates[-1].isoformat()}" if split_dates else "adjusted history changed"
            update.refetched[symbol] = reason
            logger.info("%s: %s, history fetched again", symbol, reason)
            continue
        if adjusted is None:
            logger.warning("could not verify the move of %s: %s", symbol, attempt.failed.get(symbol))
        change = (history.closes[i, -1] / history.closes[i, -2] - 1.0) * 100.0
        caution = outlier_caution(float(change), float(sigma))
        DailyBar.objects.filter(ticker_id=ticker_ids[symbol], date=day).update(flagged=caution)
        history.flags[i] = caution
        update.flagged[symbol] = caution
        logger.warning("%s on %s flagged: %s", symbol, day, caution)


def _last_bar_dates_refresh(ticker_ids: Iterable[int]) -> None:
    latest = dict(
        DailyBar.objects.filter(ticker_id__in=list(ticker_ids))
        .values("ticker_id")
        .annotate(last=Max("date"))
        .values_list("ticker_id", "last")
    )
    changed = [t for t in Ticker.objects.filter(pk__in=list(ticker_ids)) if t.last_bar_date != latest.get(t.pk)]
    for ticker in changed:
        ticker.last_bar_date = latest.get(ticker.pk)
    Ticker.objects.bulk_update(changed, ["last_bar_date"], batch_size=500)


def shared_data_publish(
    *,
    symbols: Sequence[str],
    day: dt.date,
    full_series: set[str],
    shared_tables: SharedTables,
    since: dict[str, dt.date] | None = None,
    history: History | None = None,
    latest: indicators.LatestIndicators | None = None,
) -> int:
    """Write bars with their indicators to `ticker-data`.

    The whole stored series for ``full_series``; for the others the sessions after ``since[symbol]`` (the ones
    just filled in), else only ``day``. ``history`` (and its ``latest`` indicators), when the caller has read it
    already, must cover ``symbols`` up to ``day``; rows of other tickers in it are left alone.
    """
    if not symbols:
        return 0
    since = since or {}
    wanted = set(symbols)
    if history is None or not wanted <= set(history.symbols):
        history, latest = load_history(symbols, day), None
    as_of = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    last = history.closes.shape[1] - 1
    columns_of: dict[int, Iterable[int]] = {}
    for i, symbol in enumerate(history.symbols):
        if symbol not in wanted:
            columns_of[i] = []
        elif symbol in full_series:
            columns_of[i] = range(history.closes.shape[1])
        elif symbol in since:
            # The sessions just filled in sit at the end: walk back from the latest.
            j = last
            while j >= 0 and history.dates[i, j] is not None and history.dates[i, j] > since[symbol]:
                j -= 1
            columns_of[i] = range(j + 1, last + 1)
        else:
            columns_of[i] = [last] if history.dates[i, last] == day else []
    names = ("rsi14", "sma50", "drawdown180", "change_pct")
    if all(j == last for columns in columns_of.values() for j in columns):
        # A normal day publishes one session per ticker: the latest values are all it needs, at a fraction of the
        # cost of whole series. Seen as one-column matrices, they are read like compute's.
        latest = latest or indicators.compute_latest(history.closes, history.highs, history.lows)
        values = {name: getattr(latest, name)[:, None] for name in names}
        first_column = last
    else:
        result = indicators.compute(history.closes, history.highs, history.lows)
        values = {name: getattr(result, name) for name in names}
        first_column = 0
    rows = [i for i in range(len(history.symbols)) if columns_of[i]]
    written = 0
    # A first start publishes whole series of thousands of tickers: as dicts (and the backend's own copies) at
    # once they took over 1 GB, so they go out a block of tickers at a time. The caller marks a ticker published
    # only after every block was written: the blocks written before a failure are written again next time.
    for start in range(0, len(rows), PUBLISH_BLOCK_TICKERS):
        items = _shared_items(
            history, rows[start : start + PUBLISH_BLOCK_TICKERS], columns_of, values, first_column, as_of
        )
        written += shared_tables.put_bars(items)
    return written


def _shared_items(
    history: History,
    rows: Sequence[int],
    columns_of: dict[int, Iterable[int]],
    values: dict[str, np.ndarray],
    first_column: int,
    as_of: str,
) -> list[dict]:
    items = []
    for i in rows:
        symbol = history.symbols[i]
        for j in columns_of[i]:
            if np.isnan(history.closes[i, j]):
                continue
            k = j - first_column
            items.append(
                {
                    "ticker": symbol,
                    "date": history.dates[i, j].isoformat(),
                    "open": clean(history.opens[i, j]),
                    "high": clean(history.highs[i, j]),
                    "low": clean(history.lows[i, j]),
                    "close": clean(history.closes[i, j]),
                    "volume": clean(history.volumes[i, j]),
                    "vwap": clean(history.vwaps[i, j]) if history.vwaps is not None else None,
                    "adjusted": True,
                    "rsi14": clean(values["rsi14"][i, k]),
                    "sma50": clean(values["sma50"][i, k]),
                    "drawdown180": clean(values["drawdown180"][i, k]),
                    "change_pct": clean(values["change_pct"][i, k]),
                    "source": history.sources[i],
                    "asOf": as_of,
                }
            )
    return items


def ticker_history_refetch(
    *,
    symbol: str,
    day: dt.date | None = None,
    provider: MarketDataProvider | None = None,
    shared_tables: SharedTables | None = None,
) -> MarketUpdate:
    """Fetch one ticker's whole window again (staff asked, or its data was bad) and republish its series."""
    provider = provider or get_provider()
    shared_tables = shared_tables or get_shared_tables()
    day = day or calendar.latest_completed_session()
    ticker = ticker_ensure(symbol=symbol)
    update = MarketUpdate(day=day, plan="by_ticker")
    window = calendar.trading_days_ending(day, settings.MARKET_BACKFILL_DAYS)
    adjusted = _fetch_history(provider, ticker.symbol, ticker.pk, window, update)
    if adjusted is None:
        return update
    update.backfilled.append(ticker.symbol)
    if adjusted:
        update.refetched[ticker.symbol] = "stored history no longer matched the adjusted series"
    _last_bar_dates_refresh([ticker.pk])
    update.shared_items_written = ticker_series_republish(symbol=ticker.symbol, shared_tables=shared_tables)
    return update


def ticker_series_republish(*, symbol: str, shared_tables: SharedTables | None = None) -> int:
    """Recompute a ticker's indicators over its stored series and write the whole series to the shared table."""
    shared_tables = shared_tables or get_shared_tables()
    latest = DailyBar.objects.filter(ticker__symbol=symbol).aggregate(last=Max("date"))["last"]
    # Should this publish fail, the daily update publishes the whole series again.
    Ticker.objects.filter(symbol=symbol).update(published_through=None)
    if latest is None:
        return 0
    written = shared_data_publish(symbols=[symbol], day=latest, full_series={symbol}, shared_tables=shared_tables)
    Ticker.objects.filter(symbol=symbol).update(published_through=latest)
    return written


@dataclass
class Deletion:
    bars: int
    shared_items: int
    republished: int


def daily_bars_delete(
    *,
    symbol: str,
    start: dt.date,
    end: dt.date,
    shared_tables: SharedTables | None = None,
    republish: bool = True,
) -> Deletion:
    """Delete one ticker's bars from ``start`` to ``end`` here and in the shared table, then recompute.

    Later sessions' indicators were computed from the deleted bars, so the ticker's series is republished.
    """
    shared_tables = shared_tables or get_shared_tables()
    symbol = symbol.strip().upper()
    with transaction.atomic():
        bars, _ = DailyBar.objects.filter(ticker__symbol=symbol, date__gte=start, date__lte=end).delete()
    shared_items = shared_tables.delete_bars(symbol, start.isoformat(), end.isoformat())
    ticker_ids = list(Ticker.objects.filter(symbol=symbol).values_list("pk", flat=True))
    _last_bar_dates_refresh(ticker_ids)
    republished = ticker_series_republish(symbol=symbol, shared_tables=shared_tables) if republish else 0
    logger.info("deleted %d bars of %s from %s to %s", bars, symbol, start, end)
    return Deletion(bars=bars, shared_items=shared_items, republished=republished)


# A refresh that lists less than this share of what the same provider listed before is refused: a provider
# answering with part of the list must not delete the listings visitors search (yesterday's list stays).
DIRECTORY_SHRINK_LIMIT = 0.5


@dataclass
class DirectoryRefresh:
    listed: int = 0
    removed: int = 0
    requests: int = 0
    skipped: str = ""  # why nothing was fetched


def ticker_directory_refresh(*, provider: MarketDataProvider | None = None, force: bool = False) -> DirectoryRefresh:
    """Replace the ticker directory with the provider's list of every listed US stock, in one transaction.

    Once a day is enough (listings change slowly; a refresh costs about a dozen requests of the daily budget), so
    a directory this provider already listed today is kept unless ``force``. Raises ProviderError when the list
    cannot be had whole; the directory is then left as it was.
    """
    provider = provider or get_provider()
    now = timezone.now()
    start_of_day = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if not force and ListedTicker.objects.filter(source=provider.source, refreshed_at__gte=start_of_day).exists():
        return DirectoryRefresh(
            listed=ListedTicker.objects.count(), skipped="the ticker directory was already refreshed today"
        )
    before = getattr(provider, "requests", 0)
    try:
        listed = {t.symbol.strip().upper(): t.name[:200] for t in provider.list_tickers()}
    finally:
        requests = getattr(provider, "requests", 0) - before
    # Longer symbols cannot be stored or typed into the form; Polygon's are far shorter.
    rows = [
        ListedTicker(symbol=symbol, name=name, source=provider.source, refreshed_at=now)
        for symbol, name in sorted(listed.items())
        if 0 < len(symbol) <= 16
    ]
    previous = ListedTicker.objects.filter(source=provider.source).count()
    if len(rows) < previous * DIRECTORY_SHRINK_LIMIT:
        raise ProviderError(
            f"the provider listed {len(rows)} tickers where it listed {previous} before; the directory was kept"
        )
    with transaction.atomic():
        ListedTicker.objects.bulk_create(
            rows,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["symbol"],
            update_fields=["name", "source", "refreshed_at"],
        )
        removed, _ = ListedTicker.objects.filter(refreshed_at__lt=now).delete()
        # Followed tickers are created from what subscribers typed, without a name: the email shows the listed one.
        unnamed = [t for t in Ticker.objects.filter(name="") if listed.get(t.symbol)]
        for ticker in unnamed:
            ticker.name = listed[ticker.symbol]
        Ticker.objects.bulk_update(unnamed, ["name"], batch_size=500)
    logger.info("ticker directory: %d listed, %d removed, %d requests", len(rows), removed, requests)
    return DirectoryRefresh(listed=len(rows), removed=removed, requests=requests)


# Near-twin titles are looked for among the articles stored this long before a window opens (syndication lags).
NEWS_TWIN_LOOKBACK = dt.timedelta(days=1)


@dataclass
class NewsUpdate:
    day: dt.date
    how: str = ""  # listing, by_ticker or embedded
    requests: int = 0
    articles: int = 0  # about followed tickers, after dedupe
    skipped: str = ""  # why nothing was fetched: a note, never a failure
    error: str = ""  # the provider failed: the issue goes out without news
    #: A dry run's choice of top articles per ticker, kept nowhere (None when the stored news is to be read).
    chosen: dict[str, tuple[NewsItem, ...]] | None = None


def session_news_update(
    *, day: dt.date, symbols: Sequence[str], provider: MarketDataProvider | None = None, store: bool = True
) -> NewsUpdate:
    """Fetch and store the news of session ``day`` about the followed tickers, after the prices.

    News is a side output: a provider failure is recorded and the issue goes out without it, and when the request
    budget cannot fit it (``MARKET_NEWS_MAX_SECONDS`` at the provider's pace: the free plan's 5 requests a minute
    cannot), it is skipped with a note. A session's news is fetched once: a rerun fetches only for tickers followed
    since. ``store=False`` (a dry run) stores nothing and returns the top articles instead.
    """
    provider = provider or get_provider()
    update = NewsUpdate(day=day)
    symbols = sorted({s.strip().upper() for s in symbols if s.strip()})
    fetched = NewsFetch.objects.filter(session=day).first()
    covered = set(fetched.symbols) if fetched else set()
    missing = [s for s in symbols if s not in covered]
    if not missing:
        return update
    start, end = calendar.news_window(day)
    plan = provider.news_plan(start=start, end=end, symbols=missing)
    update.how = plan.how
    if plan.seconds > settings.MARKET_NEWS_MAX_SECONDS:
        update.skipped = (
            f"news of {day.isoformat()} skipped: {plan.requests} requests would take {plan.seconds:.0f}s at the "
            f"provider's pace, more than MARKET_NEWS_MAX_SECONDS ({settings.MARKET_NEWS_MAX_SECONDS:g}s)"
        )
        logger.info("%s", update.skipped)
        return update
    before = getattr(provider, "requests", 0)
    try:
        articles = dedupe(provider.news(start=start, end=end, symbols=missing))
    except ProviderError as exc:
        update.error = f"news of {day.isoformat()} could not be had: {exc}"
        logger.warning("%s", update.error)
        return update
    finally:
        update.requests = getattr(provider, "requests", 0) - before
    tickers = {t.symbol: t for t in Ticker.objects.filter(symbol__in=missing)}
    for symbol in missing:
        if symbol not in tickers:
            tickers[symbol] = ticker_ensure(symbol=symbol)
    update.articles = len(articles)
    if not store:
        update.chosen = _news_choose(articles, tickers)
        return update
    with transaction.atomic():
        _news_store(articles, tickers, provider.source, since=start - NEWS_TWIN_LOOKBACK, until=end)
        NewsFetch.objects.update_or_create(
            session=day,
            defaults={
                "symbols": sorted(covered | set(missing)),
                "how": plan.how,
                "requests": (fetched.requests if fetched else 0) + update.requests,
                "articles": (fetched.articles if fetched else 0) + update.articles,
            },
        )
    logger.info("news of %s: %d articles, %d requests (%s)", day, update.articles, update.requests, plan.how)
    return update


def _news_choose(articles: Sequence[Article], tickers: dict[str, Ticker]) -> dict[str, tuple[NewsItem, ...]]:
    candidates: dict[str, list[Candidate]] = {symbol: [] for symbol in tickers}
    for article in articles:
        for symbol in article.tickers:
            if symbol in tickers:
                score = relevance(symbol=symbol, name=tickers[symbol].name, article=article)
                candidates[symbol].append(Candidate(score, news_item(article, article.insight(symbol))))
    return {symbol: top_news(found) for symbol, found in candidates.items()}


def _news_store(
    articles: Sequence[Article], tickers: dict[str, Ticker], source: str, *, since: dt.datetime, until: dt.datetime
) -> None:
    """Store the articles once each (by link, or as the near-twin of one stored lately) and their followed tickers."""

    def stored() -> tuple[dict[str, int], dict[str, int]]:
        rows = NewsArticle.objects.filter(published_at__gte=since, published_at__lte=until).order_by("published_at")
        by_url, by_key = {}, {}
        for pk, url, key in rows.values_list("pk", "url", "title_key"):
            by_url[url] = pk
            if key:  # a title with no letters or digits twins nothing
                by_key.setdefault(key, pk)  # the earliest of twins
        return by_url, by_key

    by_url, by_key = stored()
    new = [a for a in articles if a.url not in by_url and title_key(a.title) not in by_key]
    NewsArticle.objects.bulk_create(
        [
            NewsArticle(
                url=a.url,
                title=a.title,
                title_key=title_key(a.title),
                publisher=a.publisher,
                published_at=a.published_at,
                source=source,
            )
            for a in new
        ],
        batch_size=500,
        ignore_conflicts=True,  # the same link published outside the window: stored already, kept as it is
    )
    by_url, by_key = stored()
    mentions = []
    for article in articles:
        pk = by_url.get(article.url) or by_key.get(title_key(article.title))
        if pk is None:
            continue
        for symbol in article.tickers:
            if symbol not in tickers:
                continue
            insight = article.insight(symbol)
            mentions.append(
                NewsMention(
                    article_id=pk,
                    ticker_id=tickers[symbol].pk,
                    sentiment=insight.sentiment if insight else "",
                    sentiment_reasoning=insight.reasoning if insight else "",
                    relevance=relevance(symbol=symbol, name=tickers[symbol].name, article=article),
                )
            )
    NewsMention.objects.bulk_create(mentions, batch_size=1000, ignore_conflicts=True)
