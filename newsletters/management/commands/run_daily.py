"""python manage.py run_daily: the daily newsletter, from market data to sent emails."""

from __future__ import annotations

import datetime as dt
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from markets import calendar
from newsletters.locks import LockHeld, exclusive
from newsletters.models import DailyRun
from newsletters.observability import run_crashed, run_finished, run_scope
from newsletters.pipeline import STAGES, Progress, daily_run


def parse_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--date {value!r} is not a valid date; use YYYY-MM-DD, for example 2026-11-20") from None


class Command(BaseCommand):
    help = "Fetch market data, analyse every followed ticker and send each subscriber their daily email."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", help="Session to report on (YYYY-MM-DD); default: the latest completed one.")
        parser.add_argument("--dry-run", action="store_true", help="Fetch and analyse, but send and archive nothing.")
        parser.add_argument("--stage", choices=STAGES, help="Run only this stage.")
        parser.add_argument("--limit", type=int, help="Send at most N emails in this run.")
        parser.add_argument(
            "--resend-ambiguous",
            action="store_true",
            help="Also send the emails an earlier, interrupted run may or may not have sent (some may arrive twice).",
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="With a broker (CELERY_BROKER_URL): return once the batches are queued; the worker that finishes "
            "the last one records the run.",
        )

    def handle(self, *args, **options) -> None:
        day = parse_date(options["date"]) if options["date"] else calendar.latest_completed_session()
        if options["limit"] is not None and options["limit"] < 0:
            raise CommandError("--limit must be zero or more")
        if options["no_wait"] and not settings.CELERY_BROKER_URL:
            raise CommandError("--no-wait needs a broker (CELERY_BROKER_URL); without one the run sends in-process")
        if options["no_wait"] and options["limit"] is not None:
            raise CommandError("--no-wait and --limit do not go together: a limited run waits for what it queued")
        reason = calendar.closed_reason(day)
        if reason:
            skipped = DailyRun.objects.create(
                date=day, status=DailyRun.Status.SKIPPED, summary=f"No session: {reason}", stages=""
            )
            with run_scope():
                run_finished(skipped)
            self.stdout.write(f"No market session: {reason}. Nothing to send.")
            return
        stages = [options["stage"]] if options["stage"] else list(STAGES)
        try:
            with exclusive("run_daily"), run_scope():
                try:
                    run = self._run(day, stages, options)
                except Exception as exc:
                    # Before the run could record itself (configuration, database): alert all the same.
                    run_crashed(day=day, stages=stages, error=exc)
                    raise CommandError(f"run for {day.isoformat()} failed: {type(exc).__name__}: {exc}") from exc
                if run.status != DailyRun.Status.RUNNING:  # else queued with --no-wait: the last worker finishes it
                    run_finished(run)
        except LockHeld:
            raise CommandError("another run_daily is already running; not starting a second one") from None
        self.stdout.write(run.summary)
        ambiguous = run.errors.get("delivery_ambiguous") if isinstance(run.errors, dict) else None
        if ambiguous and not options["resend_ambiguous"]:
            listed = ", ".join(ambiguous["emails"])
            more = ambiguous["count"] - len(ambiguous["emails"])
            self.stdout.write(
                f"{ambiguous['count']} emails were in flight when an earlier run stopped and may already have "
                f"arrived; not sent again: {listed}{f' and {more} more' if more > 0 else ''}. "
                "Run with --resend-ambiguous to send them."
            )
        if run.status == DailyRun.Status.RUNNING:
            return  # --no-wait: the summary says what was queued; the workers finish the run
        if "delivery" in stages and not run.dry_run and run.emails_sent == 0 and run.status != DailyRun.Status.FAILED:
            self.stdout.write(f"Nothing new to send for {day.isoformat()}: every subscriber already has this issue.")
        if run.status == DailyRun.Status.FAILED:
            raise CommandError(f"run for {day.isoformat()} failed: {run.errors.get('run', 'see the DailyRun record')}")

    def _run(self, day: dt.date, stages: list[str], options: dict) -> DailyRun:
        run_options = {
            "day": day,
            "stages": stages,
            "dry_run": options["dry_run"],
            "limit": options["limit"],
            "resend_ambiguous": options["resend_ambiguous"],
            "no_wait": options["no_wait"],
        }
        if not sys.stdout.isatty() or options.get("verbosity", 1) < 1:
            return daily_run(**run_options)
        from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        with Bar(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = {}

            def start(label: str, total: int) -> None:
                task["id"] = bar.add_task(label, total=total)

            def advance(n: int) -> None:
                if "id" in task:
                    bar.advance(task["id"], n)

            return daily_run(**run_options, progress=Progress(start=start, advance=advance))
