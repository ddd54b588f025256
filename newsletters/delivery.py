"""The delivery stage: plan one Delivery per subscriber, then render, archive and send in batches.

A Delivery moves pending → sending → sent | failed | skipped. A batch is claimed (sending) before any of it is
handed to the email backend and marked sent after, so a crash leaves at most that batch ambiguous, and a rerun
never sends a subscriber the same issue twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.mail import get_connection
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from subscriptions.links import preferences_url, unsubscribe_url
from subscriptions.models import Subscriber
from subscriptions.selectors import subscribers_receiving, symbols_by_subscriber

from .archive import archive_write
from .compose import IssueContent, PersonalLinks, email_compose
from .links import view_url
from .messages import message_build, message_id_for
from .models import Delivery, Issue

logger = logging.getLogger("walter.delivery")

MAX_ATTEMPTS = 3
SENDABLE = Q(status=Delivery.Status.PENDING) | Q(
    status=Delivery.Status.FAILED, retryable=True, attempts__lt=MAX_ATTEMPTS
)


@dataclass
class DeliveryStage:
    planned: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    ambiguous: int = 0
    errors: dict[str, str] = field(default_factory=dict)


def issue_ensure(*, day: dt.date, demo: bool) -> Issue:
    issue, created = Issue.objects.get_or_create(date=day, defaults={"demo": demo})
    if not created and issue.demo != demo:
        issue.demo = demo
        issue.save(update_fields=["demo"])
    return issue


def deliveries_plan(*, issue: Issue) -> int:
    """One Delivery row per confirmed subscriber for the issue, created in bulk; returns how many are new."""
    planned = set(Delivery.objects.filter(issue=issue).values_list("subscriber_id", flat=True))
    new = [
        Delivery(issue=issue, subscriber_id=sid)
        for sid in subscribers_receiving().values_list("id", flat=True).iterator(chunk_size=5000)
        if sid not in planned
    ]
    Delivery.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
    return len(new)


def _claim_batch(issue: Issue, size: int) -> list[Delivery]:
    with transaction.atomic():
        candidates = Delivery.objects.filter(issue=issue).filter(SENDABLE).order_by("id")
        if db_connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("id", flat=True)[:size])
        if not ids:
            return []
        now = timezone.now()
        Delivery.objects.filter(id__in=ids).update(
            status=Delivery.Status.SENDING, sending_at=now, attempts=F("attempts") + 1, error=""
        )
    return list(Delivery.objects.filter(id__in=ids).select_related("subscriber").order_by("id"))


def deliveries_send(
    *,
    issue: Issue,
    content: IssueContent,
    limit: int | None = None,
    batch_size: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> DeliveryStage:
    """Send every sendable Delivery of ``issue`` (at most ``limit``); a failing subscriber never stops the others."""
    stage = DeliveryStage()
    stage.ambiguous = Delivery.objects.filter(issue=issue, status=Delivery.Status.SENDING).count()
    batch_size = batch_size or settings.DELIVERY_BATCH_SIZE
    remaining = limit if limit is not None else float("inf")
    connection = get_connection()
    while remaining > 0:
        batch = _claim_batch(issue, int(min(batch_size, remaining)))
        if not batch:
            break
        remaining -= len(batch)
        _send_batch(batch, issue, content, connection, stage)
        if on_progress:
            on_progress(len(batch))
    return stage


def _send_batch(batch: list[Delivery], issue: Issue, content: IssueContent, connection, stage: DeliveryStage) -> None:
    symbols = symbols_by_subscriber([d.subscriber_id for d in batch if d.subscriber_id])
    now = timezone.now
    connection.open()
    try:
        for delivery in batch:
            subscriber = delivery.subscriber
            if subscriber is None or subscriber.status != Subscriber.Status.ACTIVE:
                reason = "subscriber erased" if subscriber is None else f"subscriber is {subscriber.status}"
                _finish(delivery, Delivery.Status.SKIPPED, error=reason)
                stage.skipped += 1
                continue
            wanted = symbols.get(subscriber.id, [])
            if not wanted:
                _finish(delivery, Delivery.Status.SKIPPED, error="follows no tickers")
                stage.skipped += 1
                continue
            token = str(delivery.token)
            try:
                links = PersonalLinks(
                    view=view_url(token),
                    preferences=preferences_url(subscriber.id),
                    unsubscribe=unsubscribe_url(subscriber.id),
                )
                composed = email_compose(content=content, symbols=wanted, email=subscriber.email, links=links)
                message = message_build(
                    composed=composed, to=subscriber.email, token=token, unsubscribe_url=links.unsubscribe
                )
                mime = message.message().as_bytes()
                delivery.archive_key = archive_write(day=issue.date, token=token, html=composed.html, mime=mime)
                delivery.email = subscriber.email
                delivery.symbols = wanted
            except Exception as exc:  # a subscriber whose email cannot be built is recorded, not fatal
                logger.exception("composing delivery %s failed", delivery.pk)
                _finish(delivery, Delivery.Status.FAILED, error=f"compose/archive: {exc}", retryable=True)
                stage.failed += 1
                stage.errors[token] = str(exc)
                continue
            try:
                sent = connection.send_messages([message])
            except Exception as exc:
                logger.warning("sending delivery %s failed: %s", delivery.pk, exc)
                _finish(delivery, Delivery.Status.FAILED, error=f"send: {exc}", retryable=True)
                stage.failed += 1
                stage.errors[token] = str(exc)
                continue
            if not sent:
                _finish(delivery, Delivery.Status.FAILED, error="the email backend did not accept the message")
                stage.failed += 1
                continue
            status = getattr(message, "anymail_status", None)
            delivery.message_id = (status and status.message_id) or message_id_for(token)
            delivery.sent_at = now()
            _finish(delivery, Delivery.Status.SENT)
            stage.sent += 1
    finally:
        connection.close()
        for delivery in batch:
            if delivery.status == Delivery.Status.SENDING:  # never handed to the backend: safe to send later
                delivery.status = Delivery.Status.PENDING
        Delivery.objects.bulk_update(
            batch,
            ["status", "error", "retryable", "email", "symbols", "message_id", "archive_key", "sent_at", "updated_at"],
            batch_size=1000,
        )


def _finish(delivery: Delivery, status: str, *, error: str = "", retryable: bool = False) -> None:
    delivery.status = status
    delivery.error = error[:2000]
    delivery.retryable = retryable
    delivery.updated_at = timezone.now()
