"""python manage.py seed_demo: demo tickers and a handful of demo subscribers (safe to run again)."""

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from markets.providers.demo import DEMO_UNIVERSE
from markets.services import ticker_ensure
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create

DEMO_SUBSCRIBERS = [
    ("ada@example.com", Subscriber.Status.ACTIVE, ["NVDA", "MSFT", "AAPL"]),
    ("grace@example.com", Subscriber.Status.ACTIVE, ["AMZN", "GOOGL", "META", "NFLX"]),
    ("linus@example.com", Subscriber.Status.ACTIVE, ["TSLA", "AMD", "INTC"]),
    ("margaret@example.com", Subscriber.Status.ACTIVE, ["JPM", "V", "BRK.B", "XOM", "KO"]),
    ("ken@example.com", Subscriber.Status.ACTIVE, ["SPY", "QQQ"]),
    ("barbara@example.com", Subscriber.Status.PENDING, ["IBM", "ORCL"]),
    ("dennis@example.com", Subscriber.Status.PAUSED, ["CSCO"]),
    ("edsger@example.com", Subscriber.Status.UNSUBSCRIBED, ["DIS"]),
]


class Command(BaseCommand):
    help = "Create the demo tickers and demo subscribers (existing ones are left as they are)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quiet", action="store_true", help="Print nothing on success.")

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        for symbol, name in DEMO_UNIVERSE.items():
            ticker_ensure(symbol=symbol, name=name)
        created = 0
        for email, status, symbols in DEMO_SUBSCRIBERS:
            if not Subscriber.objects.filter(email__iexact=email).exists():
                subscriber_create(email=email, symbols=symbols, status=status)
                created += 1
        if not options["quiet"]:
            active = Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count()
            self.stdout.write(
                f"Demo data ready: {len(DEMO_UNIVERSE)} tickers, {created} new subscribers ({active} active)."
            )
