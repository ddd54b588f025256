"""The public archive: one page per past session, an index and an Atom feed. No subscriber data ever."""

from __future__ import annotations

import datetime as dt

from django.contrib.syndication.views import Feed
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.feedgenerator import Atom1Feed
from django.views.decorators.cache import cache_control

from markets.models import Ticker
from markets.selectors import ticker_snapshots

from .models import Delivery, Issue
from .selectors import stored_analyses

TOP_TICKERS = 20
#: Below this a follower count could point at one person, so it is not shown.
MIN_SHOWN_FOLLOWERS = 3


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


@cache_control(public=True, max_age=86400)
def archive_day(request: HttpRequest, date: str) -> HttpResponse:
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise Http404("No such session") from None
    issue = archived_issues().filter(date=day).first()
    if issue is None:
        raise Http404("No archived issue for that session")
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
        }
        for t, n in tickers
    ]
    return render(request, "newsletters/archive/day.html", {"issue": issue, "rows": rows})


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
