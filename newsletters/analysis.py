"""The analysis stage: one analysis per followed ticker per session, cached, never per subscriber.

Within a time budget (ANALYSIS_TIME_BUDGET): a ticker the model has not answered for when it runs out gets the
rule-based analysis, so the newsletter is never late because of the model. Each analysis is stored, with its
audit trail, the moment it is made: a crash keeps what was paid for and a rerun does not pay again. Publishing to
the shared tables is a side output: a failure is recorded and retried by the next run, never stops the stage.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from markets.models import Ticker
from markets.shared_tables import SharedTables, get_shared_tables
from markets.snapshots import TickerSnapshot

from .analysts import AnalysisResult, Analyst, get_analyst
from .analysts.rule_based import RuleBasedAnalyst
from .models import Analysis, AnalystCall
from .selectors import stored_analyses

logger = logging.getLogger("walter.analysis")

#: How many unpublished analyses one run offers the shared tables, oldest first.
PUBLISH_BACKLOG = 1000
PUBLISH_GIVE_UP_AFTER = 3


@dataclass
class AnalysisStage:
    created: int = 0
    cached: int = 0
    fallback: int = 0
    published: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    #: Analyses the shared tables did not take this run ("SYMBOL date": why); the next run offers them again.
    publish_errors: dict[str, str] = field(default_factory=dict)


def _fall_back(snapshot: TickerSnapshot, reason: str, exc: Exception | None = None) -> AnalysisResult:
    result = RuleBasedAnalyst().analyze(snapshot)
    result.fallback_reason = reason[:2000]
    usage = getattr(exc, "usage", None) or (0, 0)
    result.input_tokens, result.output_tokens = usage
    result.calls = list(getattr(exc, "calls", None) or [])
    return result


def _analyze_or_fall_back(analyst: Analyst, snapshot: TickerSnapshot, deadline: float) -> AnalysisResult:
    if time.monotonic() >= deadline:
        return _fall_back(snapshot, "the analysis time budget ran out before this ticker's turn")
    try:
        return analyst.analyze(snapshot, deadline=deadline)
    except Exception as exc:  # any failure of the model degrades to the rule-based analysis for this ticker
        logger.warning("analysis of %s fell back to rules: %s", snapshot.symbol, exc)
        return _fall_back(snapshot, f"{type(exc).__name__}: {exc}", exc)


def analyze_all(
    *,
    analyst: Analyst,
    snapshots: list[TickerSnapshot],
    budget: float | None = None,
    on_result: Callable[[TickerSnapshot, AnalysisResult], None] | None = None,
) -> list[AnalysisResult]:
    """Each snapshot's analysis, in order, up to ``analyst.parallelism`` at a time, within ``budget`` seconds.

    ``on_result`` is called in this thread as each analysis is made, not once all are, so it can store it at once
    (and database writes stay on this thread's connection). A failure, or the end of the budget, falls back to the
    rule-based analysis for that ticker.
    """
    deadline = time.monotonic() + (settings.ANALYSIS_TIME_BUDGET if budget is None else budget)
    parallelism = max(1, int(getattr(analyst, "parallelism", 1)))
    results: dict[int, AnalysisResult] = {}

    def done(index: int, result: AnalysisResult) -> None:
        results[index] = result
        if on_result is not None:
            on_result(snapshots[index], result)

    if parallelism > 1 and len(snapshots) > 1:
        with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="analyst") as pool:
            futures = {
                pool.submit(_analyze_or_fall_back, analyst, snap, deadline): i for i, snap in enumerate(snapshots)
            }
            for future in as_completed(futures):
                done(futures[future], future.result())
    else:
        for i, snap in enumerate(snapshots):
            done(i, _analyze_or_fall_back(analyst, snap, deadline))
    return [results[i] for i in range(len(snapshots))]


def analyses_ensure(
    *,
    day: dt.date,
    snapshots: dict[str, TickerSnapshot],
    analyst: Analyst | None = None,
    shared_tables: SharedTables | None = None,
    budget: float | None = None,
) -> tuple[dict[str, Analysis], AnalysisStage]:
    """Every analysable ticker's analysis for ``day``: from the cache, else from the analyst (concurrently).

    Each new analysis is stored as soon as it is made; then every analysis not yet in the shared tables is
    offered to them (today's, and any an earlier run could not publish).
    """
    analyst = analyst or get_analyst()
    shared_tables = shared_tables or get_shared_tables()
    stage = AnalysisStage()
    is_rules = isinstance(analyst, RuleBasedAnalyst)
    existing = stored_analyses(day=day, symbols=list(snapshots), analyst=analyst)
    # A fallback is retried on the next run; a model answer is final.
    done = {s: a for s, a in existing.items() if is_rules or not a.fallback_reason}
    stage.cached = len(done)
    todo = [snap for sym, snap in sorted(snapshots.items()) if sym not in done and snap.has_data and not snap.stale]
    ticker_ids = dict(Ticker.objects.filter(symbol__in=[s.symbol for s in todo]).values_list("symbol", "id"))
    analyses = dict(done)

    def store(snapshot: TickerSnapshot, result: AnalysisResult) -> None:
        stage.input_tokens += result.input_tokens
        stage.output_tokens += result.output_tokens
        if result.fallback_reason:
            stage.fallback += 1
            stage.errors[snapshot.symbol] = result.fallback_reason
        else:
            stage.created += 1
        try:
            analyses[snapshot.symbol] = analysis_store(
                ticker_id=ticker_ids[snapshot.symbol],
                day=day,
                snapshot=snapshot,
                result=result,
                model=analyst.model,
                prompt_version=analyst.prompt_version,
            )
        except Exception as exc:  # one ticker that cannot be kept never stops the others; its card has no analysis
            logger.exception("analysis of %s could not be stored", snapshot.symbol)
            stage.errors[snapshot.symbol] = f"not stored: {type(exc).__name__}: {exc}"[:2000]

    analyze_all(analyst=analyst, snapshots=todo, budget=budget, on_result=store)
    analyses_publish(shared_tables=shared_tables, stage=stage)
    return analyses, stage


def analysis_fields(*, result: AnalysisResult, snapshot: TickerSnapshot) -> dict:
    """An analyst's answer as the Analysis row's fields: the one mapping, for stored and unsaved analyses alike."""
    return {
        "headline": result.headline,
        "phrase": result.phrase,
        "summary": result.summary,
        "stance": result.stance,
        "score": result.score,
        "points": result.points,
        "risks": result.risks,
        "automated": result.automated,
        "fallback_reason": result.fallback_reason,
        "data_as_of": snapshot.as_of,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
    }


def analysis_unsaved(*, day: dt.date, snapshot: TickerSnapshot, result: AnalysisResult) -> Analysis:
    """An analysis to show and never keep (a preview, a dry run)."""
    return Analysis(
        date=day,
        model=result.model,
        prompt_version=result.prompt_version,
        **analysis_fields(result=result, snapshot=snapshot),
    )


def analysis_store(
    *,
    ticker_id: int,
    day: dt.date,
    snapshot: TickerSnapshot,
    result: AnalysisResult,
    model: str,
    prompt_version: str,
) -> Analysis:
    """Keep the analysis under the analyst's cache key, with every exchange behind it; not yet published."""
    with transaction.atomic():
        analysis, _ = Analysis.objects.update_or_create(
            ticker_id=ticker_id,
            date=day,
            model=model,
            prompt_version=prompt_version,
            defaults={**analysis_fields(result=result, snapshot=snapshot), "published_at": None},
        )
        if result.calls:
            AnalystCall.objects.bulk_create(
                AnalystCall(
                    analysis=analysis,
                    response_format=call.get("response_format", ""),
                    messages=call.get("messages", []),
                    raw_reply=call.get("raw_reply", ""),
                    status=call.get("status"),
                    outcome=call.get("outcome", ""),
                    error=call.get("error", "")[:5000],
                    input_tokens=call.get("input_tokens", 0),
                    output_tokens=call.get("output_tokens", 0),
                    latency_ms=call.get("latency_ms", 0),
                )
                for call in result.calls
            )
    return analysis


def analysis_shared_item(analysis: Analysis) -> dict:
    """What other services read is what the email showed: a fallback is published under the rules' own key."""
    rules = RuleBasedAnalyst
    return {
        "ticker": analysis.ticker.symbol,
        "date": analysis.date.isoformat(),
        "model": rules.model if analysis.automated else analysis.model,
        "promptVersion": rules.prompt_version if analysis.automated else analysis.prompt_version,
        "headline": analysis.headline,
        "phrase": analysis.phrase,
        "summary": analysis.summary,
        "stance": analysis.stance,
        "score": analysis.score,
        "points": analysis.points,
        "risks": analysis.risks,
        "dataAsOf": analysis.data_as_of.isoformat() if analysis.data_as_of else None,
        "inputTokens": analysis.input_tokens,
        "outputTokens": analysis.output_tokens,
        "createdAt": timezone.now().isoformat(timespec="seconds"),
    }


def analyses_publish(*, shared_tables: SharedTables, stage: AnalysisStage | None = None) -> AnalysisStage:
    """Offer every unpublished analysis to the shared tables; one they refuse stays unpublished for the next run."""
    stage = stage or AnalysisStage()
    pending = Analysis.objects.filter(published_at__isnull=True).select_related("ticker").order_by("date", "id")
    failures_in_a_row = 0
    for analysis in pending[:PUBLISH_BACKLOG]:
        if failures_in_a_row >= PUBLISH_GIVE_UP_AFTER:
            # The tables are down, not this item: waiting out every item's retries would only delay the email.
            stage.publish_errors["the rest"] = f"not offered after {failures_in_a_row} failures in a row"
            break
        try:
            # False means the table already holds this key (first writer wins): published all the same.
            shared_tables.put_analysis(analysis_shared_item(analysis))
        except Exception as exc:  # a side output: never stops the stage or the email
            logger.warning("analysis %s not published to the shared tables: %s", analysis.pk, exc)
            stage.publish_errors[f"{analysis.ticker.symbol} {analysis.date.isoformat()}"] = (
                f"{type(exc).__name__}: {exc}"[:500]
            )
            failures_in_a_row += 1
            continue
        failures_in_a_row = 0
        Analysis.objects.filter(pk=analysis.pk, published_at__isnull=True).update(published_at=timezone.now())
        stage.published += 1
    return stage
