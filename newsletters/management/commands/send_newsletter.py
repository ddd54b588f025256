"""python manage.py send_newsletter --email ADDRESS [--date D]: one subscriber's issue, now."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from markets import calendar
from newsletters.management.commands.run_daily import parse_date
from newsletters.models import Delivery
from newsletters.services import NothingToSend, delivery_send_now
from subscriptions.models import Subscriber


class Command(BaseCommand):
    help = "Send one subscriber their issue now (recorded, so the daily run does not send it again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The subscriber's address.")
        parser.add_argument("--date", help="Session to report on (YYYY-MM-DD); default: the latest completed one.")

    def handle(self, *args, **options) -> None:
        day = parse_date(options["date"]) if options["date"] else calendar.latest_completed_session()
        reason = calendar.closed_reason(day)
        if reason:
            raise CommandError(f"no market session on {day.isoformat()}: {reason}")
        subscriber = Subscriber.objects.filter(email__iexact=options["email"].strip()).first()
        if subscriber is None:
            raise CommandError(f"no subscriber with the address {options['email']!r}")
        try:
            delivery = delivery_send_now(subscriber=subscriber, day=day)
        except NothingToSend as exc:
            raise CommandError(str(exc)) from None
        if delivery.status != Delivery.Status.SENT:
            raise CommandError(f"the issue of {day.isoformat()} to {subscriber.email} was not sent: {delivery.error}")
        self.stdout.write(
            f"Sent the issue of {day.isoformat()} to {subscriber.email} "
            f"({', '.join(delivery.symbols)}; message id {delivery.message_id})."
        )
