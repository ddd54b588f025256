"""Sending on demand: staff resends and test copies that are never recorded (one subscriber's issue now: jobs.py)."""

from __future__ import annotations

import datetime as dt

from django.core.mail import get_connection

from markets.providers import get_provider
from markets.selectors import ticker_snapshots
from markets.services import market_data_update
from subscriptions.links import unsubscribe_url
from subscriptions.models import Subscriber
from subscriptions.selectors import symbols_by_subscriber

from .analysis import analyses_ensure
from .compose import IssueContent, issue_content_build
from .delivery import DeliveryStage, deliveries_requeue, deliveries_send
from .messages import message_build
from .models import Delivery, Issue
from .preview import preview_email


class NothingToSend(Exception):
    """The request cannot be met (the subscriber is not active, or already has the issue); the message says why."""


def issue_content_for(*, day: dt.date, symbols: list[str], refresh: bool = False) -> IssueContent:
    """What the emails of ``day`` showing ``symbols`` are built from, fetching and analysing what is missing."""
    provider = get_provider()
    if refresh:
        market_data_update(day=day, symbols=symbols, provider=provider)
    snapshots = ticker_snapshots(symbols, day, demo=provider.is_demo)
    analyses, _ = analyses_ensure(day=day, snapshots=snapshots)
    return issue_content_build(day=day, snapshots=snapshots, analyses=analyses)


def deliveries_resend(*, deliveries: list[Delivery]) -> dict[str, DeliveryStage]:
    """Staff chose to send these again, whatever their state: a second copy may reach someone who has one."""
    stages = {}
    by_issue: dict[Issue, list[Delivery]] = {}
    for delivery in deliveries:
        by_issue.setdefault(delivery.issue, []).append(delivery)
    for issue, chosen in by_issue.items():
        deliveries_requeue(deliveries=chosen)
        followed = symbols_by_subscriber([d.subscriber_id for d in chosen if d.subscriber_id])
        symbols = sorted({symbol for symbols in followed.values() for symbol in symbols})
        content = issue_content_for(day=issue.date, symbols=symbols)
        stages[issue.date.isoformat()] = deliveries_send(issue=issue, content=content, only=[d.id for d in chosen])
    return stages


def preview_send(*, subscriber: Subscriber, day: dt.date, to: str) -> None:
    """The email ``subscriber`` gets (or would get) for ``day``, sent to ``to`` marked as a test copy; not recorded."""
    composed = preview_email(subscriber=subscriber, day=day)
    message = message_build(
        composed=composed,
        to=to,
        token=f"test-{subscriber.pk}-{day:%Y%m%d}",
        unsubscribe_url=unsubscribe_url(subscriber.pk),
        test_copy=True,
    )
    message.esp_extra = {}
    get_connection().send_messages([message])
