"""DEMO DATA: deterministic synthetic prices for the large US names.

Used when no market-data key is configured, so a fresh clone can run the whole daily job offline. Every email and
page that shows these prices says DEMO DATA. The same symbol and date always give the same bar, on any machine,
whatever order the bars are asked for in.

The universe is ``demo_universe.csv``: the S&P 100, the rest of the Nasdaq-100, other much-followed stocks and the
broad ETFs, each with its company name, a reference price level and a volatility class by kind of business. The
price levels are rough anchors for demo data, not quotes: approximate late-2026 scale, so a newcomer who follows
Apple sees a price in the hundreds and Ford one in the teens. They are never updated against the market.

Each symbol's walk passes through its anchor on ``ANCHOR_DATE`` and wanders from there, forwards and back, with the
daily volatility of its class. Shocks are fat-tailed (Student's t), so an occasional day moves several times the
usual amount. A slow pull back towards a per-symbol trend keeps years of backfill between plausible bounds: a
random walk alone would drift to pennies or to tens of thousands over a decade.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from markets import calendar

from .base import Bar, TickerInfo

# Annualised volatility by kind of business: staples and utilities move least, chips, high-growth and
# crypto-linked names most. Broad ETFs are the market itself.
VOLATILITY_BY_CLASS: dict[str, float] = {
    "index": 0.16,
    "low": 0.20,
    "medium": 0.30,
    "high": 0.45,
    "very_high": 0.70,
}
DEFAULT_VOLATILITY_CLASS = "medium"
# Symbols outside the table (a custom universe) get a price level from this range, picked from the symbol.
DEFAULT_ANCHOR_RANGE = (10.0, 300.0)

# The synthetic history starts here; any later session has a bar.
DEMO_EPOCH = dt.date(2015, 1, 2)
# The session on which every walk is at its anchor price.
ANCHOR_DATE = dt.date(2026, 11, 30)
SESSIONS_PER_YEAR = 252
# How fast a walk forgets a wander away from its trend: half of a deviation is gone after about a year.
MEAN_REVERSION_HALF_LIFE = 252
# The largest daily shock, in daily standard deviations: a crypto-linked name's worst day is then about 30%.
MAX_SHOCK = 6.0


@dataclass(frozen=True, slots=True)
class PriceProfile:
    anchor: float  # the price on ANCHOR_DATE
    volatility: float  # annualised, of the daily log returns


def _load_universe(path: Path) -> tuple[dict[str, str], dict[str, PriceProfile]]:
    names: dict[str, str] = {}
    profiles: dict[str, PriceProfile] = {}
    with path.open(newline="", encoding="utf-8") as rows:
        for row in csv.DictReader(rows):
            symbol = row["symbol"]
            names[symbol] = row["name"]
            profiles[symbol] = PriceProfile(float(row["anchor"]), VOLATILITY_BY_CLASS[row["volatility"]])
    return names, profiles


DEMO_UNIVERSE, DEMO_PROFILES = _load_universe(Path(__file__).with_name("demo_universe.csv"))


def _seed(symbol: str) -> int:
    return int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "big")


def price_profile(symbol: str) -> PriceProfile:
    """The symbol's anchor and volatility: from the table, else a deterministic default picked from the symbol."""
    known = DEMO_PROFILES.get(symbol)
    if known is not None:
        return known
    low, high = DEFAULT_ANCHOR_RANGE
    fraction = _seed(f"anchor:{symbol}") / 2**64
    return PriceProfile(round(low * (high / low) ** fraction, 2), VOLATILITY_BY_CLASS[DEFAULT_VOLATILITY_CLASS])


def _horizon(day: dt.date) -> dt.date:
    """The last day of the series that holds ``day``: a whole year, so a daily run reuses one series all year."""
    return dt.date(max(day, ANCHOR_DATE).year, 12, 31)


@lru_cache(maxsize=16)
def _sessions(horizon: dt.date) -> tuple[tuple[dt.date, ...], dict[dt.date, int]]:
    days = tuple(calendar.trading_days_between(DEMO_EPOCH, horizon))
    return days, {day: i for i, day in enumerate(days)}


def _mean_reverting(shocks: np.ndarray, keep: float, block: int = 2048) -> np.ndarray:
    """x[i] = keep * x[i-1] + shocks[i] from x[-1] = 0, vectorised a block at a time (numpy has no linear filter;
    within a block keep ** -block stays small enough for the closed form to be exact in float64)."""
    out = np.empty_like(shocks)
    powers = keep ** np.arange(block)
    carry = 0.0
    for start in range(0, len(shocks), block):
        chunk = shocks[start : start + block]
        p = powers[: len(chunk)]
        out[start : start + len(chunk)] = keep * p * carry + p * np.cumsum(chunk / p)
        carry = out[start + len(chunk) - 1]
    return out


@lru_cache(maxsize=1024)
def _series(symbol: str, horizon: dt.date) -> np.ndarray:
    """Open, high, low, close, volume rows for every session from the epoch to ``horizon``.

    Every row depends only on the symbol and the session, not on the horizon: numpy's generators fill an array
    element by element, so the first n draws are the same whatever the size asked for, and the walk is pinned at
    ANCHOR_DATE, which every horizon covers.
    """
    days = _sessions(horizon)[0]
    n = len(days)
    profile = price_profile(symbol)
    seed = _seed(symbol)
    daily_vol = profile.volatility / math.sqrt(SESSIONS_PER_YEAR)
    # Growth names mostly climbed into their anchor: their trend back in time is steeper.
    drift = np.random.default_rng([seed, 0]).uniform(-0.1, 0.3) * profile.volatility / SESSIONS_PER_YEAR
    # Student's t with 4 degrees of freedom, scaled to unit variance: now and then a day moves several times the
    # usual amount.
    shock = np.clip(np.random.default_rng([seed, 1]).standard_t(4, n) / math.sqrt(2), -MAX_SHOCK, MAX_SHOCK)
    draw = np.random.default_rng([seed, 2]).standard_normal((n, 3))

    wander = _mean_reverting(daily_vol * shock, keep=0.5 ** (1 / MEAN_REVERSION_HALF_LIFE))
    anchor_at = bisect.bisect_right(days, ANCHOR_DATE) - 1
    log_close = math.log(profile.anchor) + drift * (np.arange(n) - anchor_at) + wander - wander[anchor_at]
    log_previous = np.concatenate([[log_close[0] - drift - daily_vol * shock[0]], log_close[:-1]])
    close = np.exp(log_close)
    open_ = np.exp(log_previous + 0.3 * daily_vol * draw[:, 0])
    reach = np.abs(draw[:, 1]) * daily_vol
    high = np.maximum(open_, close) * np.exp(0.6 * reach)
    low = np.minimum(open_, close) * np.exp(-0.5 * reach)
    volume = np.round(np.exp(15 + 0.4 * draw[:, 2]))
    return np.column_stack([open_, high, low, close, volume])


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
        horizon = _horizon(day)
        at = _sessions(horizon)[1][day]
        return {symbol: _bar(symbol, day, _series(symbol, horizon)[at]) for symbol in self.universe}

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> list[Bar]:
        symbol = symbol.upper()
        if symbol not in self.universe or end < DEMO_EPOCH:
            return []
        horizon = _horizon(end)
        days = _sessions(horizon)[0]
        first, last = bisect.bisect_left(days, start), bisect.bisect_right(days, end)
        rows = _series(symbol, horizon)
        return [_bar(symbol, days[i], rows[i]) for i in range(first, last)]

    def list_tickers(self) -> list[TickerInfo]:
        return [TickerInfo(symbol=s, name=n) for s, n in sorted(self.universe.items())]
