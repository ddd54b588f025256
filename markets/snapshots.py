"""A ticker's numbers on one session: what the analyst reads and the email shows."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

CHART_SESSIONS = 126  # about six months
NEWS_PER_TICKER = 3  # the articles a card shows and the analyst reads


@dataclass(frozen=True)
class NewsItem:
    """One article about a ticker, exactly as the provider listed it: nothing here is written by Walter."""

    title: str
    publisher: str
    url: str
    published_at: dt.datetime
    #: The provider's own reading of the article for this ticker ("positive", "neutral", "negative"), when it has one.
    sentiment: str = ""
    sentiment_reasoning: str = ""


@dataclass(frozen=True)
class UpcomingEvent:
    """Something dated that is coming for a ticker within the next sessions (a dividend, a split, earnings)."""

    kind: str  # "ex_dividend", "dividend_pay", "split" or "earnings"
    date: dt.date
    #: Cash per share for a dividend; None for other kinds.
    amount: float | None = None
    #: "4-for-1" for a split; empty for other kinds.
    ratio: str = ""


@dataclass(frozen=True)
class TickerSnapshot:
    symbol: str
    name: str
    date: dt.date  # the session the issue reports on
    as_of: dt.date | None  # the date of the latest bar we hold
    close: float | None
    previous_close: float | None
    change_pct: float | None
    rsi14: float | None
    sma50: float | None
    drawdown180: float | None
    high52: float | None
    low52: float | None
    drawdown_rank: int | None = None
    followed_count: int | None = None  # how many tickers were ranked
    source: str = ""
    demo: bool = False
    flagged: str = ""  # a data-quality caution for this session's bar
    #: Why this ticker's data for the session could not be had while the market's could (staff only): the email
    #: says "data unavailable today" and shows none of its numbers, rather than "no new data".
    unavailable: str = ""
    #: The session's top articles about this ticker (at most NEWS_PER_TICKER), most relevant first.
    news: tuple[NewsItem, ...] = field(default=(), repr=False)
    #: What is dated and coming within the next sessions, soonest first.
    events: tuple[UpcomingEvent, ...] = field(default=(), repr=False)
    chart_dates: tuple[dt.date, ...] = field(default=(), repr=False)
    chart_closes: tuple[float, ...] = field(default=(), repr=False)
    chart_sma50: tuple[float | None, ...] = field(default=(), repr=False)

    @property
    def stale(self) -> bool:
        """No bar for the reported session: the email says "no new data", never shows an older day as today."""
        return self.as_of != self.date

    @property
    def has_data(self) -> bool:
        return self.close is not None

    @property
    def sma50_distance_pct(self) -> float | None:
        if self.close is None or not self.sma50:
            return None
        return (self.close / self.sma50 - 1.0) * 100.0

    @property
    def change(self) -> float | None:
        if self.close is None or self.previous_close is None:
            return None
        return self.close - self.previous_close

    @property
    def range52_position_pct(self) -> float | None:
        """Where the close sits in the 52-week range: 0 at the low, 100 at the high."""
        if None in (self.close, self.high52, self.low52) or self.high52 == self.low52:
            return None
        return (self.close - self.low52) / (self.high52 - self.low52) * 100.0


def clean(value: float | None, digits: int = 6) -> float | None:
    """NaN becomes None: a value that cannot be computed is absent, never zero."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)
