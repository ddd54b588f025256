"""Compose each subscriber's email: HTML and a plain-text twin.

Everything that is the same for every reader (each ticker's card, the frame and its CSS) is rendered and inlined
once per issue; a subscriber's email is then put together from those parts and a few personal values, so
composing scales to a large list.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import css_inline
from django.conf import settings
from django.template.loader import render_to_string

from markets.snapshots import TickerSnapshot

from .charts import charts_render
from .models import Analysis
from .portfolio import cards_order, portfolio_compute, portfolio_lines

HEADLINE = "__WALTER_HEADLINE__"
SUMMARY = "__WALTER_SUMMARY__"
CARDS = "__WALTER_CARDS__"
VIEW_URL = "__WALTER_VIEW_URL__"
PREFERENCES_URL = "__WALTER_PREFERENCES_URL__"
UNSUBSCRIBE_URL = "__WALTER_UNSUBSCRIBE_URL__"
EMAIL = "__WALTER_EMAIL__"

#: The subject's length as an inbox shows it: "Walter Dec 2: " and the headline count, the "[DEMO DATA] " marker
#: does not (a safety label shown only on demo data, never trimmed and never allowed to cost the headline words).
#: The email's own headline is the same text, so it fits too.
SUBJECT_MAX = 70

_inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
_STYLE_ATTRIBUTE = re.compile(r'style="([^"]*)"')
_STYLE_SPACES = re.compile(r"\s*([:;])\s*")


def _compact_styles(inlined: str) -> str:
    """The inliner writes "color: #fff;margin: 0;" on every element; without the spaces and the last ";" a 20-ticker
    email is some 5 KB smaller, and staying under Gmail's 102 KB clip keeps the footer (unsubscribe) visible."""
    return _STYLE_ATTRIBUTE.sub(
        lambda m: 'style="' + _STYLE_SPACES.sub(r"\1", m.group(1)).strip().rstrip(";") + '"', inlined
    )


@dataclass(frozen=True)
class Card:
    html: str
    text: str


@dataclass
class IssueContent:
    """What every email of one issue is built from."""

    day: dt.date
    demo: bool
    snapshots: dict[str, TickerSnapshot]
    analyses: dict[str, Analysis]
    cards: dict[str, Card] = field(default_factory=dict)
    charts: dict[str, bytes] = field(default_factory=dict)  # PNG per symbol, shared by every email
    phrases: dict[str, str] = field(default_factory=dict)  # the analyst's phrase per symbol, made header-safe
    frame_html: str = ""
    frame_text: str = ""


@dataclass(frozen=True)
class PersonalLinks:
    view: str
    preferences: str
    unsubscribe: str


@dataclass(frozen=True)
class ComposedEmail:
    subject: str
    html: str
    text: str
    images: dict[str, bytes] = field(default_factory=dict)  # Content-ID → PNG, the charts this email shows


def chart_cid(symbol: str) -> str:
    """The Content-ID of a ticker's chart inside an email (the archived copy keeps it)."""
    return f"chart-{symbol.lower().replace('.', '-')}@walter"


def issue_content_build(
    *,
    day: dt.date,
    snapshots: dict[str, TickerSnapshot],
    analyses: dict[str, Analysis],
    charts: dict[str, bytes] | None = None,
) -> IssueContent:
    """Render every ticker's card and the frame once for the whole issue; ``charts`` default to rendered now."""
    if charts is None:
        # A ticker whose data is unavailable shows no numbers, and no chart of older ones either.
        charts = charts_render(s for s in snapshots.values() if not s.unavailable)
    demo = any(s.demo for s in snapshots.values())
    llm = any(not a.automated for a in analyses.values())
    content = IssueContent(
        day=day,
        demo=demo,
        snapshots=snapshots,
        analyses=analyses,
        charts=charts,
        phrases={symbol: phrase for symbol, a in analyses.items() if (phrase := headline_phrase(a.phrase))},
    )
    frame_context = {
        "day": day,
        "demo": demo,
        "llm": llm,
        "postal_address": settings.NEWSLETTER_POSTAL_ADDRESS,
        "subject": f"Walter · {day:%b} {day.day}",
    }
    frame_html = render_to_string("newsletters/email/email.html", frame_context)
    # Inline the frame with a sample card in place so card classes are styled by the same stylesheet.
    sample_cards = "".join(
        render_to_string(
            "newsletters/email/card.html",
            {"s": s, "analysis": analyses.get(sym), "chart_src": f"cid:{chart_cid(sym)}" if sym in charts else ""},
        ).replace('<tr><td class="card">', f'<tr data-card="{sym}"><td class="card">', 1)
        for sym, s in sorted(snapshots.items())
    )
    inlined = _compact_styles(_inliner.inline(frame_html.replace(CARDS, f"<!--CARDS-->{sample_cards}<!--/CARDS-->")))
    start, end = inlined.index("<!--CARDS-->"), inlined.index("<!--/CARDS-->")
    content.frame_html = inlined[:start] + CARDS + inlined[end + len("<!--/CARDS-->") :]
    for chunk in inlined[start + len("<!--CARDS-->") : end].split('<tr data-card="')[1:]:
        symbol, rest = chunk.split('"', 1)
        snapshot = snapshots[symbol]
        content.cards[symbol] = Card(
            html="<tr" + rest,
            text=render_to_string(
                "newsletters/email/card.txt", {"s": snapshot, "analysis": analyses.get(symbol)}
            ).strip(),
        )
    content.frame_text = render_to_string("newsletters/email/email.txt", frame_context)
    return content


def headline_phrase(phrase: str) -> str:
    """The analyst's phrase as a headline can carry it: one line, no control or format characters.

    The phrase is model-written: a line break would end the Subject header (Django refuses to send it), and a
    bidirectional override would reorder what the inbox shows.
    """
    text = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in phrase or "")
    return " ".join(text.split()).strip(" .,;:")


def _headline(snapshots: list[TickerSnapshot], phrases: dict[str, str] | None = None, limit: int = 0) -> str:
    """The day's best and worst movers in the analyst's words when those fit in ``limit``, else in figures."""
    moved = [s for s in snapshots if s.change_pct is not None and not s.stale]
    if not moved:
        if snapshots and all(s.unavailable for s in snapshots):
            return "Market data unavailable for your tickers today"
        return "No new market data for your tickers today"
    leader = max(moved, key=lambda s: s.change_pct)
    laggard = min(moved, key=lambda s: s.change_pct)
    if phrases and limit:
        worded = _phrase_headline(moved, leader, laggard, phrases, limit)
        if worded:
            return worded
    if len(moved) == 1:
        verb = "rises" if leader.change_pct > 0 else "falls" if leader.change_pct < 0 else "holds"
        return f"{leader.symbol} {verb} {abs(leader.change_pct):.1f}%"
    if leader.change_pct <= 0:
        return f"A down day: {laggard.symbol} falls {abs(laggard.change_pct):.1f}%"
    if laggard.change_pct >= 0:
        return f"An up day: {leader.symbol} leads with +{leader.change_pct:.1f}%"
    return (
        f"{leader.symbol} leads with +{leader.change_pct:.1f}%, {laggard.symbol} slips {abs(laggard.change_pct):.1f}%"
    )


def _phrase_headline(
    moved: list[TickerSnapshot], leader: TickerSnapshot, laggard: TickerSnapshot, phrases: dict[str, str], limit: int
) -> str:
    """ "NVDA leads, AAPL slips under its 50-day line", or "" when the phrases are missing or do not fit."""
    lead, lag = phrases.get(leader.symbol, ""), phrases.get(laggard.symbol, "")
    if len(moved) == 1:
        candidates = [f"{leader.symbol} {lead}"] if lead else []
    elif leader.change_pct == laggard.change_pct:
        return ""  # every ticker moved alike: nobody leads
    else:
        candidates = []
        if lead and lag:
            candidates.append(f"{leader.symbol} {lead}, {laggard.symbol} {lag}")
        # Shorter forms keep one phrase; "leads" and "lags" are only said of a ticker that did rise or fall.
        if lag and leader.change_pct > 0:
            candidates.append(f"{leader.symbol} leads, {laggard.symbol} {lag}")
        if lead and laggard.change_pct < 0:
            candidates.append(f"{leader.symbol} {lead}, {laggard.symbol} lags")
    return next((c for c in candidates if len(c) <= limit), "")


def _summary(snapshots: list[TickerSnapshot]) -> tuple[str, str]:
    up = sum(1 for s in snapshots if not s.stale and (s.change_pct or 0) > 0)
    down = sum(1 for s in snapshots if not s.stale and (s.change_pct or 0) < 0)
    unavailable = sum(1 for s in snapshots if s.unavailable)
    stale = sum(1 for s in snapshots if s.stale) - unavailable
    noun = "ticker" if len(snapshots) == 1 else "tickers"
    text = f"Your {len(snapshots)} {noun}: {up} up, {down} down"
    rich = (
        f'Your {len(snapshots)} {noun}: <b style="color:#137333">{up} up</b>, <b style="color:#b3261e">{down} down</b>'
    )
    if stale:
        text += f", {stale} without new data"
        rich += f", {stale} without new data"
    if unavailable:
        text += f", {unavailable} with data unavailable today"
        rich += f", {unavailable} with data unavailable today"
    return rich, text


def subject_line(
    day: dt.date, snapshots: list[TickerSnapshot], demo: bool, phrases: dict[str, str] | None = None
) -> str:
    """ "Walter Dec 2: NVDA leads, AAPL slips under its 50-day line", at most SUBJECT_MAX characters of it."""
    return _subject(day, _headline(snapshots, phrases, _headline_room(day)), demo)


def _headline_room(day: dt.date) -> int:
    return SUBJECT_MAX - len(_subject(day, "", demo=False))


def _subject(day: dt.date, headline: str, demo: bool) -> str:
    prefix = "[DEMO DATA] " if demo else ""
    return f"{prefix}Walter {day:%b} {day.day}: {headline}"


def email_compose(
    *,
    content: IssueContent,
    symbols: list[str],
    email: str,
    links: PersonalLinks,
    holdings: Mapping[str, Decimal] | None = None,
) -> ComposedEmail:
    """One subscriber's email from the issue's shared parts; ``symbols`` are the tickers they follow, ``holdings``
    the shares they hold of some of them (symbol → shares): the summary then has the portfolio line."""
    snapshots = [content.snapshots[s] for s in symbols if s in content.snapshots]
    headline = _headline(snapshots, content.phrases, _headline_room(content.day))
    summary_html, summary_text = _summary(snapshots)
    followed = {s.symbol: s for s in snapshots}
    portfolio = portfolio_compute(snapshots=followed, holdings=holdings) if holdings else None
    if portfolio is not None:
        portfolio_html, portfolio_text = portfolio_lines(portfolio)
        summary_html += f"<br>{portfolio_html}"
        summary_text += f"\n{portfolio_text}"
    cards = cards_order(snapshots, portfolio)
    escaped = {
        HEADLINE: html.escape(headline),
        SUMMARY: summary_html,
        VIEW_URL: html.escape(links.view),
        PREFERENCES_URL: html.escape(links.preferences),
        UNSUBSCRIBE_URL: html.escape(links.unsubscribe),
        EMAIL: html.escape(email),
        CARDS: "".join(content.cards[s.symbol].html for s in cards),
    }
    plain = {
        HEADLINE: headline,
        SUMMARY: summary_text,
        VIEW_URL: links.view,
        PREFERENCES_URL: links.preferences,
        UNSUBSCRIBE_URL: links.unsubscribe,
        EMAIL: email,
        CARDS: "\n\n".join(content.cards[s.symbol].text for s in cards),
    }
    return ComposedEmail(
        subject=_subject(content.day, headline, content.demo),
        html=_fill(content.frame_html, escaped),
        text=_fill(content.frame_text, plain),
        images={chart_cid(s.symbol): content.charts[s.symbol] for s in snapshots if s.symbol in content.charts},
    )


def _fill(template: str, values: dict[str, str]) -> str:
    # Personal values go in last, so text a subscriber controls can never be read as a placeholder.
    for key in (HEADLINE, SUMMARY, CARDS, VIEW_URL, PREFERENCES_URL, UNSUBSCRIBE_URL, EMAIL):
        template = template.replace(key, values[key])
    return template
