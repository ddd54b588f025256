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
from .delivery import (
    deliveries_plan,
    deliveries_release_ambiguous,
    deliveries_release_claimed,
    deliveries_send,
    deliveries_unfinished,
    issue_ensure,
)
from .models import DailyRun, Delivery
from .observability import run_found_killed, run_started
from .stopping import Stopped, stop

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
    progress: Progress | None = None,
) -> DailyRun:
    """Run the stages for session ``day``; every stage skips what is done and retries what failed."""
    progress = progress or Progress()
    provider = get_provider()
    analyst = get_analyst()
    shared_tables = get_shared_tables()
    runs_mark_killed(day=day)
    run = DailyRun.objects.create(date=day, dry_run=dry_run, stages=",".join(stages))
    run_started(run)
    errors: dict[str, dict[str, str] | str] = {}
    failed_stage = False
    interrupted = ""

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
            content = issue_content_build(day=day, snapshots=snapshots, analyses=analyses)
            if dry_run:
                run.emails_skipped = subscribers_receiving().count()
            else:
                issue = issue_ensure(day=day, demo=provider.is_demo)
                # This run holds the run_daily lock: claims left by an earlier, killed run were never handed over.
                deliveries_release_claimed(issue=issue)
                if resend_ambiguous:
                    deliveries_release_ambiguous(issue=issue)
                deliveries_plan(issue=issue)
                sendable = Delivery.objects.filter(issue=issue, status__in=["pending", "failed"]).count()
                progress.start("Sending", min(sendable, limit) if limit is not None else sendable)
                # A signal from here on stops handing out messages and lets those in flight finish and be recorded.
                with stop.graceful():
                    delivery = deliveries_send(issue=issue, content=content, limit=limit, on_progress=progress.advance)
                run.emails_sent = delivery.sent
                run.emails_failed = delivery.failed
                run.emails_skipped = delivery.skipped
                if delivery.errors:
                    errors["delivery"] = delivery.errors
                if delivery.ambiguous:
                    errors["delivery_ambiguous"] = {
                        "count": delivery.ambiguous,
                        "tokens": delivery.ambiguous_tokens[:AMBIGUOUS_LISTED],
                        "hint": "in flight when an earlier run was killed; rerun with --resend-ambiguous to send them",
                    }
                if delivery.interrupted:
                    interrupted = delivery.interrupted
                    counts = deliveries_unfinished(issue=issue)
                    errors["run"] = (
                        f"interrupted ({interrupted}): messages in flight were recorded; "
                        f"{counts.get(Delivery.Status.PENDING, 0)} emails left pending for a rerun"
                        + (
                            f", {counts[Delivery.Status.SENDING]} still in flight (ambiguous)"
                            if counts.get(Delivery.Status.SENDING)
                            else ""
                        )
                    )
                elif delivery.stopped:
                    pending = Delivery.objects.filter(issue=issue, status=Delivery.Status.PENDING).count()
                    errors["run"] = (
                        f"sending stopped: {delivery.stopped}; {pending} emails left pending for a later run"
                    )
                    failed_stage = True
            run.durations["delivery"] = round(time.monotonic() - started, 3)
    except Stopped as exc:
        # Stopped before any message was handed over (market data, analysis, planning): nothing to finish.
        interrupted = str(exc)
        errors["run"] = f"interrupted ({interrupted}) before sending; nothing handed over by this run"
    except Exception as exc:
        logger.exception("daily run for %s failed", day)
        errors["run"] = f"{type(exc).__name__}: {exc}"
        failed_stage = True

    with stop.graceful():  # the record of the run is written whatever signal comes now
        return _run_record(run, errors, failed=failed_stage, interrupted=bool(interrupted))


def _run_record(run: DailyRun, errors: dict, *, failed: bool, interrupted: bool) -> DailyRun:
    run.errors = errors
    run.finished_at = timezone.now()
    if interrupted:
        run.status = DailyRun.Status.INTERRUPTED
    elif failed:
        run.status = DailyRun.Status.FAILED
    elif errors:
        run.status = DailyRun.Status.PARTIAL
    else:
        run.status = DailyRun.Status.SUCCEEDED
    run.summary = run_summary(run)
    run.save()
    return run


def runs_mark_killed(*, day: dt.date) -> list[DailyRun]:
    """Runs of ``day`` still "running" were killed (SIGKILL, a lost machine): the caller holds the run lock, so
    none of them is alive. They are marked interrupted and alerted on, once."""
    killed = list(DailyRun.objects.filter(date=day, status=DailyRun.Status.RUNNING))
    for run in killed:
        run.status = DailyRun.Status.INTERRUPTED
        run.finished_at = timezone.now()
        run.errors = {**(run.errors or {}), "run": "killed: the process ended without recording its outcome"}
        run.summary = f"{run.date.isoformat()} interrupted · killed before it could record its outcome"
        run.save(update_fields=["status", "finished_at", "errors", "summary"])
        run_found_killed(run)
    return killed


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
