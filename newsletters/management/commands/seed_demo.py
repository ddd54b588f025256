"""python manage.py seed_demo: demo tickers and a handful of demo subscribers (safe to run again)."""

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from markets.providers.demo import DEMO_UNIVERSE
from markets.services import ticker_ensure
from newsletters.demo import DEMO_HOLDINGS, DEMO_SUBSCRIBERS
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create


class Command(BaseCommand):
    help = "Create the demo subscribers, some with holdings, and the tickers they follow (existing ones are left as they are)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quiet", action="store_true", help="Print nothing on success.")

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        # Only the followed tickers get a row: the other demo names are in the ticker directory, ready for search,
        # and a row of their own would sit in the admin with no history, as if their data had failed.
        followed = sorted({symbol for _, _, symbols in DEMO_SUBSCRIBERS for symbol in symbols})
        for symbol in followed:
            ticker_ensure(symbol=symbol, name=DEMO_UNIVERSE[symbol])
        created = 0
        for email, status, symbols in DEMO_SUBSCRIBERS:
            if not Subscriber.objects.filter(email__iexact=email).exists():
                subscriber_create(email=email, symbols=symbols, status=status, holdings=DEMO_HOLDINGS.get(email))
                created += 1
        if not options["quiet"]:
            active = Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count()
            self.stdout.write(
                f"Demo data ready: {len(followed)} tickers for the demo subscribers ({len(DEMO_UNIVERSE)} listed for "
                f"search), {created} new subscribers ({active} active)."
            )
