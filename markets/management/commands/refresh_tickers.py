"""python manage.py refresh_tickers: load the ticker directory that search and the forms read, from the provider."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from markets.providers import ProviderError
from markets.services import ticker_directory_refresh


class Command(BaseCommand):
    help = (
        "Replace the ticker directory (every listed US stock, searched by the subscribe and preferences pages) with "
        "the market-data provider's list. The daily job does this once a day; run it after a fresh install."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-stale", action="store_true", help="Do nothing when the directory was already refreshed today."
        )

    def handle(self, *args, **options) -> None:
        try:
            result = ticker_directory_refresh(force=not options["if_stale"])
        except (ProviderError, ImproperlyConfigured) as exc:
            raise CommandError(f"the ticker directory was not refreshed (the previous list is kept): {exc}") from None
        if result.skipped:
            self.stdout.write(f"{result.skipped}: {result.listed} tickers listed.")
            return
        self.stdout.write(
            f"Ticker directory refreshed: {result.listed} tickers listed, {result.removed} removed, "
            f"{result.requests} request(s)."
        )
