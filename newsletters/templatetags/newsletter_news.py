"""The news lines of a card: the provider's articles shown as they came, in the order the analyst numbers them.

Titles, publishers and links are the provider's text, never Walter's: they are escaped like any untrusted text,
and a link that is not http(s) (``javascript:``, ``data:``, a bare path) is never made clickable.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django import template
from django.utils.encoding import iri_to_uri

from markets.snapshots import NEWS_PER_TICKER, NewsItem

register = template.Library()
EASTERN = ZoneInfo("America/New_York")


@register.filter
def news_items(news: tuple[NewsItem, ...]) -> tuple[NewsItem, ...]:
    """The articles a card shows, in snapshot order: the analyst's "[1]" is the first of them."""
    return tuple(news[:NEWS_PER_TICKER])


@register.filter
def web_url(url: str) -> str:
    """The link when a reader can safely follow it (http or https to a host), else the empty string."""
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    # A line break or space inside a link is never part of a genuine address; it could end a text line or a header.
    if any(ch.isspace() or ord(ch) < 0x20 for ch in text):
        return ""
    # Quotes and angle brackets are percent-encoded: a link stays one inert attribute value wherever it is pasted.
    return iri_to_uri(text)


@register.filter
def one_line(text: str) -> str:
    """Provider text on one line: the plain-text twin's layout never breaks on a title's own line breaks."""
    return " ".join((text or "").split())


@register.filter
def news_time(published_at: dt.datetime | None, session: dt.date | None = None) -> str:
    """When the article came out, in New York time: "4:12 PM ET", or "Dec 1, 4:12 PM ET" when not on ``session``."""
    if published_at is None:
        return ""
    if published_at.tzinfo is None:
        published_at = published_at.replace(tzinfo=dt.UTC)  # providers report UTC
    local = published_at.astimezone(EASTERN)
    clock = f"{local:%I:%M %p}".lstrip("0") + " ET"
    if session is not None and local.date() == session:
        return clock
    return f"{local:%b} {local.day}, {clock}"
