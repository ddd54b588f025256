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
from markets.quality import missing_share_reason
from markets.selectors import market_closed_reason, ticker_snapshots
from markets.services import MarketUpdate, market_data_update, session_news_update, ticker_directory_refresh
from markets.shared_tables import get_shared_tables
from markets.snapshots import TickerSnapshot
from subscriptions.selectors import followed_symbols, subscribers_receiving

from .analysis import analyses_ensure, analysis_unsaved
from .analysts import Analyst, get_analyst
from .analysts.rule_based import RuleBasedAnalyst
from .compose import issue_content_build
from .delivery import (
    deliveries_plan,
    deliveries_release_ambiguous,
    deliveries_release_claimed,
    deliveries_send,
    issue_ensure,
)
from .demo import demo_subscribers_refuse
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
from .models import Analysis, DailyRun, Delivery
from .observability import run_found_killed, run_started
from .selectors import deliveries_unfinished, stored_analyses
from .stopping import Stopped, stop

logger = logging.getLogger("walter.run")

STAGES = ("data", "analysis", "delivery")
AMBIGUOUS_LISTED = 50


class MarketDataMissing(Exception):
    """The session's market data cannot be had: nobody gets an issue until a later run has it."""


class MarketClosed(Exception):
    """The market had no session after all (the provider announced a closure the local calendar lacks)."""


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
    runs_mark_killed(day=day)
    run = DailyRun.objects.create(date=day, dry_run=dry_run, stages=",".join(stages))
    run_started(run)
    errors: dict[str, dict[str, str] | str] = {}
    failed_stage = False
    interrupted = ""
    queued: list[int] = []

    symbols = followed_symbols()
    closed = ""
    try:
        # 0. A closure the provider announces and the local calendar does not know (a day of mourning).
        closed = market_closed_reason(day, provider) or ""
        if closed:
            raise MarketClosed(closed)
        unavailable: dict[str, str] = {}
        news = None

        # 1. Market data: one grouped request for the whole market, indicators for all tickers at once.
        if "data" in stages:
            started = time.monotonic()
            update = market_data_update(
                day=day,
                symbols=symbols,
                provider=provider,
                shared_tables=shared_tables,
                publish=not dry_run,
                events=not dry_run,
            )
            run.tickers_updated = len(update.updated) + len(update.backfilled)
            run.tickers_stale = len(update.stale)
            run.tickers_failed = len(update.failed)
            if update.failed or update.rejected:
                errors["data"] = {**update.failed, **update.rejected}
            if update.publish_error:
                errors["shared_tables"] = update.publish_error
            if update.events and update.events.error:  # a side output: the cards go without what failed
                errors["events"] = update.events.error
            if update.events and update.events.notes:
                run.notes["events"] = update.events.notes

            if not (update.closed or update.market_error or update.no_data):
                # A side output after the prices, so it never delays them; a failure leaves the issue without news.
                try:
                    news = session_news_update(day=day, symbols=symbols, provider=provider, store=not dry_run)
                except Exception as exc:  # whatever breaks, the issue goes out without news
                    logger.exception("news of %s failed", day)
                    errors["news"] = f"{type(exc).__name__}: {exc}"
                else:
                    if news.error:
                        errors["news"] = news.error
                    if news.skipped:
                        run.notes["news"] = [news.skipped]
            if not dry_run:
                try:
                    # A side output for the web's search, after the market's data so it never delays it; once a day.
                    ticker_directory_refresh(provider=provider)
                except Exception as exc:  # search keeps yesterday's list; the run goes on
                    logger.exception("ticker directory refresh failed")
                    errors["ticker_directory"] = f"{type(exc).__name__}: {exc}"
            run.durations["data"] = round(time.monotonic() - started, 3)
            if update.closed:
                closed = update.closed
                raise MarketClosed(closed)
            # Right or nothing: without the session's data nobody gets an issue; a later run sends the real one.
            missing = update.missing_reason(followed=len(symbols), max_failed_share=settings.DATA_MAX_FAILED_SHARE)
            if missing:
                raise MarketDataMissing(missing)
            unavailable = update.unavailable
        else:
            unavailable = _unavailable_recorded(day)

        # What the data stage read and computed, when it ran: the history is read once a run.
        read = update if "data" in stages else None
        snapshots = ticker_snapshots(
            symbols,
            day,
            demo=provider.is_demo,
            unavailable=unavailable,
            history=read.history if read else None,
            latest=read.latest if read else None,
            news=news.chosen if news else None,
        )
        if "delivery" in stages and "data" not in stages:
            # No data stage in this run: the stored bars say whether the session's data is there to send.
            missing = missing_share_reason(
                missing=sum(1 for s in snapshots.values() if s.stale),
                followed=len(symbols),
                day=day,
                max_share=settings.DATA_MAX_FAILED_SHARE,
            )
            if missing:
                raise MarketDataMissing(f"{missing}; run the data stage first")

        # 2. Analysis: one per followed ticker per day, cached, never per subscriber.
        if "analysis" in stages and dry_run:
            analyses = _dry_run_analyses(day=day, snapshots=snapshots, analyst=analyst, run=run)
        elif "analysis" in stages:
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
            if analysis.publish_errors:  # a side output: retried by the next run, never stops the email
                errors["analysis_publish"] = analysis.publish_errors
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
                run.emails_would_send = subscribers_receiving().count()
            else:
                issue = issue_ensure(day=day, demo=provider.is_demo)
                # This run holds the run_daily lock: claims left by an earlier, killed run were never handed over.
                deliveries_release_claimed(issue=issue)
                if resend_ambiguous:
                    deliveries_release_ambiguous(issue=issue)
                demo_subscribers_refuse()  # the demo's example addresses never reach a real email service
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
    except MarketClosed:
        logger.info("no session on %s: %s", day, closed)
    except MarketDataMissing as exc:
        logger.error("daily run for %s stopped before delivery: %s", day, exc)
        errors["run"] = f"nothing sent: {exc}"
        failed_stage = True
    except Stopped as exc:
        # Stopped before any message was handed over (market data, analysis, planning): nothing to finish.
        interrupted = str(exc)
        errors["run"] = f"interrupted ({interrupted}) before sending; nothing handed over by this run"
    except Exception as exc:
        logger.exception("daily run for %s failed", day)
        errors["run"] = f"{type(exc).__name__}: {exc}"
        failed_stage = True

    if no_wait and queued and not failed_stage and not interrupted:
        # Recorded before the batches are queued, so the worker that finishes the last one finds the run.
        run.errors = errors
        run.summary = f"{day.isoformat()} {QUEUED}: {len(queued)} emails"
        run.save()
        batches_enqueue(issue=issue, ids=queued, run=run)
        return run
    with stop.graceful():  # the record of the run is written whatever signal comes now
        return _run_record(run, errors, failed=failed_stage, interrupted=bool(interrupted), closed=closed)


def _run_record(run: DailyRun, errors: dict, *, failed: bool, interrupted: bool, closed: str = "") -> DailyRun:
    run.errors = errors
    run.finished_at = timezone.now()
    if closed:
        run.status = DailyRun.Status.SKIPPED
    elif interrupted:
        run.status = DailyRun.Status.INTERRUPTED
    elif failed:
        run.status = DailyRun.Status.FAILED
    elif errors:
        run.status = DailyRun.Status.PARTIAL
    else:
        run.status = DailyRun.Status.SUCCEEDED
    run.summary = f"No session: {closed}. Nothing sent." if closed else run_summary(run)
    # What was left out on purpose is no failure, but worth a word in the one line an operator reads.
    run.summary += "".join(f" · {note}" for kind in sorted(run.notes) for note in run.notes[kind])
    run.save()
    return run


def _unavailable_recorded(day: dt.date) -> dict[str, str]:
    """The tickers the latest data stage for ``day`` could not get, as it recorded them (``errors["data"]``)."""
    run = (
        DailyRun.objects.filter(date=day, stages__contains="data", dry_run=False)
        .exclude(status=DailyRun.Status.RUNNING)
        .order_by("-started_at")
        .first()
    )
    recorded = run.errors.get("data", {}) if run and isinstance(run.errors, dict) else {}
    # Recorded as one dict: failed tickers by symbol, rejected bars by "SYMBOL date".
    failed = {key: why for key, why in recorded.items() if " " not in key}
    rejected = {key: why for key, why in recorded.items() if " " in key}
    return MarketUpdate(day=day, failed=failed, rejected=rejected).unavailable


def _dry_run_analyses(
    *, day: dt.date, snapshots: dict[str, TickerSnapshot], analyst: Analyst, run: DailyRun
) -> dict[str, Analysis]:
    """What a dry run shows: the stored analyses, and for the rest the rule-based one, kept nowhere.

    A dry run never calls the model (it costs money, and its answer would be stored and published).
    """
    analyses = stored_analyses(day=day, symbols=list(snapshots), analyst=analyst)
    run.analyses_cached = len(analyses)
    rules = RuleBasedAnalyst()
    for symbol, snapshot in sorted(snapshots.items()):
        if symbol in analyses or not snapshot.has_data or snapshot.stale:
            continue
        analyses[symbol] = analysis_unsaved(day=day, snapshot=snapshot, result=rules.analyze(snapshot))
        run.analyses_fallback += 1
    return analyses


def runs_mark_killed(*, day: dt.date) -> list[DailyRun]:
    """Runs of ``day`` still "running" were killed (SIGKILL, a lost machine): the caller holds the run lock, so
    none of them is alive, except a ``--no-wait`` run, which the workers finish. They are marked interrupted and
    alerted on, once."""
    killed = list(DailyRun.objects.filter(date=day, status=DailyRun.Status.RUNNING).exclude(summary__contains=QUEUED))
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
        if run.dry_run:
            parts.append(f"would send {run.emails_would_send} (dry run, nothing sent)")
        else:
            parts.append(f"emails {run.emails_sent} sent, {run.emails_failed} failed, {run.emails_skipped} skipped")
    seconds = sum(run.durations.values()) if run.durations else 0
    parts.append(f"{seconds:.1f}s")
    return " · ".join(parts)
