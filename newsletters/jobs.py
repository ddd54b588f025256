"""On-demand sends ("send me the latest issue now"): one job path for the page, the admin and send_newsletter.

A job row is created (queued), then run by a worker, or in this process without a broker: rendering, then sent or
failed with the reason. The page polls the row. Two guards keep it to one copy: the subscriber's row is locked
while a job is created, so a second click finds the first job instead of making another; and the Delivery is
claimed like any batch (``SELECT … FOR UPDATE SKIP LOCKED``), so a send-now during the daily run sends one copy,
whoever claims it first.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from markets import calendar
from markets.providers import get_provider
from subscriptions.models import Subscriber

from .delivery import deliveries_send, issue_ensure
from .dispatch import broker_configured
from .models import Delivery, SendJob
from .services import NothingToSend, issue_content_for

logger = logging.getLogger("walter.jobs")

#: How long a job waits for a copy someone else (the daily run) is sending, before saying it cannot tell.
OTHER_HOLDER_WAIT = 60.0


class AlreadyReceived(NothingToSend):
    """The subscriber has this issue; they may ask again explicitly."""


class TooManyRequests(NothingToSend):
    pass


def send_job_create(
    *, subscriber: Subscriber, day: dt.date | None = None, again: bool = False, source: str = "page"
) -> SendJob:
    """Queue a send of the issue of ``day`` (default: the latest session) to ``subscriber``, or return the job
    already under way for it. Raises NothingToSend (or a subclass) with the reason when nothing will be sent."""
    day = day or calendar.latest_completed_session()
    with transaction.atomic():
        # Locked until commit: two concurrent requests for one subscriber are decided one after the other.
        locked = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        if locked.status != Subscriber.Status.ACTIVE:
            raise NothingToSend(f"{locked.email} is {locked.get_status_display().lower()}: nothing sent")
        if not locked.tickers.exists():
            raise NothingToSend(f"{locked.email} follows no tickers: nothing sent")
        under_way = SendJob.objects.filter(subscriber=locked, day=day, status__in=SendJob.UNFINISHED).first()
        if under_way is not None:
            return under_way
        if not again:
            sent = Delivery.objects.filter(issue__date=day, subscriber=locked, status=Delivery.Status.SENT).first()
            if sent is not None:
                raise AlreadyReceived(
                    f"{locked.email} already received the issue of {day.isoformat()} "
                    f"({sent.sent_at:%Y-%m-%d %H:%M} UTC)"
                )
        limit = settings.SEND_NOW_LIMIT_PER_DAY
        recent = SendJob.objects.filter(subscriber=locked, created_at__gte=timezone.now() - dt.timedelta(days=1))
        if recent.count() >= limit:
            raise TooManyRequests(f"at most {limit} sends a day: try again tomorrow")
        job = SendJob.objects.create(subscriber=locked, day=day, again=again, source=source)
    # After the commit: the worker must find the row.
    if broker_configured():
        from .tasks import send_job

        send_job.delay(job.pk)
    else:
        send_job_run(job_id=job.pk)
        job.refresh_from_db()
    return job


def send_job_run(*, job_id: int) -> SendJob | None:
    """Run a queued job (or one whose worker died, once older than the task time limit): safe to run twice, the
    second run does nothing."""
    abandoned = timezone.now() - dt.timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    with transaction.atomic():
        job = (
            SendJob.objects.select_for_update(skip_locked=True)
            .filter(pk=job_id)
            .filter(Q(status=SendJob.Status.QUEUED) | Q(status=SendJob.Status.RENDERING, started_at__lt=abandoned))
            .first()
        )
        if job is None:
            return None
        job.status, job.started_at = SendJob.Status.RENDERING, timezone.now()
        job.save(update_fields=["status", "started_at"])
    try:
        status, reason = _send(job)
    except Exception as exc:  # the reader sees the reason on the page, never a stuck "rendering"
        logger.exception("send job %s failed", job.token)
        status, reason = SendJob.Status.FAILED, f"{type(exc).__name__}: {exc}"
    job.status, job.reason, job.finished_at = status, reason[:2000], timezone.now()
    job.save(update_fields=["status", "reason", "finished_at", "delivery"])
    return job


def _send(job: SendJob) -> tuple[str, str]:
    subscriber = Subscriber.objects.get(pk=job.subscriber_id)
    if subscriber.status != Subscriber.Status.ACTIVE:
        return SendJob.Status.FAILED, f"the subscription is {subscriber.get_status_display().lower()}"
    symbols = sorted(subscriber.tickers.values_list("symbol", flat=True))
    if not symbols:
        return SendJob.Status.FAILED, "no tickers followed"
    issue = issue_ensure(day=job.day, demo=get_provider().is_demo)
    delivery, _ = Delivery.objects.get_or_create(issue=issue, subscriber=subscriber)
    job.delivery = delivery
    # Conditional updates, never read-then-write: a copy being sent right now ("sending") is never reset.
    again = [Delivery.Status.FAILED, Delivery.Status.SKIPPED] + ([Delivery.Status.SENT] if job.again else [])
    Delivery.objects.filter(pk=delivery.pk, status__in=again).update(
        status=Delivery.Status.PENDING, retryable=True, attempts=0, error=""
    )
    # The web never spends the daily job's provider budget: a subscriber's click uses the stored market data; staff
    # (the command, the admin) may fetch the session's data first.
    content = issue_content_for(day=job.day, symbols=symbols, refresh=job.source != "page")
    if not any(s.has_data and not s.stale for s in content.snapshots.values()):
        return SendJob.Status.FAILED, f"the issue of {job.day.isoformat()} is not ready yet: try again later"
    stage = deliveries_send(issue=issue, content=content, only=[delivery.id])
    delivery.refresh_from_db()
    deadline = time.monotonic() + OTHER_HOLDER_WAIT
    while delivery.status == Delivery.Status.SENDING and time.monotonic() < deadline:
        time.sleep(0.5)  # the daily run claimed it first: its outcome is this job's
        delivery.refresh_from_db()
    if delivery.status == Delivery.Status.SENT:
        return SendJob.Status.SENT, "" if stage.sent else "sent by the daily run"
    if delivery.status == Delivery.Status.SENDING:
        return SendJob.Status.FAILED, "another send of this issue is still in flight; not sent twice"
    return SendJob.Status.FAILED, stage.stopped or delivery.error or "not sent"
