"""What every market-data provider offers, whatever the outside system behind it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
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
