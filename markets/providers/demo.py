"""DEMO DATA: deterministic synthetic prices for a fixed universe of well-known symbols.

Used when no market-data key is configured, so a fresh clone can run the whole daily job offline. Every email and
page that shows these prices says DEMO DATA. The same symbol and date always give the same bar, on any machine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import lru_cache

import numpy as np

from markets import calendar

from .base import EVENT_KINDS, Bar, EventListing, MarketEvent, TickerInfo

DEMO_UNIVERSE: dict[str, str] = {
    "AAPL": "Apple Inc.",
    "MSFT": "Microsoft Corporation",
    "NVDA": "NVIDIA Corporation",
    "AMZN": "Amazon.com, Inc.",
    "GOOGL": "Alphabet Inc. Class A",
    "META": "Meta Platforms, Inc.",
    "TSLA": "Tesla, Inc.",
    "BRK.B": "Berkshire Hathaway Inc. Class B",
    "JPM": "JPMorgan Chase & Co.",
    "V": "Visa Inc.",
    "JNJ": "Johnson & Johnson",
    "WMT": "Walmart Inc.",
    "PG": "Procter & Gamble Company",
    "XOM": "Exxon Mobil Corporation",
    "KO": "Coca-Cola Company",
    "PEP": "PepsiCo, Inc.",
    "DIS": "Walt Disney Company",
    "NFLX": "Netflix, Inc.",
    "INTC": "Intel Corporation",
    "AMD": "Advanced Micro Devices, Inc.",
    "IBM": "International Business Machines Corporation",
    "ORCL": "Oracle Corporation",
    "CSCO": "Cisco Systems, Inc.",
    "BA": "Boeing Company",
    "CAT": "Caterpillar Inc.",
    "NKE": "NIKE, Inc.",
    "MCD": "McDonald's Corporation",
    "SBUX": "Starbucks Corporation",
    "UBER": "Uber Technologies, Inc.",
    "PLTR": "Palantir Technologies Inc.",
    "COST": "Costco Wholesale Corporation",
    "AVGO": "Broadcom Inc.",
    "GOOG": "Alphabet Inc. Class C",
    "LLY": "Eli Lilly and Company",
    "UNH": "UnitedHealth Group Incorporated",
    "MA": "Mastercard Incorporated",
    "HD": "Home Depot, Inc.",
    "ABBV": "AbbVie Inc.",
    "MRK": "Merck & Co., Inc.",
    "CVX": "Chevron Corporation",
    "CRM": "Salesforce, Inc.",
    "ADBE": "Adobe Inc.",
    "BAC": "Bank of America Corporation",
    "PFE": "Pfizer Inc.",
    "TMO": "Thermo Fisher Scientific Inc.",
    "QCOM": "QUALCOMM Incorporated",
    "TXN": "Texas Instruments Incorporated",
    "MU": "Micron Technology, Inc.",
    "GS": "Goldman Sachs Group, Inc.",
    "SPY": "SPDR S&P 500 ETF Trust",
    "QQQ": "Invesco QQQ Trust",
}

# The synthetic history starts here; any later session has a bar.
DEMO_EPOCH = dt.date(2015, 1, 2)

# DEMO DATA events: a quarterly rhythm per symbol, so each card shows a dividend or earnings date now and then.
DEMO_EVENT_PERIOD_DAYS = 91
DEMO_PAY_AFTER_EX_DAYS = 14
DEMO_EARNINGS_OFFSET_DAYS = 45
DEMO_FUNDS = frozenset({"SPY", "QQQ"})  # funds pay dividends but report no earnings


def _seed(symbol: str) -> int:
    return int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "big")


@lru_cache(maxsize=4096)
def _session_index(last: dt.date) -> tuple[dt.date, ...]:
    return tuple(calendar.trading_days_between(DEMO_EPOCH, last))


@lru_cache(maxsize=256)
def _series(symbol: str, last: dt.date) -> tuple[tuple[dt.date, ...], np.ndarray]:
    """Open, high, low, close, volume rows for every session from the epoch to ``last``.

    A seeded geometric random walk: the prefix up to any date is the same whatever ``last`` is, so a bar never
    changes once it has been shown.
    """
    days = _session_index(last)
    rng = np.random.default_rng(_seed(symbol))
    n = len(days)
    drift = rng.uniform(-0.0002, 0.0008)
    vol = rng.uniform(0.010, 0.028)
    start_price = rng.uniform(20, 400)
    # Draw the same stream whatever n is: blocks of a fixed size, sliced.
    block = 512
    draws = np.concatenate([rng.standard_normal((block, 4)) for _ in range(n // block + 1)])[:n]
    returns = drift + vol * draws[:, 0]
    close = start_price * np.exp(np.cumsum(returns))
    open_ = close * np.exp(-returns * 0.5 + 0.002 * draws[:, 1])
    spread = np.abs(draws[:, 2]) * vol * 0.6 * close
    high = np.maximum(open_, close) + spread
    low = np.maximum(np.minimum(open_, close) - spread * 0.8, 0.01)
    volume = np.round(np.exp(15 + 0.4 * draws[:, 3]))
    return days, np.column_stack([open_, high, low, close, volume])


def _on_or_after(day: dt.date) -> dt.date:
    while not calendar.is_trading_day(day):
        day += dt.timedelta(days=1)
    return day


def _quarterly(symbol: str, offset: int, start: dt.date, end: dt.date) -> list[dt.date]:
    """The sessions of ``symbol``'s quarterly rhythm (shifted by ``offset`` days) from ``start`` to ``end``.

    A date depends only on the symbol, never on the window asked for, so overlapping windows agree.
    """
    phase = (_seed(symbol) + offset) % DEMO_EVENT_PERIOD_DAYS
    # Start a period early: an anchor on a weekend or holiday rolls forward into the window.
    first = start.toordinal() - DEMO_EVENT_PERIOD_DAYS
    anchor = first + (phase - first) % DEMO_EVENT_PERIOD_DAYS
    dates = []
    while anchor <= end.toordinal():
        day = _on_or_after(dt.date.fromordinal(anchor))
        if start <= day <= end:
            dates.append(day)
        anchor += DEMO_EVENT_PERIOD_DAYS
    return dates


def _demo_events(symbol: str, start: dt.date, end: dt.date) -> list[MarketEvent]:
    seed = _seed(symbol)
    events = []
    if seed % 3:  # two symbols in three pay a dividend
        amount = round(0.05 + (seed >> 8) % 120 / 100, 2)
        for ex in _quarterly(symbol, 0, start - dt.timedelta(days=DEMO_PAY_AFTER_EX_DAYS + 7), end):
            pay = _on_or_after(ex + dt.timedelta(days=DEMO_PAY_AFTER_EX_DAYS))
            if start <= ex:
                events.append(MarketEvent(symbol, "ex_dividend", ex, amount=amount))
            if start <= pay <= end:
                events.append(MarketEvent(symbol, "dividend_pay", pay, amount=amount))
    if symbol not in DEMO_FUNDS:
        events += [
            MarketEvent(symbol, "earnings", d) for d in _quarterly(symbol, DEMO_EARNINGS_OFFSET_DAYS, start, end)
        ]
    return events


def _bar(symbol: str, day: dt.date, row: np.ndarray) -> Bar:
    o, h, lo, c, v = (round(float(x), 4) for x in row)
    return Bar(symbol=symbol, date=day, open=o, high=h, low=lo, close=c, volume=v, vwap=round((h + lo + c) / 3, 4))


class DemoProvider:
    source = "demo"
    is_demo = True

    def __init__(self, universe: dict[str, str] | None = None) -> None:
        self.universe = universe or DEMO_UNIVERSE

    def grouped_daily(self, day: dt.date) -> dict[str, Bar]:
        if day < DEMO_EPOCH or not calendar.is_trading_day(day):
            return {}
        bars = {}
        for symbol in self.universe:
            _days, rows = _series(symbol, day)
            bars[symbol] = _bar(symbol, day, rows[-1])
        return bars

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> list[Bar]:
        symbol = symbol.upper()
        if symbol not in self.universe or end < DEMO_EPOCH:
            return []
        days, rows = _series(symbol, end)
        return [_bar(symbol, d, rows[i]) for i, d in enumerate(days) if d >= start]

    def list_tickers(self) -> list[TickerInfo]:
        return [TickerInfo(symbol=s, name=n) for s, n in sorted(self.universe.items())]

    def upcoming_events(self, start: dt.date, end: dt.date) -> EventListing:
        """DEMO DATA: a deterministic quarterly dividend for some symbols and earnings for every company; no
        splits, since the synthetic prices never split."""
        events = [e for symbol in sorted(self.universe) for e in _demo_events(symbol, start, end)]
        events.sort(key=lambda e: (e.date, EVENT_KINDS.index(e.kind), e.symbol))
        return EventListing(events=events, listed=set(EVENT_KINDS))
