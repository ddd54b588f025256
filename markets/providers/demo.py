"""DEMO DATA: deterministic synthetic prices for a fixed universe of well-known symbols.

Used when no market-data key is configured, so a fresh clone can run the whole daily job offline. Every email and
page that shows these prices says DEMO DATA. The same symbol and date always give the same bar, on any machine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Sequence
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from markets import calendar

from .base import Article, ArticleInsight, Bar, NewsPlan, TickerInfo

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


def _demo_link(symbol: str, session: dt.date, number: int) -> str:
    """A live page: the ticker's real news on Yahoo Finance. An invented headline has no article to link to, and a
    dead link in the demo would look like a bug; the fragment keeps each demo article's link its own."""
    return (
        f"https://finance.yahoo.com/quote/{symbol.replace('.', '-')}/news/#walter-demo-{session.isoformat()}-{number}"
    )


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
