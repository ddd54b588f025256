"""python manage.py run_daily: the daily newsletter, from market data to sent emails."""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from markets import calendar
from newsletters.locks import LockHeld, exclusive
from newsletters.models import DailyRun, Delivery, Issue
from newsletters.observability import run_crashed, run_finished, run_scope
from newsletters.pipeline import STAGES, Progress, daily_run
from newsletters.selectors import deliveries_unfinished
from newsletters.stopping import Stopped, stop, stop_on_signals
from walter_site.commands import date_option
from walter_site.redaction import redact


def _hung_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]


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
        day = date_option(options["date"]) if options["date"] else calendar.latest_completed_session()
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
            # SIGTERM (ECS stopping the task) or SIGINT: stop handing out messages, record those in flight, exit.
            with stop_on_signals(), exclusive("run_daily"), run_scope():
                try:
                    run = self._run(day, stages, options)
                except Stopped as exc:
                    raise CommandError(f"run for {day.isoformat()} stopped before it was recorded: {exc}") from None
                except Exception as exc:
                    # Before the run could record itself (configuration, database): alert all the same.
                    with stop.graceful():
                        run_crashed(day=day, stages=stages, error=exc)
                    raise CommandError(
                        f"run for {day.isoformat()} failed: {type(exc).__name__}: {redact(str(exc))}"
                    ) from exc
                if run.status != DailyRun.Status.RUNNING:  # else queued with --no-wait: the last worker finishes it
                    with stop.graceful():
                        run_finished(run)
        except LockHeld:
            raise CommandError("another run_daily is already running; not starting a second one") from None
        finally:
            stop.clear()
        self.stdout.write(run.summary)
        if "delivery" in stages and not run.dry_run:
            self._report_unsent(day, run, options["resend_ambiguous"])
        if run.status in (DailyRun.Status.FAILED, DailyRun.Status.INTERRUPTED):
            line = f"run for {day.isoformat()} {run.status}: {run.errors.get('run', 'see the DailyRun record')}"
            if run.status == DailyRun.Status.INTERRUPTED and _hung_threads():
                # A send still hanging in the email backend after the grace period (recorded as in flight) would
                # hold the interpreter's exit until its timeout, past ECS's SIGKILL: everything is recorded, so go.
                self.stderr.write(f"CommandError: {line}")
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(1)
            raise CommandError(line)

    def _report_unsent(self, day: dt.date, run: DailyRun, resend_ambiguous: bool) -> None:
        """Say who has no copy yet and why; never "everyone has it" while someone has nothing."""
        ambiguous = run.errors.get("delivery_ambiguous") if isinstance(run.errors, dict) else None
        if ambiguous and not resend_ambiguous:
            listed = ", ".join(ambiguous["tokens"])
            more = ambiguous["count"] - len(ambiguous["tokens"])
            self.stdout.write(
                f"{ambiguous['count']} were in flight and were not sent again (--resend-ambiguous): they may "
                f"already have arrived. Delivery tokens: {listed}{f' and {more} more' if more > 0 else ''}."
            )
        if run.status == DailyRun.Status.RUNNING:
            return  # --no-wait: the summary says what was queued; the workers finish the run
        if run.emails_sent or run.status in (
            DailyRun.Status.FAILED,
            DailyRun.Status.INTERRUPTED,
            DailyRun.Status.SKIPPED,
        ):
            return
        issue = Issue.objects.filter(date=day).first()
        unfinished = deliveries_unfinished(issue=issue) if issue else {}
        left = sum(n for status, n in unfinished.items() if status != Delivery.Status.SENDING)
        if left:
            self.stdout.write(f"Nothing sent for {day.isoformat()}: {left} emails still to send (see the admin).")
        elif not unfinished:
            self.stdout.write(f"Nothing new to send for {day.isoformat()}: every subscriber already has this issue.")

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
