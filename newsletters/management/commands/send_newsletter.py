"""python manage.py send_newsletter --email ADDRESS [--date D] [--again]: one subscriber's issue, now."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from markets import calendar
from newsletters.jobs import send_job_create
from newsletters.models import SendJob
from newsletters.services import NothingToSend
from subscriptions.models import Subscriber
from walter_site.commands import date_option


class Command(BaseCommand):
    help = "Send one subscriber their issue now (recorded, so the daily run does not send it again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The subscriber's address.")
        parser.add_argument("--date", help="Session to report on (YYYY-MM-DD); default: the latest completed one.")
        parser.add_argument("--again", action="store_true", help="Send it even if they already received it.")

    def handle(self, *args, **options) -> None:
        day = date_option(options["date"]) if options["date"] else calendar.latest_completed_session()
        reason = calendar.closed_reason(day)
        if reason:
            raise CommandError(f"no market session on {day.isoformat()}: {reason}")
        subscriber = Subscriber.objects.filter(email__iexact=options["email"].strip()).first()
        if subscriber is None:
            raise CommandError(f"no subscriber with the address {options['email']!r}")
        try:
            job = send_job_create(subscriber=subscriber, day=day, again=options["again"], source="command")
        except NothingToSend as exc:
            raise CommandError(str(exc)) from None
        # With a broker a worker runs the job: follow its record as the page does.
        deadline = time.monotonic() + settings.CELERY_TASK_TIME_LIMIT
        while job.status in SendJob.UNFINISHED and time.monotonic() < deadline:
            time.sleep(0.5)
            job.refresh_from_db()
        if job.status in SendJob.UNFINISHED:
            raise CommandError(f"job {job.token} is still {job.status}: is a worker running?")
        if job.status != SendJob.Status.SENT:
            raise CommandError(f"the issue of {day.isoformat()} to {subscriber.email} was not sent: {job.reason}")
        delivery = job.delivery
        self.stdout.write(
            f"Sent the issue of {day.isoformat()} to {subscriber.email} "
            f"({', '.join(delivery.symbols)}; message id {delivery.message_id})."
            + (f" ({job.reason})" if job.reason else "")
        )
