"""What every market-data provider offers, whatever the outside system behind it."""

from __future__ import annotations

import datetime as dt
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
