"""What an operator sees of a daily run without opening the admin: log lines tagged with the run id, one summary
line per run, CloudWatch metrics (Embedded Metric Format) and an alert when a run fails or half-fails.

``run_daily`` wraps the run in ``run_scope()`` and calls ``run_finished(run)``; the pipeline calls
``run_started(run)`` once the DailyRun row exists, so every line logged from then on carries its id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from django.conf import settings
from django.core.mail import mail_admins

from walter_site.logging import log_context, log_context_bind
from walter_site.redaction import redact

from .models import DailyRun

logger = logging.getLogger("walter.run")

ALERT_STATUSES = (DailyRun.Status.FAILED, DailyRun.Status.PARTIAL, DailyRun.Status.INTERRUPTED)

# Name → (DailyRun attribute or callable, CloudWatch unit).
METRICS = {
    "EmailsSent": (lambda run: run.emails_sent, "Count"),
    "EmailsFailed": (lambda run: run.emails_failed, "Count"),
    "EmailsSkipped": (lambda run: run.emails_skipped, "Count"),
    "AnalysesCreated": (lambda run: run.analyses_created, "Count"),
    "AnalysesFallback": (lambda run: run.analyses_fallback, "Count"),
    "TickersFailed": (lambda run: run.tickers_failed, "Count"),
    "DurationSeconds": (lambda run: round(sum((run.durations or {}).values()), 3), "Seconds"),
    "RunFailed": (lambda run: int(run.status == DailyRun.Status.FAILED), "Count"),
    "RunPartial": (lambda run: int(run.status == DailyRun.Status.PARTIAL), "Count"),
    "RunInterrupted": (lambda run: int(run.status == DailyRun.Status.INTERRUPTED), "Count"),
}


@contextlib.contextmanager
def run_scope() -> Iterator[None]:
    """The log context of one run: whatever the run binds is forgotten when it ends."""
    with log_context():
        yield


def run_started(run: DailyRun) -> None:
    log_context_bind(run_id=run.pk)
    logger.info("daily run started for %s (stages %s%s)", run.date, run.stages, ", dry run" if run.dry_run else "")


def run_finished(run: DailyRun, *, stream: TextIO | None = None) -> None:
    """The run's summary line, its metrics, and an alert when it failed or partly failed."""
    log_context_bind(run_id=run.pk)
    level = logging.ERROR if run.status in (DailyRun.Status.FAILED, DailyRun.Status.INTERRUPTED) else logging.INFO
    logger.log(
        level,
        "daily run finished: %s",
        run.summary,
        extra={
            "run_status": run.status,
            "run_date": run.date.isoformat(),
            **{name.lower(): value(run) for name, (value, _) in METRICS.items()},
        },
    )
    if settings.METRICS == "emf" and run.status != DailyRun.Status.SKIPPED:
        emit_emf(run, stream=stream)
    if run.status in ALERT_STATUSES:
        alert(run)


def run_crashed(*, day, stages, error: BaseException) -> None:
    """A run that failed before its DailyRun was recorded still logs, counts as failed and alerts."""
    logger.exception("daily run for %s failed before it was recorded", day, exc_info=error)
    run = DailyRun(
        date=day,
        stages=",".join(stages),
        status=DailyRun.Status.FAILED,
        errors={"run": f"{type(error).__name__}: {error}"},
        summary=f"{day.isoformat()} failed before it was recorded: {type(error).__name__}: {error}",
    )
    run_finished(run)


def run_found_killed(run: DailyRun) -> None:
    """A run left "running" by a killed process, found by the next run: it could not alert, so it alerts now."""
    logger.error("daily run %s for %s was killed before it recorded its outcome", run.pk, run.date)
    alert(run)


def emf_document(run: DailyRun, *, timestamp_ms: int | None = None) -> dict:
    """One CloudWatch Embedded Metric Format object: the metrics of a run, dimension Stage."""
    return {
        "_aws": {
            "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": settings.METRICS_NAMESPACE,
                    "Dimensions": [["Stage"]],
                    "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in METRICS.items()],
                }
            ],
        },
        "Stage": settings.STAGE,
        **{name: value(run) for name, (value, _) in METRICS.items()},
        # Properties, searchable in CloudWatch Logs Insights but not metrics.
        "RunId": run.pk,
        "RunDate": run.date.isoformat(),
        "Status": run.status,
        "DryRun": run.dry_run,
        "InputTokens": run.input_tokens,
        "OutputTokens": run.output_tokens,
        "EstimatedCostUSD": float(run.estimated_cost_usd),
    }


def emit_emf(run: DailyRun, *, stream: TextIO | None = None) -> None:
    """Written straight to stdout, not through logging: CloudWatch Logs wants the bare JSON object as the event."""
    stream = stream or sys.stdout
    stream.write(json.dumps(emf_document(run), separators=(",", ":")) + "\n")
    stream.flush()


def alert_text(run: DailyRun) -> tuple[str, str]:
    subject = f"Walter {settings.STAGE}: daily run for {run.date.isoformat()} {run.status}"
    run_id = run.pk if run.pk is not None else "none (the run stopped before it was recorded)"
    lines = [run.summary, "", f"Run id: {run_id}", f"Status: {run.get_status_display()}"]
    if run.errors:
        lines += ["", "Errors:", json.dumps(run.errors, indent=2, sort_keys=True, default=str)]
    lines += ["", "Details: the Daily runs page of the admin, and the task's log lines tagged with this run id."]
    return subject, "\n".join(lines)


def alert(run: DailyRun) -> None:
    """Email ADMINS and publish to SNS. A broken alert channel is logged, never allowed to mask the run's result.

    An alert is kept in inboxes and SNS subscribers that erasure never reaches: it names no address, even when
    the run was never saved (``run_crashed``) and so never went through the run record's redaction.
    """
    subject, body = (redact(text) for text in alert_text(run))
    try:
        mail_admins(subject, body)
    except Exception:
        logger.exception("could not email the alert for run %s to ADMINS", run.pk)
    if settings.ALERT_SNS_TOPIC_ARN:
        try:
            import boto3

            boto3.client("sns", region_name=settings.AWS_REGION).publish(
                TopicArn=settings.ALERT_SNS_TOPIC_ARN,
                # SNS subjects: ASCII, no line breaks, under 100 characters.
                Subject=subject.encode("ascii", "replace").decode()[:99],
                Message=body,
                MessageAttributes={
                    "status": {"DataType": "String", "StringValue": run.status},
                    "stage": {"DataType": "String", "StringValue": settings.STAGE},
                },
            )
        except Exception:
            logger.exception("could not publish the alert for run %s to SNS", run.pk)
