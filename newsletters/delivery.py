"""The delivery stage: plan one Delivery per subscriber, then render, archive and send in batches.

A Delivery moves pending → claimed → sending → sent | failed | skipped. A batch is claimed (nothing of it handed
over yet: a crash returns it to pending); its messages are marked sending in windows of the sender's concurrency
right before they are handed to the email backend, and recorded two windows later. So a crash leaves at most two
windows ambiguous, a rerun never sends a subscriber the same issue twice, and a subscriber's change of mind wins
until the moment their message is handed over.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Q
from django.db.models.constants import OnConflict
from django.utils import timezone

from subscriptions.links import preferences_url, unsubscribe_url
from subscriptions.models import Subscriber
from subscriptions.selectors import follows_by_subscriber, subscribers_receiving
from walter_site.redaction import redact

from . import stopping
from .archive import archive_delete, archive_write
from .compose import IssueContent, PersonalLinks, email_compose
from .links import view_url
from .messages import message_build, message_id_for
from .models import Delivery, Issue
from .selectors import SENDABLE, deliveries_ambiguous
from .sending import FAILED, NOT_SENT, REJECTED, SENT, Outcome, Sender
from .stopping import StopFlag

logger = logging.getLogger("walter.delivery")


@dataclass
class DeliveryStage:
    planned: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    ambiguous: int = 0
    #: Tokens of the deliveries left "sending" by a run that was killed: maybe sent, so not sent again by default.
    ambiguous_tokens: list[str] = field(default_factory=list)
    #: Why sending stopped early (the account refused to send); empty when it did not.
    stopped: str = ""
    #: Why this run stopped handing out messages (a signal, a worker shutting down); empty when it did not.
    interrupted: str = ""
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


def _claim_batch(issue: Issue, size: int, only: list[int] | None, started: dt.datetime) -> list[Delivery]:
    """Mark up to ``size`` sendable deliveries as claimed and return them: two statements, one transaction.

    Claimed is not ambiguous: nothing of a claimed delivery has been handed over, so a crash simply leaves it for
    the next run (which returns it to pending). A redelivered task (``only``) may take claimed rows again: the
    compare-and-set that marks a window as sending lets exactly one holder send each of them.
    """
    sendable = SENDABLE | Q(status=Delivery.Status.CLAIMED) if only is not None else SENDABLE
    with transaction.atomic():
        candidates = (
            Delivery.objects.filter(issue=issue)
            .filter(sendable)
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
        if batch:
            # Stamped at the claim too, so one that fails before its window (composing) waits for the next run.
            now = timezone.now()
            Delivery.objects.filter(id__in=[d.id for d in batch]).update(status=Delivery.Status.CLAIMED, sending_at=now)
    for delivery in batch:
        delivery.status = delivery.held = Delivery.Status.CLAIMED
        delivery.sending_at = now
    return batch


def deliveries_release_claimed(*, issue: Issue) -> int:
    """Claimed deliveries of a run that is gone (killed before handing them over) become pending again."""
    return Delivery.objects.filter(issue=issue, status=Delivery.Status.CLAIMED).update(status=Delivery.Status.PENDING)


def deliveries_send(
    *,
    issue: Issue,
    content: IssueContent,
    limit: int | None = None,
    batch_size: int | None = None,
    only: list[int] | None = None,
    sender: Sender | None = None,
    on_progress: Callable[[int], None] | None = None,
    stop: StopFlag | None = None,
    charts_written: set[tuple[str, str]] | None = None,
) -> DeliveryStage:
    """Send every sendable Delivery of ``issue`` (at most ``limit``, or only the ids in ``only``).

    Batches are claimed, then composed, archived and handed over in windows of the sender's concurrency. One
    statement per window records the outcomes of the window before last and marks this window as sending, but
    only the deliveries whose subscriber is still active at that moment: so at most two windows are ever
    "sending" (ambiguous after a kill), and an unsubscribe, pause, suppression or erase wins over the run until the
    very moment of hand-over. ``stop`` (default: the process's flag, set by SIGTERM) stops handing out windows; what
    is with the backend finishes and is recorded. A failing subscriber never stops the others; an account that
    stops taking messages stops the run.
    """
    stop = stopping.stop if stop is None else stop
    stage = DeliveryStage()
    ambiguous = deliveries_ambiguous(issue=issue)
    stage.ambiguous = len(ambiguous)
    stage.ambiguous_tokens = [str(d.token) for d in ambiguous]
    batch_size = batch_size or settings.DELIVERY_BATCH_SIZE
    remaining = limit if limit is not None else float("inf")
    own_sender = sender is None
    sender = sender or Sender(stop=stop)
    started = timezone.now()
    flow = _Flow(
        issue=issue,
        content=content,
        sender=sender,
        stage=stage,
        stop=stop,
        on_progress=on_progress,
        charts_written=charts_written,
    )
    try:
        while remaining > 0 and not sender.stopped and not stop:
            batch = _claim_batch(issue, int(min(batch_size, remaining)), only, started)
            if not batch:
                break
            remaining -= len(batch)
            flow.send_batch(batch)
    finally:
        flow.finish()
        if own_sender:
            sender.close(wait=not flow.abandoned)
    stage.stopped = sender.stopped
    stage.interrupted = stop.reason if stop else ""
    return stage


class _Flow:
    """The windows of one deliveries_send: composed, marked sending, handed over, then recorded two windows later."""

    def __init__(
        self,
        *,
        issue: Issue,
        content: IssueContent,
        sender: Sender,
        stage: DeliveryStage,
        stop: StopFlag,
        on_progress: Callable[[int], None] | None,
        charts_written: set[tuple[str, str]] | None = None,
    ) -> None:
        self.issue, self.content, self.sender, self.stage, self.stop = issue, content, sender, stage, stop
        self.on_progress = on_progress
        self.window_size = sender.concurrency
        self.claimed: dict[int, Delivery] = {}  # claimed, neither finished nor marked sending yet
        self.done: list[Delivery] = []  # finished, outcome not yet written
        self.in_flight: collections.deque[list[tuple[Delivery, Future[Outcome]]]] = collections.deque()
        self.abandoned = False  # messages still with the backend after the stop's grace period
        # The issue's charts already archived (key, digest): once per send, or once per worker process and issue.
        self.charts_written: set[tuple[str, str]] = set() if charts_written is None else charts_written

    def halted(self) -> bool:
        return bool(self.stop) or bool(self.sender.stopped)

    def send_batch(self, batch: list[Delivery]) -> None:
        self.claimed.update((d.id, d) for d in batch)
        symbols, holdings = follows_by_subscriber([d.subscriber_id for d in batch if d.subscriber_id])
        window: list[tuple[Delivery, EmailMessage]] = []
        for delivery in batch:
            if self.halted():
                return  # what was not handed over goes back to pending in finish()
            message = self._compose(delivery, symbols, holdings)
            if message is not None:
                window.append((delivery, message))
            if len(window) == self.window_size:
                self._hand_over(window)
                window = []
        if window and not self.halted():
            self._hand_over(window)

    def _finished(self, delivery: Delivery) -> None:
        self.claimed.pop(delivery.id, None)
        self.done.append(delivery)

    def _compose(
        self, delivery: Delivery, symbols: dict[int, list[str]], holdings: dict[int, dict[str, Decimal]]
    ) -> EmailMessage | None:
        """The message of one delivery, archived; None when there is nothing to send (recorded as such)."""
        stage = self.stage
        subscriber = delivery.subscriber
        # A quick look at the row read with the batch; the binding check is the one made when marking the window.
        if subscriber is None or subscriber.status != Subscriber.Status.ACTIVE:
            reason = "subscriber erased" if subscriber is None else f"subscriber is {subscriber.status}"
            _finish(delivery, Delivery.Status.SKIPPED, error=reason)
            stage.skipped += 1
            self._finished(delivery)
            return None
        wanted = symbols.get(subscriber.id, [])
        if not wanted:
            _finish(delivery, Delivery.Status.SKIPPED, error="follows no tickers")
            stage.skipped += 1
            self._finished(delivery)
            return None
        token = str(delivery.token)
        try:
            links = PersonalLinks(
                view=view_url(token),
                preferences=preferences_url(subscriber.id),
                unsubscribe=unsubscribe_url(subscriber.id),
            )
            composed = email_compose(
                content=self.content,
                symbols=wanted,
                email=subscriber.email,
                links=links,
                holdings=holdings.get(subscriber.id),
            )
            message = message_build(
                composed=composed, to=subscriber.email, token=token, unsubscribe_url=links.unsubscribe
            )
            # Archived before it is handed over: what the archive holds is exactly what was sent.
            delivery.archive_key = archive_write(
                day=self.issue.date,
                token=token,
                html=composed.html,
                mime=message.message().as_bytes(),
                images=composed.images,
                charts_written=self.charts_written,
            )
            delivery.email = subscriber.email
            delivery.symbols = wanted
        except Exception as exc:  # a subscriber whose email cannot be built is recorded, not fatal
            logger.exception("composing delivery %s failed", token)
            _finish(delivery, Delivery.Status.FAILED, error=f"compose/archive: {exc}", retryable=True)
            stage.failed += 1
            stage.errors[token] = str(exc)
            self._finished(delivery)
            return None
        return message

    def _hand_over(self, window: list[tuple[Delivery, EmailMessage]]) -> None:
        # At most two windows with the backend: the one before last is recorded in the statement marking this one.
        while len(self.in_flight) >= 2:
            if not self._wait(self.in_flight[0]):
                return  # stopped while waiting: finish() waits for it, within the grace period
            self._collect(self.in_flight.popleft())
        if self.halted():
            return
        outcomes, self.done = self.done, []
        marked = self._settle(outcomes, [d for d, _ in window])
        handed = []
        for delivery, message in window:
            self.claimed.pop(delivery.id, None)
            if delivery.id in marked:
                delivery.status = delivery.held = Delivery.Status.SENDING
                handed.append((delivery, self.sender.submit(message)))
                continue
            # The subscriber unsubscribed, paused, was suppressed or erased since the batch was read (or another
            # worker holds the row): nothing goes out. The copy archived for them goes once the skip is written,
            # not before: a row another worker holds keeps its copy (same key), as the guarded write will not match.
            delivery.unsent_archive_key, delivery.archive_key = delivery.archive_key, ""
            delivery.email, delivery.symbols = "", []
            _finish(delivery, Delivery.Status.SKIPPED, error="subscriber no longer active when its turn came")
            self.stage.skipped += 1
            self.done.append(delivery)
        self.in_flight.append(handed)

    def _wait(self, handed: list[tuple[Delivery, Future[Outcome]]]) -> bool:
        """Wait until every message of the window has an outcome (True), or a stop is asked (False)."""
        futures = [future for _, future in handed]
        while True:
            _, pending = futures_wait(futures, timeout=0.25)
            if not pending:
                return True
            if self.halted():
                return False

    def _collect(self, handed: list[tuple[Delivery, Future[Outcome]]], timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for delivery, future in handed:
            try:
                outcome = future.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                if future.cancel():  # still waiting for a connection: never handed over
                    _record(delivery, Outcome(NOT_SENT, error="not sent: stopped"), self.stage)
                    self.done.append(delivery)
                    continue
                # Still with the backend when the grace period ran out: it stays "sending", ambiguous.
                self.abandoned = True
                logger.warning("delivery %s still in flight when sending stopped", delivery.token)
                continue
            _record(delivery, outcome, self.stage)
            self.done.append(delivery)
        if self.on_progress and handed:
            self.on_progress(len(handed))

    def _settle(self, outcomes: list[Delivery], mark: list[Delivery]) -> set[int]:
        # Rarely more than two windows' worth; a batch skipped whole goes in slices: each row's CASE branches are
        # searched once per updated row, so one statement for thousands of rows would cost rows squared.
        while len(outcomes) > SETTLE_MAX_ROWS:
            self._settle(outcomes[:SETTLE_MAX_ROWS], [])
            outcomes = outcomes[SETTLE_MAX_ROWS:]
        written = _write_and_mark(outcomes, mark)
        for delivery in outcomes:
            if delivery.id not in written:
                continue
            if getattr(delivery, "unsent_archive_key", ""):
                _archive_discard(delivery.unsent_archive_key, delivery)
            if written[delivery.id] is None:
                # Erased while its message was in flight: the erase may have come before the copy was written.
                _archive_discard(delivery.archive_key, delivery)
        return {d.id for d in mark if d.id in written}

    def finish(self) -> None:
        """Wait for what is with the backend (bounded after a stop), record it, and return the rest to pending."""
        grace = settings.DELIVERY_STOP_GRACE if self.halted() else None
        started = time.monotonic()
        while self.in_flight:
            left = None if grace is None else max(0.0, grace - (time.monotonic() - started))
            self._collect(self.in_flight.popleft(), timeout=left)
        for delivery in self.claimed.values():
            # Never handed over: sendable again. Its archived copy stays where an erase will find it.
            delivery.email, delivery.symbols = "", []
            _finish(delivery, Delivery.Status.PENDING, error=delivery.error, retryable=delivery.retryable)
            self.done.append(delivery)
        self.claimed.clear()
        outcomes, self.done = self.done, []
        if outcomes:
            self._settle(outcomes, [])


def _archive_discard(key: str, delivery: Delivery) -> None:
    if key:
        try:
            archive_delete(key)
        except Exception:  # the erase path deletes by token too; a storage hiccup must not stop the run
            logger.exception("could not delete the archived copy of delivery %s", delivery.token)


SETTLE_MAX_ROWS = 500
OUTCOME_FIELDS = ["status", "error", "retryable", "message_id", "sent_at"]
#: Emptied by an erase: an outcome written afterwards must not bring them back.
PERSONAL_FIELDS = ["email", "symbols", "archive_key"]


def _write_and_mark(outcomes: list[Delivery], mark: list[Delivery]) -> dict[int, int | None]:
    """One UPDATE … RETURNING: write ``outcomes`` and mark ``mark`` as sending; returns the rows it changed, each
    with its subscriber id (None: erased).

    A delivery is marked only if it is still claimed and its subscriber is active at this moment, in SQL: what the
    subscriber wished a millisecond ago wins over the batch read earlier. An outcome is written only over the
    status this run holds (claimed or sending), and never writes address, tickers or archive key back into a row an
    erase emptied (its subscriber is gone): those rows come back without a subscriber, for the caller to remove
    the archived copy.
    """
    if not outcomes and not mark:
        return {}
    conn = db_connection
    quote = conn.ops.quote_name
    meta = Delivery._meta
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    subscriber_id = quote(meta.get_field("subscriber").column)
    status_col = quote(meta.get_field("status").column)
    now = timezone.now()

    def param(name: str) -> str:
        # PostgreSQL types a CASE branch of bare parameters as text: say what each one is.
        if conn.vendor == "postgresql":
            return f"CAST(%s AS {meta.get_field(name).db_type(conn)})"
        return "%s"

    def prep(name: str, value: object) -> object:
        return meta.get_field(name).get_db_prep_save(value, conn)

    assignments: list[str] = []
    params: list[object] = []

    def case(name: str, rows: list[tuple[int, object]], fallback: str) -> str:
        parts = []
        for row_id, value in rows:
            parts.append(f"WHEN %s THEN {param(name)}")
            params.extend([row_id, prep(name, value)])
        return f"CASE {pk} {' '.join(parts)} ELSE {fallback} END" if parts else fallback

    for name in OUTCOME_FIELDS:
        column = quote(meta.get_field(name).column)
        rows = [(d.pk, getattr(d, meta.get_field(name).attname)) for d in outcomes]
        if name == "status":
            rows += [(d.pk, Delivery.Status.SENDING) for d in mark]
        elif name == "error":
            rows += [(d.pk, "") for d in mark]
        assignments.append(f"{column} = {case(name, rows, column)}")
    for name in PERSONAL_FIELDS:
        if not outcomes:
            break
        column = quote(meta.get_field(name).column)
        empty = param(name)
        params.append(prep(name, [] if name == "symbols" else ""))
        kept = case(name, [(d.pk, getattr(d, name)) for d in outcomes], column)
        assignments.append(f"{column} = CASE WHEN {subscriber_id} IS NULL THEN {empty} ELSE {kept} END")
    if mark:
        in_mark = ", ".join(["%s"] * len(mark))
        sending_at, attempts = quote(meta.get_field("sending_at").column), quote(meta.get_field("attempts").column)
        assignments.append(
            f"{sending_at} = CASE WHEN {pk} IN ({in_mark}) THEN {param('sending_at')} ELSE {sending_at} END"
        )
        params.extend([*(d.pk for d in mark), prep("sending_at", now)])
        assignments.append(f"{attempts} = CASE WHEN {pk} IN ({in_mark}) THEN {attempts} + 1 ELSE {attempts} END")
        params.extend(d.pk for d in mark)
    assignments.append(f"{quote(meta.get_field('updated_at').column)} = {param('updated_at')}")
    params.append(prep("updated_at", now))

    conditions: list[str] = []
    where_params: list[object] = []
    for held in (Delivery.Status.CLAIMED, Delivery.Status.SENDING):
        ids = [d.pk for d in outcomes if d.held == held]
        if ids:
            conditions.append(f"({pk} IN ({', '.join(['%s'] * len(ids))}) AND {status_col} = %s)")
            where_params.extend([*ids, held])
    if mark:
        subscribers = Subscriber._meta
        people = quote(subscribers.db_table)
        conditions.append(
            f"({pk} IN ({', '.join(['%s'] * len(mark))}) AND {status_col} = %s AND EXISTS "
            f"(SELECT 1 FROM {people} WHERE {people}.{quote(subscribers.pk.column)} = {table}.{subscriber_id} "
            f"AND {people}.{quote(subscribers.get_field('status').column)} = %s))"
        )
        where_params.extend([*(d.pk for d in mark), Delivery.Status.CLAIMED, Subscriber.Status.ACTIVE])
    # Every row the statement may touch, by primary key, ahead of the conditions: otherwise PostgreSQL may intersect
    # each condition's few ids with the status index, whose entries for rows that went through "claimed" and
    # "sending" pile up during a large run until vacuum (336,000 of them, 25 ms a statement, half a worker's time).
    rows = list(dict.fromkeys([*(d.pk for d in outcomes), *(d.pk for d in mark)]))
    sql = (
        f"UPDATE {table} SET {', '.join(assignments)} "
        f"WHERE {pk} IN ({', '.join(['%s'] * len(rows))}) AND ({' OR '.join(conditions)}) "
        f"RETURNING {pk}, {subscriber_id}"
    )
    with conn.cursor() as cursor:
        cursor.execute(sql, params + rows + where_params)
        returned = cursor.fetchall()
    return dict(returned)


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
