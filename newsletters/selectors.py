"""Reads of the newsletters app: what is stored, never a write, never a call to an outside system."""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, Q

from markets.providers import get_provider
from markets.selectors import ticker_snapshots

from .analysts import Analyst, get_analyst
from .compose import IssueContent, issue_content_build
from .models import Analysis, Delivery, Issue

MAX_ATTEMPTS = 3
SENDABLE = Q(status=Delivery.Status.PENDING) | Q(
    status=Delivery.Status.FAILED, retryable=True, attempts__lt=MAX_ATTEMPTS
)
# Not yet at an end. Claimed counts: a worker holds the batch and is composing it.
UNFINISHED = (Delivery.Status.PENDING, Delivery.Status.CLAIMED, Delivery.Status.SENDING)


def stored_analyses(*, day: dt.date, symbols: list[str], analyst: Analyst | None = None) -> dict[str, Analysis]:
    analyst = analyst or get_analyst()
    rows = Analysis.objects.filter(
        date=day, ticker__symbol__in=symbols, model=analyst.model, prompt_version=analyst.prompt_version
    ).select_related("ticker")
    return {a.ticker.symbol: a for a in rows}


def deliveries_ambiguous(*, issue: Issue) -> list[Delivery]:
    return list(Delivery.objects.filter(issue=issue, status=Delivery.Status.SENDING).order_by("id"))


def deliveries_unfinished(*, issue: Issue) -> dict[str, int]:
    """How many deliveries of ``issue`` have not reached an end, by status (failed: only those a rerun retries)."""
    rows = (
        Delivery.objects.filter(issue=issue)
        .filter(Q(status__in=UNFINISHED) | SENDABLE)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    return dict(rows)


def issue_content_stored(*, day: dt.date, symbols: list[str]) -> IssueContent:
    """The issue's shared content (cards, charts) from the stored bars and analyses: nothing fetched, nobody asked."""
    snapshots = ticker_snapshots(symbols, day, demo=get_provider().is_demo)
    analyses = stored_analyses(day=day, symbols=symbols)
    return issue_content_build(day=day, snapshots=snapshots, analyses=analyses)
