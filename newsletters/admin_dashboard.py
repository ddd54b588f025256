"""The daily-runs dashboard in the admin: the last runs in one table and a chart of emails sent and failed per day.

The chart is inline SVG drawn on the server (no script, nothing from another site), so it works under the site's
Content Security Policy and in any browser the admin works in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

from .models import DailyRun

RUNS_SHOWN = 30
CHART_HEIGHT = 160
SLOT_WIDTH = 28
BAR_WIDTH = 11


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    kind: str  # "sent" or "failed"
    title: str


@dataclass(frozen=True)
class DayTotals:
    date: str
    sent: int
    failed: int


def recent_runs(limit: int = RUNS_SHOWN) -> list[DailyRun]:
    return list(DailyRun.objects.order_by("-started_at", "-pk")[:limit])


def per_day(runs: list[DailyRun]) -> list[DayTotals]:
    """Emails sent and failed per session date, oldest first; dry runs send nothing and are left out."""
    days: OrderedDict[str, list[int]] = OrderedDict()
    for run in sorted(runs, key=lambda r: r.date):
        if run.dry_run or run.status == DailyRun.Status.SKIPPED:
            continue
        totals = days.setdefault(run.date.isoformat(), [0, 0])
        totals[0] += run.emails_sent
        totals[1] += run.emails_failed
    return [DayTotals(date, sent, failed) for date, (sent, failed) in days.items()]


def chart_bars(days: list[DayTotals], *, height: int = CHART_HEIGHT) -> tuple[list[Bar], int]:
    """Two bars per day (sent, failed) scaled to the busiest day; returns the bars and the scale's top value."""
    top = max([max(d.sent, d.failed) for d in days] or [0]) or 1
    bars = []
    for i, day in enumerate(days):
        for j, (kind, value) in enumerate((("sent", day.sent), ("failed", day.failed))):
            bar_height = round(value * height / top)
            if value and not bar_height:
                bar_height = 1  # a day with any failure must show
            bars.append(
                Bar(
                    x=i * SLOT_WIDTH + 3 + j * BAR_WIDTH,
                    y=height - bar_height,
                    width=BAR_WIDTH - 1,
                    height=bar_height,
                    kind=kind,
                    title=f"{day.date}: {value} {kind}",
                )
            )
    return bars, top


def _row(run: DailyRun) -> dict:
    durations = run.durations or {}
    return {
        "run": run,
        "data_s": durations.get("data"),
        "analysis_s": durations.get("analysis"),
        "delivery_s": durations.get("delivery"),
        "total_s": round(sum(durations.values()), 1) if durations else None,
    }


def dashboard_context(*, limit: int = RUNS_SHOWN) -> dict:
    runs = recent_runs(limit)
    days = per_day(runs)
    bars, top = chart_bars(days)
    totals = {
        "emails_sent": sum(r.emails_sent for r in runs),
        "emails_failed": sum(r.emails_failed for r in runs),
        "emails_skipped": sum(r.emails_skipped for r in runs),
        "analyses_fallback": sum(r.analyses_fallback for r in runs),
        "input_tokens": sum(r.input_tokens for r in runs),
        "output_tokens": sum(r.output_tokens for r in runs),
        "estimated_cost_usd": sum((r.estimated_cost_usd for r in runs), Decimal(0)),
        "failed_runs": sum(r.status == DailyRun.Status.FAILED for r in runs),
        "partial_runs": sum(r.status == DailyRun.Status.PARTIAL for r in runs),
    }
    return {
        "rows": [_row(r) for r in runs],
        "days": days,
        "bars": bars,
        "chart_top": top,
        "chart_height": CHART_HEIGHT,
        "chart_width": max(len(days), 1) * SLOT_WIDTH,
        "chart_labels": [
            {"x": i * SLOT_WIDTH + SLOT_WIDTH // 2, "text": d.date[5:]}
            for i, d in enumerate(days)
            if i in (0, len(days) - 1) or i % 5 == 0
        ],
        "totals": totals,
        "runs_shown": limit,
    }


def dashboard_view(request: HttpRequest, *, model_admin: ModelAdmin) -> TemplateResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Daily runs dashboard",
        "opts": model_admin.opts,
        **dashboard_context(),
    }
    return TemplateResponse(request, "admin/newsletters/dailyrun/dashboard.html", context)
