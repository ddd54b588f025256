"""Delivery past one machine: the daily run plans and enqueues batches, Celery workers send them.

The broker carries only ids (the issue, the deliveries, the run); the first worker to need the issue's shared content
builds it from the database and shares it through the cache, and each worker reuses it for every batch of the run. The Delivery rows stay the truth: a batch
handed out twice, or redelivered after its worker died, claims with ``SELECT … FOR UPDATE SKIP LOCKED`` and so
never sends what another holder has, nor anything already sent.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import operator
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from subscriptions.selectors import followed_symbols, symbols_by_subscriber

from .compose import IssueContent
from .delivery import DeliveryStage, deliveries_send
from .locks import LockHeld, exclusive
from .models import DailyRun, Delivery, Issue
from .selectors import SENDABLE, UNFINISHED, issue_content_stored
from .stopping import StopFlag

logger = logging.getLogger("walter.dispatch")


def broker_configured() -> bool:
    return bool(settings.CELERY_BROKER_URL)


# -- the run's side: plan → enqueue → wait ------------------------------------------------------------------------


def sendable_ids(*, issue: Issue, limit: int | None = None) -> list[int]:
    ids = Delivery.objects.filter(issue=issue).filter(SENDABLE).order_by("id").values_list("id", flat=True)
    return list(ids[:limit] if limit is not None else ids)


def batches_enqueue(*, issue: Issue, ids: list[int], run: DailyRun | None) -> int:
    """Queue ``ids`` in batches of ``DELIVERY_BATCH_SIZE``; returns how many batches."""
    from .tasks import deliver_batch  # the tasks module imports this one

    size = settings.DELIVERY_BATCH_SIZE
    for start in range(0, len(ids), size):
        deliver_batch.delay(issue.pk, ids[start : start + size], run.pk if run else None)
    return -(-len(ids) // size)


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unfinished: int = 0
    stopped: str = ""  # why the workers stopped sending (the account refused), when they did


# When the email account stops taking messages, the worker that saw it says so here (the shared cache): the
# other workers hand nothing more over for the issue, and the waiting run stops waiting. A new run clears it.
def _stop_key(issue_id: int) -> str:
    return f"walter:delivery-stopped:{issue_id}"


def sending_stopped(*, issue: Issue) -> str:
    return cache.get(_stop_key(issue.pk)) or ""


def sending_stop_clear(*, issue: Issue) -> None:
    cache.delete(_stop_key(issue.pk))


#: Beyond this many runs of consecutive ids, the ids are listed one by one.
ID_RUNS_MAX = 100


def ids_matching(ids: list[int]) -> Q:
    """``id IN ids``, written as ranges when the ids are a few runs of consecutive numbers, as a day planned in one
    go is. The waiting run counts its queued ids over and over: a list of 100,000 ids cost this process and the
    database about half a second a look, and took a core's share from the workers it waits for."""
    ordered = sorted(ids)
    runs: list[tuple[int, int]] = []
    for n in ordered:
        if runs and n <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
        if len(runs) > ID_RUNS_MAX:
            return Q(id__in=ordered)
    if not runs:
        return Q(pk__in=[])
    return functools.reduce(operator.or_, (Q(id__range=run) for run in runs))


def deliveries_tally(*, ids: list[int] | None, issue: Issue, since: dt.datetime) -> Tally:
    """What became of the deliveries (``ids``, else all of ``issue``'s) since ``since``: one aggregate query."""
    rows = Delivery.objects.filter(issue=issue)
    if ids is not None:
        rows = rows.filter(ids_matching(ids))
    done_since = Q(updated_at__gte=since)
    counts = rows.aggregate(
        sent=Count("id", filter=Q(status=Delivery.Status.SENT) & done_since),
        failed=Count("id", filter=Q(status=Delivery.Status.FAILED) & done_since),
        skipped=Count("id", filter=Q(status=Delivery.Status.SKIPPED) & done_since),
        unfinished=Count("id", filter=Q(status__in=UNFINISHED)),
    )
    return Tally(**counts)


def deliveries_errors(*, issue: Issue, ids: list[int] | None, since: dt.datetime, listed: int = 50) -> dict:
    """The failures since ``since``, by delivery token (never the address), as the in-process run records them."""
    rows = Delivery.objects.filter(issue=issue, status=Delivery.Status.FAILED, updated_at__gte=since)
    if ids is not None:
        rows = rows.filter(ids_matching(ids))
    return {str(token): error for token, error in rows.order_by("id").values_list("token", "error")[:listed]}


POLL_IDS_PER_SECOND = 20_000


def deliveries_wait(
    *,
    issue: Issue,
    ids: list[int],
    since: dt.datetime,
    on_progress: Callable[[int], None] | None = None,
    poll: float | None = None,
    stall_seconds: float | None = None,
) -> Tally:
    """Wait until the workers have finished ``ids`` (read from the Delivery rows: no result backend), or until
    nothing has moved for ``stall_seconds``; returns the tally, whose ``unfinished`` says what is left."""
    stall_seconds = settings.DELIVERY_WAIT_STALL_SECONDS if stall_seconds is None else stall_seconds
    # Every second for a small day, every few seconds for a large one: when the queued ids are scattered (a rerun),
    # each look lists them all, and the waiting run must not take CPU from the workers it waits for.
    poll = max(1.0, len(ids) / POLL_IDS_PER_SECOND) if poll is None else poll
    done_before = 0
    moved_at = time.monotonic()
    while True:
        tally = deliveries_tally(ids=ids, issue=issue, since=since)
        tally.stopped = sending_stopped(issue=issue)
        done = len(ids) - tally.unfinished
        if done != done_before:
            if on_progress:
                on_progress(done - done_before)
            done_before, moved_at = done, time.monotonic()
        if tally.unfinished == 0 or tally.stopped or time.monotonic() - moved_at > stall_seconds:
            return tally
        time.sleep(poll)


def run_record_delivery(*, run: DailyRun, tally: Tally) -> str:
    """Put the workers' outcomes on the run; returns why the run failed (deliveries left behind), or ""."""
    run.emails_sent, run.emails_failed, run.emails_skipped = tally.sent, tally.failed, tally.skipped
    if tally.stopped:
        return f"sending stopped: {tally.stopped}; {tally.unfinished} emails left pending for a later run"
    if tally.unfinished:
        return f"{tally.unfinished} emails not finished by the workers yet; they stay queued or pending"
    return ""


#: In the summary of a run whose batches were queued with --no-wait, until the last batch's worker finishes it.
QUEUED = "queued for the workers"


def run_complete_if_done(*, run_id: int) -> bool:
    """Finish a run started with ``--no-wait`` once none of its issue's deliveries is left: called by the worker
    that finished a batch, so the last one to finish records the run. True when this call finished it."""
    from .observability import run_finished, run_scope
    from .pipeline import run_summary

    with transaction.atomic():
        run = DailyRun.objects.select_for_update().filter(pk=run_id, status=DailyRun.Status.RUNNING).first()
        if run is None or QUEUED not in run.summary:
            return False  # finished already, or the run itself waits for its batches
        issue = Issue.objects.filter(date=run.date).first()
        if issue is None:
            return False
        tally = deliveries_tally(ids=None, issue=issue, since=run.started_at)
        tally.stopped = sending_stopped(issue=issue)
        if tally.unfinished and not tally.stopped:
            return False
        left = run_record_delivery(run=run, tally=tally)
        if left:
            run.errors["run"] = left
        if tally.failed:
            run.errors["delivery"] = deliveries_errors(issue=issue, ids=None, since=run.started_at)
        run.durations["delivery"] = round((timezone.now() - run.started_at).total_seconds(), 3)
        run.finished_at = timezone.now()
        if left:
            run.status = DailyRun.Status.FAILED
        else:
            run.status = DailyRun.Status.PARTIAL if run.errors else DailyRun.Status.SUCCEEDED
        run.summary = run_summary(run)
        run.save()
    with run_scope():
        run_finished(run)
    return True


# -- the worker's side ----------------------------------------------------------------------------------------------

_content: dict[tuple[int, dt.date], IssueContent] = {}
_content_guard = threading.Lock()
# The charts this process has archived for the issue it is sending: a batch of 300 emails shows about 1,100 of the
# 2,000 charts of a large day, and writing them again for every batch tripled a worker's writes to the archive.
_charts: dict[int, set[tuple[str, str]]] = {}


def _charts_written(issue: Issue) -> set[tuple[str, str]]:
    with _content_guard:
        if issue.pk not in _charts:
            _charts.clear()  # one issue at a time: yesterday's memo is of no use
            _charts[issue.pk] = set()
        return _charts[issue.pk]


# The issue's content in the shared cache, for the other workers of the same run: hours, as long as a run sends.
CONTENT_SHARED_SECONDS = 6 * 3600
# How long a worker waits for another one building the content before it builds its own.
CONTENT_WAIT_SECONDS = 300


def issue_content_cached(*, issue: Issue, symbols: list[str], run_id: int | None = None) -> IssueContent:
    """The issue's shared content, built once per run by the first worker that needs it and shared with the others
    through the cache (the cards and charts are the same for every batch); kept in each worker process, and built
    again when a batch needs a ticker it lacks."""
    key = (issue.pk, issue.date)
    with _content_guard:
        content = _content.get(key)
        if content is not None and all(s in content.snapshots for s in symbols):
            return content
        wanted = sorted(set(followed_symbols()) | set(symbols))
        content = _content_shared(issue=issue, symbols=wanted, run_id=run_id)
        _content.clear()  # one issue at a time: yesterday's cards are of no further use
        _content[key] = content
        return content


def _content_shared(*, issue: Issue, symbols: list[str], run_id: int | None) -> IssueContent:
    # Keyed by the run too: a rerun after a fix (new bars, new analyses) builds afresh instead of reusing old cards.
    digest = hashlib.blake2b("\n".join(symbols).encode(), digest_size=12).hexdigest()
    shared_key = f"walter:issue-content:{issue.pk}:{run_id}:{digest}"
    content = _cache_get(shared_key)
    if content is not None:
        return content
    try:
        with exclusive(f"issue-content-{issue.pk}"):
            content = _cache_get(shared_key)
            if content is None:
                content = _content_build(issue=issue, symbols=symbols)
                _cache_set(shared_key, content)
            return content
    except LockHeld:
        pass  # another worker is building it: wait for its copy rather than build a second one
    deadline = time.monotonic() + CONTENT_WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.5)
        content = _cache_get(shared_key)
        if content is not None:
            return content
    return _content_build(issue=issue, symbols=symbols)


def _content_build(*, issue: Issue, symbols: list[str]) -> IssueContent:
    started = time.monotonic()
    content = issue_content_stored(day=issue.date, symbols=symbols)
    logger.info(
        "issue content of %s built in %.1f s (%s tickers)", issue.date, time.monotonic() - started, len(symbols)
    )
    return content


def _cache_get(key: str) -> IssueContent | None:
    try:
        return cache.get(key)
    except Exception:  # the cache is a shortcut: without it each worker builds its own copy
        logger.warning("the shared cache could not give the issue content; building it here", exc_info=True)
        return None


def _cache_set(key: str, content: IssueContent) -> None:
    try:
        cache.set(key, content, timeout=CONTENT_SHARED_SECONDS)
    except Exception:  # the other workers build their own copy
        logger.warning("the shared cache could not keep the issue content", exc_info=True)


class BatchBusy(Exception):
    """Another live holder has this batch, or some of it was claimed too recently to be sure its holder died."""

    def __init__(self, reason: str, wait: float) -> None:
        super().__init__(reason)
        self.wait = wait


def batch_deliver(
    *, issue_id: int, delivery_ids: list[int], stop: StopFlag | None = None, run_id: int | None = None
) -> DeliveryStage:
    """Send one batch; safe to run twice, and safe after a worker died holding it.

    The batch lock (a PostgreSQL advisory lock, released by the database when its holder's connection dies) tells
    a redelivered copy whether the first holder is alive. If it is not, the deliveries it left "sending" were
    claimed, and perhaps handed over, before it died: they are sent again once older than the task time limit (a
    live holder would have been stopped by then), so at most what was in flight can arrive twice.
    """
    issue = Issue.objects.get(pk=issue_id)
    stopped = sending_stopped(issue=issue)
    if stopped:
        return DeliveryStage(stopped=stopped)  # acknowledged: its deliveries stay pending for a later run
    try:
        with exclusive(f"delivery-batch-{issue_id}-{min(delivery_ids)}-{max(delivery_ids)}-{len(delivery_ids)}"):
            left = _release_abandoned(delivery_ids)
            followed = symbols_by_subscriber(
                list(Delivery.objects.filter(id__in=delivery_ids).values_list("subscriber_id", flat=True))
            )
            symbols = sorted({s for group in followed.values() for s in group})
            content = issue_content_cached(issue=issue, symbols=symbols, run_id=run_id)
            stage = deliveries_send(
                issue=issue, content=content, only=delivery_ids, stop=stop, charts_written=_charts_written(issue)
            )
            if stage.stopped:
                cache.set(_stop_key(issue_id), stage.stopped, timeout=24 * 3600)
    except LockHeld:
        raise BatchBusy("another worker holds this batch", settings.CELERY_TASK_TIME_LIMIT) from None
    if left:
        raise BatchBusy(f"{left} deliveries of the batch are in another holder's hands", left_wait(delivery_ids))
    return stage


def _abandoned_before() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)


def _release_abandoned(delivery_ids: list[int]) -> int:
    """Make the batch's deliveries whose holder must be dead sendable again; returns how many are still held."""
    held = Delivery.objects.filter(id__in=delivery_ids, status=Delivery.Status.SENDING)
    released = held.filter(sending_at__lt=_abandoned_before()).update(
        status=Delivery.Status.PENDING, error="released: its worker stopped mid-batch, it may have been sent before"
    )
    if released:
        logger.warning("batch of %s deliveries: %s released after their worker stopped", len(delivery_ids), released)
    return held.count()


def left_wait(delivery_ids: list[int]) -> float:
    """Seconds until the youngest claim among the batch's held deliveries is old enough to release."""
    youngest = (
        Delivery.objects.filter(id__in=delivery_ids, status=Delivery.Status.SENDING)
        .order_by("-sending_at")
        .values_list("sending_at", flat=True)
        .first()
    )
    if youngest is None:
        return 0.0
    return max(1.0, (youngest - _abandoned_before()).total_seconds() + 1)
