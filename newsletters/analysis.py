"""The analysis stage: one analysis per followed ticker per session, cached, never per subscriber."""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from markets.models import Ticker
from markets.shared_tables import SharedTables, get_shared_tables
from markets.snapshots import TickerSnapshot

from .analysts import AnalysisResult, Analyst, get_analyst
from .analysts.rule_based import RuleBasedAnalyst
from .models import Analysis, AnalystCall

logger = logging.getLogger("walter.analysis")


@dataclass
class AnalysisStage:
    created: int = 0
    cached: int = 0
    fallback: int = 0
    skipped: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: dict[str, str] = field(default_factory=dict)


def _analyze_or_fall_back(analyst: Analyst, snapshot: TickerSnapshot) -> AnalysisResult:
    try:
        return analyst.analyze(snapshot)
    except Exception as exc:  # any failure of the model degrades to the rule-based analysis for this ticker
        logger.warning("analysis of %s fell back to rules: %s", snapshot.symbol, exc)
        result = RuleBasedAnalyst().analyze(snapshot)
        result.fallback_reason = f"{type(exc).__name__}: {exc}"[:2000]
        usage = getattr(exc, "usage", None) or (0, 0)
        result.input_tokens, result.output_tokens = usage
        result.calls = list(getattr(exc, "calls", None) or [])
        return result


def analyze_all(*, analyst: Analyst, snapshots: list[TickerSnapshot]) -> list[AnalysisResult]:
    """Each snapshot's analysis, in order, ``analyst.parallelism`` at a time; a failure falls back per ticker."""
    parallelism = max(1, int(getattr(analyst, "parallelism", 1)))
    if parallelism > 1 and len(snapshots) > 1:
        with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="analyst") as pool:
            return list(pool.map(lambda snap: _analyze_or_fall_back(analyst, snap), snapshots))
    return [_analyze_or_fall_back(analyst, snap) for snap in snapshots]


def stored_analyses(*, day: dt.date, symbols: list[str], analyst: Analyst | None = None) -> dict[str, Analysis]:
    analyst = analyst or get_analyst()
    rows = Analysis.objects.filter(
        date=day, ticker__symbol__in=symbols, model=analyst.model, prompt_version=analyst.prompt_version
    ).select_related("ticker")
    return {a.ticker.symbol: a for a in rows}


def analyses_ensure(
    *,
    day: dt.date,
    snapshots: dict[str, TickerSnapshot],
    analyst: Analyst | None = None,
    shared_tables: SharedTables | None = None,
) -> tuple[dict[str, Analysis], AnalysisStage]:
    """Every analysable ticker's analysis for ``day``: from the cache, else from the analyst (concurrently)."""
    analyst = analyst or get_analyst()
    shared_tables = shared_tables or get_shared_tables()
    stage = AnalysisStage()
    is_rules = isinstance(analyst, RuleBasedAnalyst)
    existing = stored_analyses(day=day, symbols=list(snapshots), analyst=analyst)
    # A fallback is retried on the next run; a model answer is final.
    done = {s: a for s, a in existing.items() if is_rules or not a.fallback_reason}
    stage.cached = len(done)
    todo = [snap for sym, snap in sorted(snapshots.items()) if sym not in done and snap.has_data and not snap.stale]
    stage.skipped = sum(1 for s in snapshots.values() if not s.has_data or s.stale)
    results = analyze_all(analyst=analyst, snapshots=todo)

    ticker_ids = dict(Ticker.objects.filter(symbol__in=[s.symbol for s in todo]).values_list("symbol", "id"))
    analyses = dict(done)
    for snapshot, result in zip(todo, results, strict=False):
        stage.input_tokens += result.input_tokens
        stage.output_tokens += result.output_tokens
        if result.fallback_reason:
            stage.fallback += 1
            stage.errors[snapshot.symbol] = result.fallback_reason
        else:
            stage.created += 1
        analyses[snapshot.symbol] = analysis_store(
            ticker_id=ticker_ids[snapshot.symbol],
            day=day,
            snapshot=snapshot,
            result=result,
            model=analyst.model,
            prompt_version=analyst.prompt_version,
            shared_tables=shared_tables,
        )
    return analyses, stage


def analysis_store(
    *,
    ticker_id: int,
    day: dt.date,
    snapshot: TickerSnapshot,
    result: AnalysisResult,
    model: str,
    prompt_version: str,
    shared_tables: SharedTables,
) -> Analysis:
    """Keep the analysis under the analyst's cache key and publish it to the shared table."""
    with transaction.atomic():
        analysis, _ = Analysis.objects.update_or_create(
            ticker_id=ticker_id,
            date=day,
            model=model,
            prompt_version=prompt_version,
            defaults={
                "headline": result.headline,
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
            },
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
    # What other services read is what the email showed: a fallback is published under the rules' own key.
    shared_tables.put_analysis(
        {
            "ticker": snapshot.symbol,
            "date": day.isoformat(),
            "model": result.model if result.fallback_reason else model,
            "promptVersion": result.prompt_version if result.fallback_reason else prompt_version,
            "headline": result.headline,
            "summary": result.summary,
            "stance": result.stance,
            "score": result.score,
            "points": result.points,
            "risks": result.risks,
            "dataAsOf": snapshot.as_of.isoformat() if snapshot.as_of else None,
            "inputTokens": result.input_tokens,
            "outputTokens": result.output_tokens,
            "createdAt": timezone.now().isoformat(timespec="seconds"),
        }
    )
    return analysis
