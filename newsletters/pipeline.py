"""The daily job, top-down as the data flow: market data → analysis → delivery, recorded in a DailyRun."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from markets.providers import get_provider
from markets.selectors import ticker_snapshots
from markets.services import market_data_update
from markets.shared_tables import get_shared_tables
from subscriptions.selectors import followed_symbols, subscribers_receiving

from .analysis import analyses_ensure, stored_analyses
from .analysts import get_analyst
from .compose import issue_content_build
from .delivery import deliveries_plan, deliveries_release_ambiguous, deliveries_send, issue_ensure
from .dispatch import (
    QUEUED,
    batches_enqueue,
    broker_configured,
    deliveries_errors,
    deliveries_wait,
    run_record_delivery,
    sendable_ids,
    sending_stop_clear,
)
from .models import DailyRun, Delivery
from .observability import run_started

logger = logging.getLogger("walter.run")

STAGES = ("data", "analysis", "delivery")
AMBIGUOUS_LISTED = 50


@dataclass
class Progress:
    """Hooks for a progress display; the command wires them to a terminal bar."""

    start: Callable[[str, int], None] = lambda label, total: None
    advance: Callable[[int], None] = lambda n: None


def daily_run(
    *,
    day: dt.date,
    stages: Sequence[str] = STAGES,
    dry_run: bool = False,
    limit: int | None = None,
    resend_ambiguous: bool = False,
    no_wait: bool = False,
    progress: Progress | None = None,
) -> DailyRun:
    """Run the stages for session ``day``; every stage skips what is done and retries what failed.

    With a broker, delivery is queued in batches for the workers; ``no_wait`` returns once they are queued, and the
    worker that finishes the last batch records the run.
    """
    progress = progress or Progress()
    provider = get_provider()
    analyst = get_analyst()
    shared_tables = get_shared_tables()
    run = DailyRun.objects.create(date=day, dry_run=dry_run, stages=",".join(stages))
    run_started(run)
    errors: dict[str, dict[str, str] | str] = {}
    failed_stage = False
    queued: list[int] = []

    symbols = followed_symbols()
    try:
        # 1. Market data: one grouped request for the whole market, indicators for all tickers at once.
        if "data" in stages:
            started = time.monotonic()
            update = market_data_update(day=day, symbols=symbols, provider=provider, shared_tables=shared_tables)
            run.tickers_updated = len(update.updated) + len(update.backfilled)
            run.tickers_stale = len(update.stale)
            run.tickers_failed = len(update.failed)
            if update.failed or update.rejected:
                errors["data"] = {**update.failed, **update.rejected}
            run.durations["data"] = round(time.monotonic() - started, 3)

        snapshots = ticker_snapshots(symbols, day, demo=provider.is_demo)

        # 2. Analysis: one per followed ticker per day, cached, never per subscriber.
        if "analysis" in stages:
            started = time.monotonic()
            analyses, analysis = analyses_ensure(
                day=day, snapshots=snapshots, analyst=analyst, shared_tables=shared_tables
            )
            run.analyses_created = analysis.created
            run.analyses_cached = analysis.cached
            run.analyses_fallback = analysis.fallback
            run.input_tokens = analysis.input_tokens
            run.output_tokens = analysis.output_tokens
            run.estimated_cost_usd = _cost(analysis.input_tokens, analysis.output_tokens)
            if analysis.errors:
                errors["analysis"] = analysis.errors
            run.durations["analysis"] = round(time.monotonic() - started, 3)
        else:
            analyses = stored_analyses(day=day, symbols=symbols, analyst=analyst)

        # 3. Delivery: plan in bulk, then render → archive → send → mark sent, batch by batch.
        if "delivery" in stages:
            started = time.monotonic()
            on_workers = broker_configured() and not dry_run
            # Workers rebuild the content themselves; a dry run builds it to show that it can be.
            content = None if on_workers else issue_content_build(day=day, snapshots=snapshots, analyses=analyses)
            if dry_run:
                run.emails_skipped = subscribers_receiving().count()
            else:
                issue = issue_ensure(day=day, demo=provider.is_demo)
                if resend_ambiguous:
                    deliveries_release_ambiguous(issue=issue)
                deliveries_plan(issue=issue)
            if on_workers:
                # Only ids go through the broker.
                sending_stop_clear(issue=issue)  # a new run tries again what an account stop left pending
                queued = sendable_ids(issue=issue, limit=limit)
                if not no_wait:
                    batches_enqueue(issue=issue, ids=queued, run=run)
                    progress.start("Sending", len(queued))
                    since = timezone.now() - dt.timedelta(seconds=1)
                    tally = deliveries_wait(issue=issue, ids=queued, since=since, on_progress=progress.advance)
                    if tally.failed:
                        errors["delivery"] = deliveries_errors(issue=issue, ids=queued, since=since)
                    left = run_record_delivery(run=run, tally=tally)
                    if left:
                        errors["run"], failed_stage = left, True
            elif not dry_run:
                sendable = Delivery.objects.filter(issue=issue, status__in=["pending", "failed"]).count()
                progress.start("Sending", min(sendable, limit) if limit is not None else sendable)
                delivery = deliveries_send(issue=issue, content=content, limit=limit, on_progress=progress.advance)
                run.emails_sent = delivery.sent
                run.emails_failed = delivery.failed
                run.emails_skipped = delivery.skipped
                if delivery.errors:
                    errors["delivery"] = delivery.errors
                if delivery.ambiguous:
                    errors["delivery_ambiguous"] = {
                        "count": delivery.ambiguous,
                        "emails": delivery.ambiguous_emails[:AMBIGUOUS_LISTED],
                        "hint": "in flight when an earlier run stopped; rerun with --resend-ambiguous to send them",
                    }
                if delivery.stopped:
                    pending = Delivery.objects.filter(issue=issue, status=Delivery.Status.PENDING).count()
                    errors["run"] = (
                        f"sending stopped: {delivery.stopped}; {pending} emails left pending for a later run"
                    )
                    failed_stage = True
            run.durations["delivery"] = round(time.monotonic() - started, 3)
    except Exception as exc:
        logger.exception("daily run for %s failed", day)
        errors["run"] = f"{type(exc).__name__}: {exc}"
        failed_stage = True

    run.errors = errors
    if no_wait and queued and not failed_stage:
        # Recorded before the batches are queued, so the worker that finishes the last one finds the run.
        run.summary = f"{day.isoformat()} {QUEUED}: {len(queued)} emails"
        run.save()
        batches_enqueue(issue=issue, ids=queued, run=run)
        return run
    run.finished_at = timezone.now()
    if failed_stage:
        run.status = DailyRun.Status.FAILED
    elif errors:
        run.status = DailyRun.Status.PARTIAL
    else:
        run.status = DailyRun.Status.SUCCEEDED
    run.summary = run_summary(run)
    run.save()
    return run


def _cost(input_tokens: int, output_tokens: int) -> Decimal:
    per_million_in = Decimal(str(settings.LLM_PRICE_INPUT_PER_MILLION))
    per_million_out = Decimal(str(settings.LLM_PRICE_OUTPUT_PER_MILLION))
    return (per_million_in * input_tokens + per_million_out * output_tokens) / Decimal(1_000_000)


def run_summary(run: DailyRun) -> str:
    parts = [f"{run.date.isoformat()} {run.status}"]
    if "data" in run.stages:
        parts.append(f"tickers {run.tickers_updated} updated, {run.tickers_stale} stale, {run.tickers_failed} failed")
    if "analysis" in run.stages:
        parts.append(
            f"analyses {run.analyses_created} new, {run.analyses_cached} cached, {run.analyses_fallback} fallback"
        )
    if "delivery" in run.stages:
        verb = "would send" if run.dry_run else "emails"
        if run.dry_run:
            parts.append(f"{verb} {run.emails_skipped} (dry run, nothing sent)")
        else:
            parts.append(f"emails {run.emails_sent} sent, {run.emails_failed} failed, {run.emails_skipped} skipped")
    seconds = sum(run.durations.values()) if run.durations else 0
    parts.append(f"{seconds:.1f}s")
    return " · ".join(parts)
