"""DEMO DATA: deterministic synthetic prices for the large US names.

Used when no market-data key is configured, so a fresh clone can run the whole daily job offline. Every email and
page that shows these prices says DEMO DATA. The same symbol and date always give the same bar, on any machine,
whatever order the bars are asked for in.

The universe is ``demo_universe.csv``: the S&P 100, the rest of the Nasdaq-100, other much-followed stocks and the
broad ETFs, each with its company name, a reference price level and a volatility class by kind of business. The
price levels are rough anchors for demo data, not quotes: approximate late-2026 scale, so a newcomer who follows
Apple sees a price in the hundreds and Ford one in the teens. They are never updated against the market.

Each symbol's walk starts at its anchor on ``ANCHOR_DATE`` and wanders from there, forwards and back, with the
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
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from markets import calendar

from .base import EVENT_KINDS, Article, ArticleInsight, Bar, EventListing, MarketEvent, NewsPlan, TickerInfo

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

# DEMO DATA events: a quarterly rhythm per symbol, so each card shows a dividend or earnings date now and then.
DEMO_EVENT_PERIOD_DAYS = 91
DEMO_PAY_AFTER_EX_DAYS = 14
DEMO_EARNINGS_OFFSET_DAYS = 45
DEMO_FUNDS = frozenset({"SPY", "QQQ"})  # funds pay dividends but report no earnings


DEMO_PUBLISHER = "Walter demo newswire"
# Invented headlines, every one marked "Demo:" and none with a number (a number in an email comes from data).
DEMO_HEADLINES = (
    ("Demo: {name} in focus as the session closes", "neutral"),
    ("Demo: Analysts weigh the outlook for {name}", "neutral"),
    ("Demo: {name} draws buyers after upbeat product news", "positive"),
    ("Demo: Investors cheer {name}'s new partnership", "positive"),
    ("Demo: {name} faces questions over rising costs", "negative"),
    ("Demo: Regulators take a closer look at {name}", "negative"),
    ("Demo: What traders watched in {symbol} today", "neutral"),
    ("Demo: {name} expands into a new market", "positive"),
)
DEMO_ROUNDUP = "Demo: Market roundup: {other} and {symbol} among the names traders watched"
DEMO_HEADLINES_PER_SESSION = 3
MARKET_CLOSE = dt.time(16, 0)
MARKET_TZ = ZoneInfo("America/New_York")


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


def _demo_link(symbol: str, session: dt.date, number: int) -> str:
    """A live page: the ticker's real news on Yahoo Finance. An invented headline has no article to link to, and a
    dead link in the demo would look like a bug; the fragment keeps each demo article's link its own."""
    return (
        f"https://finance.yahoo.com/quote/{symbol.replace('.', '-')}/news/#walter-demo-{session.isoformat()}-{number}"
    )


def _span(first: dt.date, last: dt.date) -> tuple[int, int]:
    """The whole years a series covers: the dates asked for and the anchor date, so that few series serve all."""
    return min(first, ANCHOR_DATE).year, max(last, ANCHOR_DATE).year


@lru_cache(maxsize=64)
def _sessions(first_year: int, last_year: int) -> tuple[tuple[dt.date, ...], dict[dt.date, int]]:
    days = tuple(calendar.trading_days_between(max(DEMO_EPOCH, dt.date(first_year, 1, 1)), dt.date(last_year, 12, 31)))
    return days, {day: i for i, day in enumerate(days)}


# Each session a wander away from the trend keeps this share of itself.
_KEEP = 0.5 ** (1 / MEAN_REVERSION_HALF_LIFE)
# numpy has no linear filter: the wander is computed in closed form a block at a time, and within a block
# _KEEP ** -block stays small enough for that to be exact in float64.
_BLOCK = 2048
_KEEP_POWERS = _KEEP ** np.arange(_BLOCK)


def _mean_reverting(shocks: np.ndarray) -> np.ndarray:
    """x[i] = _KEEP * x[i-1] + shocks[i], from x[-1] = 0."""
    out = np.empty_like(shocks)
    carry = 0.0
    for start in range(0, len(shocks), _BLOCK):
        chunk = shocks[start : start + _BLOCK]
        powers = _KEEP_POWERS[: len(chunk)]
        out[start : start + len(chunk)] = _KEEP * powers * carry + powers * np.cumsum(chunk / powers)
        carry = out[start + len(chunk) - 1]
    return out


def _draws(rng: np.random.Generator, count: int) -> np.ndarray:
    """Per session: the price shock, then three standard normals (opening gap, intraday reach, volume).

    The shock is Student's t with 4 degrees of freedom, scaled to unit variance, so now and then a day moves
    several times the usual amount. It is built from normals, so that every session takes the same number of
    draws, in one array from one generator.
    """
    normal = rng.standard_normal((count, 8))
    t = normal[:, 0] / np.sqrt((normal[:, 4:] ** 2).sum(axis=1) / 4)
    return np.column_stack([np.clip(t / math.sqrt(2), -MAX_SHOCK, MAX_SHOCK), normal[:, 1:4]])


@lru_cache(maxsize=1024)
def _series(symbol: str, first_year: int, last_year: int) -> np.ndarray:
    """Open, high, low, close, volume rows for every session of ``_sessions(first_year, last_year)``.

    The walk starts at the anchor on ANCHOR_DATE and goes forwards and backwards from there, each direction with
    its own random stream drawn outwards. numpy's generators fill an array element by element, so a session's
    draws depend only on how many sessions it lies from the anchor date: a row is the same in every span that
    holds it, and a span near the anchor date (every day of the demo) costs a year of draws, not a decade.
    """
    days = _sessions(first_year, last_year)[0]
    n = len(days)
    before = bisect.bisect_left(days, ANCHOR_DATE)  # rows before the anchor date's; every span holds that date
    profile = price_profile(symbol)
    seed = _seed(symbol)
    daily_vol = profile.volatility / math.sqrt(SESSIONS_PER_YEAR)
    # A trend of -10% to +30% of the volatility a year: a volatile name has mostly climbed further into its
    # anchor than a staple has.
    drift = (-0.1 + 0.4 * _seed(f"drift:{symbol}") / 2**64) * profile.volatility / SESSIONS_PER_YEAR
    # Backwards from the session before the anchor date's, to the one before the first row (where it opens);
    # forwards from the anchor date's session itself.
    backwards = _draws(np.random.default_rng([seed, 1]), before + 1)
    forwards = _draws(np.random.default_rng([seed, 2]), n - before)
    wander = np.concatenate(
        [_mean_reverting(daily_vol * backwards[:, 0])[::-1], [0.0], _mean_reverting(daily_vol * forwards[1:, 0])]
    )
    log_close = math.log(profile.anchor) + drift * np.arange(-before - 1, n - before) + wander
    gap, reach, volume = np.concatenate([backwards[:before][::-1, 1:], forwards[:, 1:]]).T

    close = np.exp(log_close[1:])
    open_ = np.exp(log_close[:-1] + 0.3 * daily_vol * gap)
    reach = np.abs(reach) * daily_vol
    high = np.maximum(open_, close) * np.exp(0.6 * reach)
    low = np.minimum(open_, close) * np.exp(-0.5 * reach)
    return np.column_stack([open_, high, low, close, np.round(np.exp(15 + 0.4 * volume))])


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
        span = _span(day, day)
        at = _sessions(*span)[1][day]
        return {symbol: _bar(symbol, day, _series(symbol, *span)[at]) for symbol in self.universe}

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> list[Bar]:
        symbol = symbol.upper()
        if symbol not in self.universe or end < DEMO_EPOCH or end < start:
            return []
        span = _span(max(start, DEMO_EPOCH), end)
        days = _sessions(*span)[0]
        rows = _series(symbol, *span)
        return [
            _bar(symbol, days[i], rows[i])
            for i in range(bisect.bisect_left(days, start), bisect.bisect_right(days, end))
        ]

    def list_tickers(self) -> list[TickerInfo]:
        return [TickerInfo(symbol=s, name=n) for s, n in sorted(self.universe.items())]

    def upcoming_events(self, start: dt.date, end: dt.date) -> EventListing:
        """DEMO DATA: a deterministic quarterly dividend for some symbols and earnings for every company; no
        splits, since the synthetic prices never split."""
        events = [e for symbol in sorted(self.universe) for e in _demo_events(symbol, start, end)]
        events.sort(key=lambda e: (e.date, EVENT_KINDS.index(e.kind), e.symbol))
        return EventListing(events=events, listed=set(EVENT_KINDS))

    def news_plan(self, *, start: dt.datetime, end: dt.datetime, symbols: Sequence[str]) -> NewsPlan:
        return NewsPlan(how="embedded", requests=0, seconds=0.0)

    def news(self, *, start: dt.datetime, end: dt.datetime, symbols: Sequence[str]) -> list[Article]:
        """DEMO DATA: a few invented headlines per ticker per session, from the demo newswire, always the same.

        Each session closing in the window gets ``DEMO_HEADLINES_PER_SESSION`` headlines about the ticker, and a
        market roundup that names it second (the ranking has one to leave out).
        """
        wanted = sorted({s.strip().upper() for s in symbols} & set(self.universe))
        first = max(start.astimezone(MARKET_TZ).date(), DEMO_EPOCH)
        articles = []
        for session in calendar.trading_days_between(first, end.astimezone(MARKET_TZ).date()):
            close = dt.datetime.combine(session, MARKET_CLOSE, tzinfo=MARKET_TZ)
            if not start < close <= end:
                continue
            for symbol in wanted:
                articles.extend(self._demo_articles(symbol, session, close))
        return sorted(articles, key=lambda a: (a.published_at, a.url), reverse=True)

    def _demo_articles(self, symbol: str, session: dt.date, close: dt.datetime) -> list[Article]:
        seed = _seed(f"{symbol}:{session.isoformat()}")
        name = self.universe[symbol]
        chosen = random.Random(seed).sample(range(len(DEMO_HEADLINES)), DEMO_HEADLINES_PER_SESSION)
        articles = []
        for number, pick in enumerate(chosen, start=1):
            template, sentiment = DEMO_HEADLINES[pick]
            articles.append(
                Article(
                    url=_demo_link(symbol, session, number),
                    title=template.format(name=name, symbol=symbol),
                    publisher=DEMO_PUBLISHER,
                    # Spread over the afternoon before the close, an hour or so apart.
                    published_at=(close - dt.timedelta(minutes=37 + 71 * number)).astimezone(dt.UTC),
                    tickers=(symbol,),
                    insights=(
                        ArticleInsight(
                            symbol=symbol,
                            sentiment=sentiment,
                            reasoning="Demo sentiment, invented with the headline; no real article was read.",
                        ),
                    ),
                )
            )
        others = sorted(s for s in self.universe if s != symbol)
        other = others[seed % len(others)]
        articles.append(
            Article(
                url=_demo_link(symbol, session, len(chosen) + 1),
                title=DEMO_ROUNDUP.format(other=other, symbol=symbol),
                publisher=DEMO_PUBLISHER,
                published_at=(close - dt.timedelta(minutes=5)).astimezone(dt.UTC),
                tickers=(other, symbol),
            )
        )
        return articles
