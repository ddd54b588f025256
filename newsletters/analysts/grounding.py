"""Every number a model writes must be one of the snapshot's numbers, of the same kind, or an article's.

The email's figures come from data; the analysis text sits next to them, so a model that invents a price, writes
the RSI as a percentage or moves the session to another day would contradict the numbers above it. A number
matches when it is the fact rounded to the precision the model wrote (a little slack for prices).

The articles supplied with the snapshot (their title, publisher and the provider's reasoning) are data too: a
number, date or window one of them states may be repeated ("revenue rose 16%"), a percentage only as a percentage.
Numbers about the ticker's own indicators stay the snapshot's: an RSI is checked against the RSI whatever an
article says. Citations ("[2]") are references, not numbers; which articles they may name is checked with the
reply's shape (replies.py).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from markets.snapshots import NEWS_PER_TICKER, NewsItem, TickerSnapshot

PERCENT_FACTS = ("change_pct", "sma50_distance_pct", "drawdown180_pct", "range52_position_pct")
PRICE_FACTS = ("close", "previous_close", "change", "sma50", "high52", "low52")
RSI_FACTS = ("rsi14",)
# Window lengths may be named freely ("50-day average", "52-week range", "RSI 14").
WINDOWS = {14, 50, 52, 180, 200}
# The usual RSI thresholds ("above 70 is overbought").
RSI_THRESHOLDS = {30, 70}

MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTH_DATE = re.compile(r"\b(" + "|".join(MONTHS) + r")\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?", re.I)
_WINDOW = re.compile(r"\b(\d+)[- ](?:day|week|session|month)s?\b", re.I)
_NUMBER = re.compile(
    r"(?<![\w.])(?P<cur>\$\s?)?(?P<num>[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?P<pct>\s?(?:%|per\s?cent\b))?",
    re.I,
)
# Names that carry numbers of their own.
_NAMED = re.compile(r"\b(?:S&P\s?500|S&P|Nasdaq[- ]100|Dow\s?30|Russell\s?2000|Russell\s?1000)\b", re.I)
_RSI_BEFORE = re.compile(r"RSI[\s(\-]*(?:14[\s)\-]*)?(?:\w+\s+){0,3}$", re.I)
#: "[2]", "[1][3]" or "[1, 3]": a reference to the supplied articles, numbered from 1 in the prompt's order.
CITATION = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")


def supplied_articles(snapshot: TickerSnapshot) -> tuple[NewsItem, ...]:
    """The articles the analyst is given, in the order they are numbered [1], [2], [3]."""
    return snapshot.news[:NEWS_PER_TICKER]


def published_utc(article: NewsItem) -> dt.datetime:
    """When the article was published, in UTC as the prompt shows it (a naive time is taken to be UTC already)."""
    published = article.published_at
    return published.replace(tzinfo=dt.UTC) if published.tzinfo is None else published.astimezone(dt.UTC)


def cited_articles(text: str) -> list[int]:
    """Every article number ``text`` cites, in order, repeats included."""
    return [int(n) for match in CITATION.finditer(text) for n in match[1].split(",")]


@dataclass
class _Stated:
    """What some text states: its dates, windows, percentages and other numbers (exactly as written)."""

    dates: set[tuple[int, int, int | None]] = field(default_factory=set)  # (month, day, year or None)
    windows: set[int] = field(default_factory=set)
    percents: list[float] = field(default_factory=list)
    numbers: list[float] = field(default_factory=list)


def _article_statements(articles: Iterable[NewsItem]) -> _Stated:
    """What the articles' own text says, and the days they were published, for grounding a model's mention."""
    stated = _Stated()
    for article in articles:
        published = published_utc(article)
        stated.dates.add((published.month, published.day, published.year))
        text = _NAMED.sub(_blank, " ".join([article.title, article.publisher, article.sentiment_reasoning]))
        for match in _ISO_DATE.finditer(text):
            stated.dates.add((int(match[2]), int(match[3]), int(match[1])))
        text = _ISO_DATE.sub(_blank, text)
        for match in _MONTH_DATE.finditer(text):
            stated.dates.add((MONTHS.index(match[1].lower()) + 1, int(match[2]), int(match[3]) if match[3] else None))
        text = _MONTH_DATE.sub(_blank, text)
        stated.windows.update(int(match[1]) for match in _WINDOW.finditer(text))
        text = _WINDOW.sub(_blank, text)
        for match in _NUMBER.finditer(text):
            value = abs(float(match["num"].replace(",", "").replace("\u2212", "-")))
            (stated.percents if match["pct"] else stated.numbers).append(value)
    return stated


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group(0))


def facts(snapshot: TickerSnapshot) -> dict[str, Any]:
    """The numbers the model is given, rounded as it sees them, by name."""
    s = snapshot
    values: dict[str, Any] = {
        "date": s.date.isoformat(),
        "as_of": s.as_of.isoformat() if s.as_of else None,
        "close": _round(s.close, 2),
        "previous_close": _round(s.previous_close, 2),
        "change": _round(s.change, 2),
        "change_pct": _round(s.change_pct, 2),
        "rsi14": _round(s.rsi14, 1),
        "sma50": _round(s.sma50, 2),
        "sma50_distance_pct": _round(s.sma50_distance_pct, 2),
        "drawdown180_pct": _round(s.drawdown180, 2),
        "high52": _round(s.high52, 2),
        "low52": _round(s.low52, 2),
        "range52_position_pct": _round(s.range52_position_pct, 1),
    }
    return {k: v for k, v in values.items() if v is not None}


def event_facts(snapshot: TickerSnapshot) -> list[dict[str, Any]]:
    """The upcoming events the model is given, soonest first: kind, date, a dividend's cash per share, a split's
    ratio. Their numbers are grounded like the snapshot's."""
    found = []
    for event in snapshot.events:
        fact: dict[str, Any] = {"kind": event.kind, "date": event.date.isoformat()}
        if event.amount is not None:
            fact["cash_per_share"] = _round(event.amount, 4)
        if event.ratio:
            fact["ratio"] = event.ratio
        found.append(fact)
    return found


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _matches(written: float, decimals: int, candidates: Iterable[float], *, relative: float = 0.0) -> bool:
    slack = 0.5 * 10**-decimals + 1e-9
    return any(abs(written - c) <= slack + relative * abs(c) for c in candidates)


def ungrounded_numbers(text: str, snapshot: TickerSnapshot, *, articles: bool = True) -> list[str]:
    """What in ``text`` does not match the snapshot (or, with ``articles``, its supplied articles); empty if none."""
    known = facts(snapshot)
    stated = _article_statements(supplied_articles(snapshot) if articles else ())
    percents = [abs(known[k]) for k in PERCENT_FACTS if k in known]
    prices = [abs(known[k]) for k in PRICE_FACTS if k in known]
    rsi = [known[k] for k in RSI_FACTS if k in known]
    # The upcoming events' dates, cash amounts and split ratios are data too.
    prices += [abs(e.amount) for e in snapshot.events if e.amount is not None]
    ratio_numbers = {float(n) for e in snapshot.events for n in re.findall(r"\d+(?:\.\d+)?", e.ratio)}
    sessions = {d for d in (snapshot.date, snapshot.as_of) if d} | {e.date for e in snapshot.events}
    problems: list[str] = []

    def session_or_stated(month: int, day: int, year: int | None) -> bool:
        return any(d.month == month and d.day == day and year in (None, d.year) for d in sessions) or any(
            m == month and d == day and (year is None or y in (None, year)) for m, d, y in stated.dates
        )

    text = CITATION.sub(_blank, text)
    text = _NAMED.sub(_blank, text)
    text = re.sub(rf"\b{re.escape(snapshot.symbol)}\b", _blank, text)
    for match in _ISO_DATE.finditer(text):
        if not session_or_stated(int(match[2]), int(match[3]), int(match[1])):
            problems.append(f"the date {match[0]} is not the session's")
    text = _ISO_DATE.sub(_blank, text)
    for match in _MONTH_DATE.finditer(text):
        month, day = MONTHS.index(match[1].lower()) + 1, int(match[2])
        if not session_or_stated(month, day, int(match[3]) if match[3] else None):
            problems.append(f"the date {match[0]!r} is not the session's")
    text = _MONTH_DATE.sub(_blank, text)
    for match in _WINDOW.finditer(text):
        if int(match[1]) not in WINDOWS | stated.windows:
            problems.append(f"{match[0]!r} is not a window the data uses")
    text = _WINDOW.sub(_blank, text)

    for match in _NUMBER.finditer(text):
        raw = match["num"].replace(",", "").replace("\u2212", "-")
        written, decimals = abs(float(raw)), _decimals(raw)
        after_rsi = bool(_RSI_BEFORE.search(text[max(0, match.start() - 30) : match.start()]))
        if match["pct"]:
            if not _matches(written, decimals, percents + stated.percents):
                what = "the RSI written as a percentage" if after_rsi or _matches(written, decimals, rsi) else None
                problems.append(f"{match[0].strip()} is {what or 'not one of the percentages in the data'}")
        elif match["cur"]:
            if not (_matches(written, decimals, prices, relative=0.001) or _matches(written, decimals, stated.numbers)):
                problems.append(f"{match[0].strip()} is not a price in the data")
        elif after_rsi:
            if not (_matches(written, decimals, rsi) or written in WINDOWS | RSI_THRESHOLDS):
                problems.append(f"RSI {match[0].strip()} does not match the data's RSI")
        elif not (
            _matches(written, decimals, prices, relative=0.001)
            or _matches(written, decimals, rsi)
            or _matches(written, decimals, percents)
            or _matches(written, decimals, stated.numbers + stated.percents)
            or (decimals == 0 and written in WINDOWS | RSI_THRESHOLDS)
            or (decimals == 0 and written in {d.year for d in sessions})
            or written in ratio_numbers
        ):
            problems.append(f"{match[0].strip()} is not a number in the data")
    return problems
