"""What every market-data provider offers, whatever the outside system behind it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Bar:
    """One adjusted daily bar of one ticker."""

    symbol: str
    date: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None = None


@dataclass(frozen=True, slots=True)
class TickerInfo:
    symbol: str
    name: str
    active: bool = True


#: What an upcoming event can be; the order in which one day's events are listed.
EVENT_KINDS = ("ex_dividend", "dividend_pay", "split", "earnings")


@dataclass(frozen=True, slots=True)
class MarketEvent:
    """One ticker's dated corporate event, as the provider lists it."""

    symbol: str
    kind: str  # one of EVENT_KINDS
    date: dt.date
    amount: float | None = None  # cash per share, for a dividend
    ratio: str = ""  # "4-for-1", for a split


@dataclass
class EventListing:
    """The market's events in a date window: a kind is in ``listed`` only when the whole window of it was listed,
    so what is stored of that kind can be replaced; ``skipped`` says, per kind left out on purpose, why (a plan
    without it, a spent request budget); ``failed``, per kind whose listing broke, why."""

    events: list[MarketEvent] = field(default_factory=list)
    listed: set[str] = field(default_factory=set)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # per kind, why its listing failed (network, malformed)
    requests: int = 0


@dataclass(frozen=True, slots=True)
class ArticleInsight:
    """The provider's own reading of an article for one ticker it names."""

    symbol: str
    sentiment: str = ""  # "positive", "neutral" or "negative"
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class Article:
    """One news article as the provider lists it, with every ticker it is about, its subject first."""

    url: str
    title: str
    publisher: str
    published_at: dt.datetime  # aware, UTC
    tickers: tuple[str, ...]
    insights: tuple[ArticleInsight, ...] = ()

    def insight(self, symbol: str) -> ArticleInsight | None:
        return next((i for i in self.insights if i.symbol == symbol), None)


@dataclass(frozen=True, slots=True)
class NewsPlan:
    """How a provider would fetch a news window, and what it would cost at its request pace."""

    how: str  # "listing" (the whole market, paginated), "by_ticker" (one request each) or "embedded"
    requests: int
    seconds: float  # the least time those requests take at the provider's pace (0 without a pace)


def news_request_plan(*, followed: int, listing_pages: int) -> tuple[str, int]:
    """The fewer requests of the two ways to get a news window, like the backfill's plan: one listing of the whole
    market (``listing_pages`` pages, whatever the number of tickers), or one request per followed ticker."""
    if not followed:
        return "by_ticker", 0
    if listing_pages < followed:
        return "listing", listing_pages
    return "by_ticker", followed


class ProviderError(Exception):
    """The provider could not answer (network, quota, malformed reply); the caller records it and goes on."""


@runtime_checkable
class MarketDataProvider(Protocol):
    #: A short name stored with every bar ("demo", "polygon").
    source: str
    #: True when the prices are synthetic: every email and page that shows them says DEMO DATA.
    is_demo: bool

    def grouped_daily(self, day: dt.date) -> dict[str, Bar]:
        """The whole US market's bars for one session, by symbol; empty when there is no data (yet)."""
        ...

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> list[Bar]:
        """One ticker's bars from ``start`` to ``end``, oldest first (backfill)."""
        ...

    def list_tickers(self) -> list[TickerInfo]:
        """Every listed US stock, in bulk (the daily ticker directory); raises ProviderError rather than answer
        with part of the list."""
        ...

    def upcoming_events(self, start: dt.date, end: dt.date) -> EventListing:
        """Every dividend (ex-date and pay date), split and earnings date of the market from ``start`` to ``end``,
        in bulk by date window: the number of requests never depends on how many tickers are followed. A kind
        the plan does not include is skipped with a reason, never an error."""
        ...

    def news_plan(self, *, start: dt.datetime, end: dt.datetime, symbols: Sequence[str]) -> NewsPlan:
        """What ``news`` would cost for this window and these tickers, without sending anything."""
        ...

    def news(self, *, start: dt.datetime, end: dt.datetime, symbols: Sequence[str]) -> list[Article]:
        """The articles published after ``start`` up to ``end`` that name any of ``symbols``, each once; raises
        ProviderError rather than answer with part of them."""
        ...
