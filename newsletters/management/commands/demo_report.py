"""python manage.py demo_report: where the demo's emails and archive are, and how to look at them."""

import datetime as dt
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.urls import reverse

from newsletters.links import view_url
from newsletters.models import DailyRun, Delivery


class Command(BaseCommand):
    help = "Print where the latest run's emails and archived copies are, and how to preview them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", type=int, help="Only count emails written after this Unix time.")

    def handle(self, *args, **options) -> None:
        outbox = Path(settings.EMAIL_FILE_PATH)
        since = options["since"] or 0
        every = sorted(outbox.glob("*.eml")) if outbox.exists() else []
        emails = [p for p in every if p.stat().st_mtime >= since]
        run = DailyRun.objects.exclude(status=DailyRun.Status.SKIPPED).order_by("-started_at").first()
        archive = Path(settings.STORAGES["archive"]["OPTIONS"].get("location", ""))
        out = self.stdout.write
        out("")
        out(f"Emails written this run: {len(emails)} ({len(every)} in all) in {outbox}/")
        if run:
            day = run.date
            out(
                f"Archived copies (.eml with its charts, .html its HTML part): {archive / 'emails' / f'{day:%Y/%m/%d}'}/"
            )
            delivery = Delivery.objects.filter(issue__date=day, status="sent").exclude(subscriber=None).first()
            if delivery:
                out("View in browser, as a subscriber does: python manage.py runserver, then open")
                out(f"  {view_url(str(delivery.token))}")
                url = reverse("newsletters:preview", args=[delivery.subscriber_id, day.isoformat()])
                out("Preview pages (staff): python manage.py createsuperuser, then python manage.py runserver and open")
                out(f"  http://localhost:8000{url}")
        out(f"Database: {settings.DATABASES['default']['NAME']}")
        out(f"Report generated {dt.datetime.now():%Y-%m-%d %H:%M}.")
