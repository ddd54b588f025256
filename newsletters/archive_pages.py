"""The public archive: one page per past session, an index and an Atom feed. No subscriber data ever."""

from __future__ import annotations

import datetime as dt
import hashlib

from django.contrib.syndication.views import Feed
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.feedgenerator import Atom1Feed
from django.utils.http import quote_etag
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

from markets.models import Ticker
from markets.selectors import ticker_snapshots
from markets.snapshots import TickerSnapshot

from .charts import chart_drawable, chart_png
from .models import Delivery, Issue
from .selectors import stored_analyses

TOP_TICKERS = 20
#: Below this a follower count could point at one person, so it is not shown.
MIN_SHOWN_FOLLOWERS = 3
#: A past session's chart changes only when a bad bar is corrected; the ETag lets a browser check cheaply after that.
CHART_MAX_AGE = 86400
CHART_CACHE_SECONDS = 3600


def archived_issues() -> QuerySet[Issue]:
    """Issues that reached at least one reader, newest first."""
    return Issue.objects.filter(deliveries__status=Delivery.Status.SENT).distinct().order_by("-date")


def most_followed_tickers(*, limit: int = TOP_TICKERS) -> list[tuple[Ticker, int]]:
    rows = (
        Ticker.objects.annotate(followers=Count("subscribers", distinct=True))
        .filter(followers__gt=0)
        .order_by("-followers", "symbol")[:limit]
    )
    return [(t, t.followers) for t in rows]


@cache_control(public=True, max_age=300)
def archive_index(request: HttpRequest) -> HttpResponse:
    page = Paginator(archived_issues(), 30).get_page(request.GET.get("page"))
    return render(request, "newsletters/archive/index.html", {"page": page})


def _archived_issue(date: str) -> Issue:
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise Http404("No such session") from None
    issue = archived_issues().filter(date=day).first()
    if issue is None:
        raise Http404("No archived issue for that session")
    return issue


def _charted(snapshot: TickerSnapshot | None) -> bool:
    """A chart is shown for a ticker with the session's own close: never for missing data or an older day's."""
    return snapshot is not None and snapshot.has_data and not snapshot.stale and chart_drawable(snapshot)


@cache_control(public=True, max_age=86400)
def archive_day(request: HttpRequest, date: str) -> HttpResponse:
    issue = _archived_issue(date)
    day = issue.date
    tickers = most_followed_tickers()
    symbols = [t.symbol for t, _ in tickers]
    snapshots = ticker_snapshots(symbols, day, demo=issue.demo)
    analyses = stored_analyses(day=day, symbols=symbols)
    rows = [
        {
            "snapshot": snapshots.get(t.symbol),
            "analysis": analyses.get(t.symbol),
            "symbol": t.symbol,
            "followers": n if n >= MIN_SHOWN_FOLLOWERS else None,
            "chart_url": reverse("newsletters:archive-chart", kwargs={"date": day.isoformat(), "symbol": t.symbol})
            if _charted(snapshots.get(t.symbol))
            else "",
        }
        for t, n in tickers
    ]
    return render(request, "newsletters/archive/day.html", {"issue": issue, "rows": rows})


def archive_chart_png(*, day: dt.date, symbol: str, demo: bool) -> bytes | None:
    """One ticker's chart for a past session, drawn once an hour at most however many visitors load the page."""
    key = f"archive-chart:{day.isoformat()}:{symbol}:{int(demo)}"
    cached = cache.get(key)
    if cached is None:
        snapshot = ticker_snapshots([symbol], day, demo=demo).get(symbol)
        cached = (chart_png(snapshot) if _charted(snapshot) else None) or b""
        cache.set(key, cached, CHART_CACHE_SECONDS)
    return cached or None


@require_safe
def archive_chart(request: HttpRequest, date: str, symbol: str) -> HttpResponse:
    """The PNG the archive day page shows for a ticker: only for the tickers that page lists, nothing personal."""
    issue = _archived_issue(date)
    if symbol not in {t.symbol for t, _ in most_followed_tickers()}:
        raise Http404("No chart for that ticker")
    png = archive_chart_png(day=issue.date, symbol=symbol, demo=issue.demo)
    if png is None:
        raise Http404("No chart for that ticker on that session")
    etag = quote_etag(hashlib.sha256(png).hexdigest()[:32])
    response = get_conditional_response(request, etag=etag) or HttpResponse(png, content_type="image/png")
    response["ETag"] = etag
    patch_cache_control(response, public=True, max_age=CHART_MAX_AGE)
    return response


class ArchiveFeed(Feed):
    feed_type = Atom1Feed
    title = "Walter: what moved the most-followed stocks"
    subtitle = "One entry per market session."

    def link(self) -> str:
        return reverse("newsletters:archive")

    def items(self) -> QuerySet[Issue]:
        return archived_issues()[:50]

    def item_title(self, item: Issue) -> str:
        return f"Session {item.date.isoformat()}" + (" (DEMO DATA)" if item.demo else "")

    def item_description(self, item: Issue) -> str:
        return f"The market view for the session of {item.date.isoformat()}."

    def item_link(self, item: Issue) -> str:
        return reverse("newsletters:archive-day", kwargs={"date": item.date.isoformat()})

    def item_updateddate(self, item: Issue) -> dt.datetime:
        return item.created_at
