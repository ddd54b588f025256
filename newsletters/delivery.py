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
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
from django.db.models.constants import OnConflict
from django.utils import timezone

from subscriptions.links import preferences_url, unsubscribe_url
from subscriptions.models import Subscriber
from subscriptions.selectors import subscribers_receiving, symbols_by_subscriber
from walter_site.redaction import redact

from .archive import archive_write
from .compose import IssueContent, PersonalLinks, email_compose
from .links import view_url
from .messages import message_build, message_id_for
from .models import Delivery, Issue
from .sending import FAILED, NOT_SENT, REJECTED, SENT, Outcome, Sender

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
    #: Deliveries left "sending" by a run that stopped mid-batch: maybe sent, so not sent again by default.
    ambiguous_emails: list[str] = field(default_factory=list)
    #: Why sending stopped early (the account refused to send); empty when it did not.
    stopped: str = ""
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
    _insert_ignoring_conflicts(new)
    return len(new)


def _insert_ignoring_conflicts(deliveries: list[Delivery]) -> None:
    """Insert rows, skipping any (issue, subscriber) already planned by a concurrent run: one executemany.

    bulk_create would do the same, but Django cuts its statements at SQLite's old limit of 999 variables: 66 rows
    of this model a statement, 15 statements per 1,000 subscribers.
    """
    if not deliveries:
        return
    ops = db_connection.ops
    fields = [f for f in Delivery._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(ops.quote_name(f.column) for f in fields)
    values = ", ".join(["%s"] * len(fields))
    sql = (
        f"{ops.insert_statement(on_conflict=OnConflict.IGNORE)} {ops.quote_name(Delivery._meta.db_table)} "
        f"({columns}) VALUES ({values}) {ops.on_conflict_suffix_sql(fields, OnConflict.IGNORE, None, None)}"
    )
    rows = [[f.get_db_prep_save(f.pre_save(d, add=True), db_connection) for f in fields] for d in deliveries]
    with transaction.atomic(), db_connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def deliveries_ambiguous(*, issue: Issue) -> list[Delivery]:
    return list(
        Delivery.objects.filter(issue=issue, status=Delivery.Status.SENDING).select_related("subscriber").order_by("id")
    )


def deliveries_release_ambiguous(*, issue: Issue) -> int:
    """Make the in-flight deliveries of a stopped run sendable again (some may then arrive twice)."""
    return Delivery.objects.filter(issue=issue, status=Delivery.Status.SENDING).update(
        status=Delivery.Status.PENDING, error="released for resending: it may have been sent before"
    )


def deliveries_requeue(*, deliveries: list[Delivery]) -> int:
    """Staff asked to send these again: they go back to pending, whatever happened before."""
    return Delivery.objects.filter(id__in=[d.id for d in deliveries]).update(
        status=Delivery.Status.PENDING, retryable=True, attempts=0, error=""
    )


def _claim_batch(
    issue: Issue, size: int, only: list[int] | None, started: dt.datetime, finished: list[Delivery]
) -> list[Delivery]:
    """Record the ``finished`` batch, then mark up to ``size`` sendable deliveries as sending and return them.

    One transaction, three statements: the previous batch's outcomes, the selection, the update.
    """
    with transaction.atomic():
        if finished:
            _write_outcomes(finished)
        candidates = (
            Delivery.objects.filter(issue=issue)
            .filter(SENDABLE)
            # What failed in this run waits for the next one, rather than being hammered in a loop.
            .filter(Q(sending_at__isnull=True) | Q(sending_at__lt=started))
            .select_related("subscriber")
            .order_by("id")
        )
        if only is not None:
            candidates = candidates.filter(id__in=only)
        if db_connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        batch = list(candidates[:size])
        if not batch:
            return []
        now = timezone.now()
        Delivery.objects.filter(id__in=[d.id for d in batch]).update(
            status=Delivery.Status.SENDING, sending_at=now, attempts=F("attempts") + 1, error=""
        )
    for delivery in batch:
        delivery.status, delivery.sending_at, delivery.error = Delivery.Status.SENDING, now, ""
        delivery.attempts += 1
    return batch


def deliveries_send(
    *,
    issue: Issue,
    content: IssueContent,
    limit: int | None = None,
    batch_size: int | None = None,
    only: list[int] | None = None,
    sender: Sender | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> DeliveryStage:
    """Send every sendable Delivery of ``issue`` (at most ``limit``, or only the ids in ``only``).

    Each batch is claimed (sending), rendered, archived and handed to the sender one message at a time, so
    rendering overlaps sending; the batch is marked sent or failed once every message of it has an outcome. A
    failing subscriber never stops the others; an account that stops taking messages stops the run.
    """
    stage = DeliveryStage()
    ambiguous = deliveries_ambiguous(issue=issue)
    stage.ambiguous = len(ambiguous)
    stage.ambiguous_emails = [d.email or (d.subscriber.email if d.subscriber else "") for d in ambiguous]
    batch_size = batch_size or settings.DELIVERY_BATCH_SIZE
    remaining = limit if limit is not None else float("inf")
    own_sender = sender is None
    sender = sender or Sender()
    started = timezone.now()
    unsaved: list[Delivery] = []  # a batch sent but not yet recorded: recorded with the next claim, or at the end
    try:
        while remaining > 0 and not sender.stopped:
            batch = _claim_batch(issue, int(min(batch_size, remaining)), only, started, unsaved)
            unsaved = []
            if not batch:
                break
            remaining -= len(batch)
            unsaved = batch
            _send_batch(batch, issue, content, sender, stage)
            if on_progress:
                on_progress(len(batch))
    finally:
        if unsaved:
            with transaction.atomic():
                _write_outcomes(unsaved)
        if own_sender:
            sender.close()
    stage.stopped = sender.stopped
    return stage


def _send_batch(
    batch: list[Delivery], issue: Issue, content: IssueContent, sender: Sender, stage: DeliveryStage
) -> None:
    symbols = symbols_by_subscriber([d.subscriber_id for d in batch if d.subscriber_id])
    handed: list[tuple[Delivery, object]] = []
    try:
        for delivery in batch:
            if sender.stopped:
                break  # the rest of the batch was never handed over: back to pending below
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
                # Archived before it is handed over: what the archive holds is exactly what was sent.
                delivery.archive_key = archive_write(
                    day=issue.date, token=token, html=composed.html, mime=message.message().as_bytes()
                )
                delivery.email = subscriber.email
                delivery.symbols = wanted
            except Exception as exc:  # a subscriber whose email cannot be built is recorded, not fatal
                logger.exception("composing delivery %s failed", delivery.pk)
                _finish(delivery, Delivery.Status.FAILED, error=f"compose/archive: {exc}", retryable=True)
                stage.failed += 1
                stage.errors[token] = str(exc)
                continue
            handed.append((delivery, sender.submit(message)))
        for delivery, future in handed:
            _record(delivery, future.result(), stage)
    finally:
        # A message whose outcome was never read (the process is going down) may have been sent: it stays
        # ambiguous. One never handed to the backend is safe to send later.
        handed_ids = {d.id for d, _ in handed}
        for delivery in batch:
            if delivery.status == Delivery.Status.SENDING and delivery.id not in handed_ids:
                delivery.status = Delivery.Status.PENDING


OUTCOME_FIELDS = [
    "status",
    "error",
    "retryable",
    "email",
    "symbols",
    "message_id",
    "archive_key",
    "sent_at",
    "updated_at",
]


def _write_outcomes(batch: list[Delivery]) -> None:
    """One statement for the whole batch, inside the caller's transaction: a row per delivery, one executemany.

    Django's bulk_update builds a CASE expression per field over every row, which costs milliseconds per row at
    this size; the values here go through each field's own database preparation all the same.
    """
    fields = [Delivery._meta.get_field(name) for name in OUTCOME_FIELDS]
    quote = db_connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = f"UPDATE {quote(Delivery._meta.db_table)} SET {assignments} WHERE {quote(Delivery._meta.pk.column)} = %s"
    rows = [[f.get_db_prep_save(getattr(d, f.attname), db_connection) for f in fields] + [d.pk] for d in batch]
    with db_connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _record(delivery: Delivery, outcome: Outcome, stage: DeliveryStage) -> None:
    token = str(delivery.token)
    if outcome.status == SENT:
        delivery.message_id = outcome.message_id or message_id_for(token)
        delivery.sent_at = timezone.now()
        _finish(delivery, Delivery.Status.SENT)
        stage.sent += 1
    elif outcome.status == NOT_SENT:
        _finish(delivery, Delivery.Status.PENDING, error=outcome.error)
    elif outcome.status == REJECTED:
        _finish(delivery, Delivery.Status.FAILED, error=f"rejected: {outcome.error}", retryable=False)
        stage.failed += 1
        stage.errors[token] = outcome.error
    else:
        assert outcome.status == FAILED
        _finish(delivery, Delivery.Status.FAILED, error=f"send: {outcome.error}", retryable=True)
        stage.failed += 1
        stage.errors[token] = outcome.error


def _finish(delivery: Delivery, status: str, *, error: str = "", retryable: bool = False) -> None:
    delivery.status = status
    delivery.error = redact(error)[:2000]
    delivery.retryable = retryable
    delivery.updated_at = timezone.now()
