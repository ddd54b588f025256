"""Reads of market data: history matrices and per-ticker snapshots."""

from __future__ import annotations

import datetime as dt
import itertools
import operator
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.db.models import Case, When
from django.db.models.functions import Length

from . import calendar, indicators
from .models import DailyBar, ListedTicker, NewsMention, Ticker, TickerEvent
from .news import Candidate, top_news
from .providers.base import EVENT_KINDS, TickerInfo
from .snapshots import CHART_SESSIONS, NewsItem, TickerSnapshot, UpcomingEvent, clean

# Enough sessions for the 52-week range and a converged Wilder RSI.
HISTORY_SESSIONS = 400
# The card's "Coming up" line looks this many sessions ahead of the session an issue reports on.
EVENT_SESSIONS = 10


@dataclass
class History:
    """Right-aligned bars of many tickers: row i is ``symbols[i]``, NaN where a ticker has no bar yet."""

    symbols: list[str]
    dates: np.ndarray  # per row and column, the bar's date (None where absent)
    opens: np.ndarray
    highs: np.ndarray
    lows: np.ndarray
    closes: np.ndarray
    volumes: np.ndarray
    sources: list[str]
    flags: list[str]  # the latest bar's data-quality flag per row
    vwaps: np.ndarray | None = None


def load_history(symbols: Iterable[str], end: dt.date, sessions: int = HISTORY_SESSIONS) -> History:
    """Each ticker's last ``sessions`` bars up to ``end``, from one query."""
    symbols = sorted(set(symbols))
    index = {s: i for i, s in enumerate(symbols)}
    # A calendar-day bound keeps the query small; 1.5 covers weekends and holidays.
    start = end - dt.timedelta(days=int(sessions * 1.5) + 10)
    rows = (
        DailyBar.objects.filter(ticker__symbol__in=symbols, date__gte=start, date__lte=end)
        .order_by("ticker__symbol", "date")
        .values_list("ticker__symbol", "date", "open", "high", "low", "close", "volume", "source", "flagged", "vwap")
    )
    n = len(symbols)
    shape = (n, sessions)
    history = History(
        symbols=symbols,
        dates=np.full(shape, None, dtype=object),
        opens=np.full(shape, np.nan),
        highs=np.full(shape, np.nan),
        lows=np.full(shape, np.nan),
        closes=np.full(shape, np.nan),
        volumes=np.full(shape, np.nan),
        sources=[""] * n,
        flags=[""] * n,
        vwaps=np.full(shape, np.nan),
    )
    # The rows stream in symbol order and go into the arrays one ticker at a time: holding every row as Python
    # objects first (2,000 tickers x 400 sessions) cost more memory than all the arrays together.
    shared_dates: dict[dt.date, dt.date] = {}  # one date object per session, not one per bar
    for symbol, group in itertools.groupby(rows.iterator(chunk_size=5000), key=operator.itemgetter(0)):
        bars = list(group)[-sessions:]
        i = index[symbol]
        k = len(bars)
        columns = list(zip(*bars, strict=False))
        history.dates[i, -k:] = [shared_dates.setdefault(d, d) for d in columns[1]]
        history.opens[i, -k:] = columns[2]
        history.highs[i, -k:] = columns[3]
        history.lows[i, -k:] = columns[4]
        history.closes[i, -k:] = columns[5]
        history.volumes[i, -k:] = columns[6]
        history.vwaps[i, -k:] = [np.nan if v is None else v for v in columns[9]]
        history.sources[i] = bars[-1][7]
        history.flags[i] = bars[-1][8]
    return history


def events_window(day: dt.date) -> tuple[dt.date, dt.date]:
    """The days after session ``day`` through its ``EVENT_SESSIONS``-th next session, by the market calendar: the
    issue that reports on Friday's close is read on Monday, so Monday is the window's first session."""
    return day + dt.timedelta(days=1), calendar.trading_days_after(day, EVENT_SESSIONS)[-1]


def upcoming_events(symbols: Iterable[str], day: dt.date) -> dict[str, tuple[UpcomingEvent, ...]]:
    """Each ticker's stored events in the window after ``day``, soonest first, from one query."""
    start, end = events_window(day)
    rows = TickerEvent.objects.filter(symbol__in=sorted(set(symbols)), date__gte=start, date__lte=end).values_list(
        "symbol", "kind", "date", "amount", "ratio"
    )
    found: dict[str, list[UpcomingEvent]] = {}
    for symbol, kind, date, amount, ratio in rows:
        found.setdefault(symbol, []).append(UpcomingEvent(kind=kind, date=date, amount=amount, ratio=ratio))
    return {
        symbol: tuple(sorted(events, key=lambda e: (e.date, EVENT_KINDS.index(e.kind))))
        for symbol, events in found.items()
    }


def ticker_snapshots(
    symbols: Iterable[str],
    day: dt.date,
    *,
    demo: bool = False,
    unavailable: dict[str, str] | None = None,
    history: History | None = None,
    latest: indicators.LatestIndicators | None = None,
    news: dict[str, tuple[NewsItem, ...]] | None = None,
) -> dict[str, TickerSnapshot]:
    """Every ticker's numbers for session ``day``, indicators computed for all of them at once.

    ``unavailable``: tickers whose data for ``day`` failed (symbol → why); their snapshots say so. ``history`` and
    ``latest``: what the day's market-data update read and computed for exactly these tickers, when it ran.
    ``news``: top articles chosen but not stored (a dry run), in place of the stored ones for those tickers.
    """
    unavailable = unavailable or {}
    symbols = sorted(set(symbols))
    if history is None or latest is None or history.symbols != symbols:
        history = load_history(symbols, day)
        # The note shows the latest session and the chart's SMA50, never a whole series: no need to compute one.
        latest = indicators.compute_latest(history.closes, history.highs, history.lows, series_sessions=CHART_SESSIONS)
    result = latest
    names = dict(Ticker.objects.filter(symbol__in=history.symbols).values_list("symbol", "name"))
    events = upcoming_events(history.symbols, day)

    news = {**session_news(history.symbols, day), **(news or {})}
    last = -1
    ranks = indicators.rank_by_drawdown(result.drawdown180)
    ranked = int(np.count_nonzero(~np.isnan(ranks)))
    snapshots = {}
    for i, symbol in enumerate(history.symbols):
        as_of = history.dates[i, last]
        chart = slice(-CHART_SESSIONS, None)
        chart_mask = ~np.isnan(history.closes[i, chart])
        snapshots[symbol] = TickerSnapshot(
            symbol=symbol,
            name=names.get(symbol, ""),
            date=day,
            as_of=as_of,
            close=clean(history.closes[i, last]),
            previous_close=clean(history.closes[i, last - 1]),
            change_pct=clean(result.change_pct[i]),
            rsi14=clean(result.rsi14[i]),
            sma50=clean(result.sma50[i]),
            drawdown180=clean(result.drawdown180[i]),
            high52=clean(result.high52[i]),
            low52=clean(result.low52[i]),
            drawdown_rank=None if np.isnan(ranks[i]) else int(ranks[i]),
            followed_count=ranked,
            source=history.sources[i],
            demo=demo or history.sources[i] == "demo",
            flagged=history.flags[i] if as_of == day else "",
            unavailable=unavailable.get(symbol, "") if as_of != day else "",
            events=events.get(symbol, ()),
            news=news.get(symbol, ()),
            chart_dates=tuple(history.dates[i, chart][chart_mask]),
            chart_closes=tuple(float(x) for x in history.closes[i, chart][chart_mask]),
            chart_sma50=tuple(clean(x, 4) for x in result.sma50_series[i][chart_mask]),
        )
    return snapshots


def session_news(symbols: Iterable[str], day: dt.date) -> dict[str, tuple[NewsItem, ...]]:
    """The top stored articles of session ``day`` about each of ``symbols`` (most relevant first), from one query;
    tickers without news are left out."""
    start, end = calendar.news_window(day)
    rows = NewsMention.objects.filter(
        ticker__symbol__in=sorted(set(symbols)), article__published_at__gt=start, article__published_at__lte=end
    ).values_list(
        "ticker__symbol",
        "relevance",
        "sentiment",
        "sentiment_reasoning",
        "article__title",
        "article__publisher",
        "article__url",
        "article__published_at",
    )
    candidates: dict[str, list[Candidate]] = {}
    for symbol, score, sentiment, reasoning, title, publisher, url, published_at in rows:
        item = NewsItem(
            title=title,
            publisher=publisher,
            url=url,
            published_at=published_at,
            sentiment=sentiment,
            sentiment_reasoning=reasoning,
        )
        candidates.setdefault(symbol, []).append(Candidate(score, item))
    return {symbol: top_news(found) for symbol, found in candidates.items()}


def market_closed_reason(day: dt.date, provider: object | None = None) -> str | None:
    """Why there is no session on ``day``: the provider's announced closures when it has them, else the calendar.

    The API knows unscheduled closures (a national day of mourning) that the local calendar cannot; the local
    calendar answers when the API is unavailable or only lists upcoming dates.
    """
    reason = calendar.closed_reason(day)
    if reason:
        return reason
    market_holidays = getattr(provider, "market_holidays", None)
    if market_holidays is None:
        return None
    from .providers import ProviderError

    try:
        name = market_holidays().get(day)
    except ProviderError:
        return None
    return f"{day.isoformat()} is a market holiday ({name})" if name else None


# -- the ticker directory, for the subscribe and preferences forms and their search ------------------------------


class TickerDirectoryEmpty(Exception):
    """No ticker list is loaded yet (a fresh install before its first refresh): nothing can be checked."""

    def __init__(self) -> None:
        super().__init__("The ticker list is not loaded yet. Please try again later.")


def listed_tickers(symbols: Iterable[str]) -> dict[str, str]:
    """The listed ones among ``symbols``, with their names, from the local directory (one query, no provider).

    Raises TickerDirectoryEmpty when no list is loaded: "cannot check yet" is not "does not exist".
    """
    wanted = sorted({s.strip().upper() for s in symbols})
    found = dict(ListedTicker.objects.filter(symbol__in=wanted).values_list("symbol", "name"))
    if len(found) < len(wanted) and not ListedTicker.objects.exists():
        raise TickerDirectoryEmpty()
    return found


def ticker_search(query: str, limit: int = 8) -> list[TickerInfo]:
    """Listed tickers matching ``query``, best first: the symbol itself, symbols that start with it (shortest
    first), then names that start with it, then names that hold it. Reads only the local directory.

    Raises TickerDirectoryEmpty when no list is loaded.
    """
    query = " ".join(query.split())[:40]
    if not query or limit <= 0:
        return []
    by_symbol = list(
        ListedTicker.objects.filter(symbol__startswith=query.upper())
        .order_by(Length("symbol"), "symbol")
        .values_list("symbol", "name")[:limit]
    )
    found = dict(by_symbol)
    if len(found) < limit:
        by_name = (
            ListedTicker.objects.filter(name__icontains=query)
            .exclude(symbol__in=list(found))
            .order_by(Case(When(name__istartswith=query, then=0), default=1), "symbol")
            .values_list("symbol", "name")[: limit - len(found)]
        )
        found.update(by_name)
    if not found and not ListedTicker.objects.exists():
        raise TickerDirectoryEmpty()
    return [TickerInfo(symbol=s, name=n) for s, n in found.items()]
