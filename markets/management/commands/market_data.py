"""python manage.py market_data: staff tools for the stored price history (delete bad data, refetch, update)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from markets import calendar
from markets.models import DailyBar, Ticker
from markets.providers import ProviderError
from markets.services import daily_bars_delete, market_data_update, ticker_history_refetch
from walter_site.commands import date_option


class Command(BaseCommand):
    help = "Delete bad bars (indicators are recomputed), refetch a ticker's history, or run the data update alone."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{delete,backfill,update}")
        delete = actions.add_parser(
            "delete", help="Delete a ticker's bars in a date range, here and in the shared table."
        )
        delete.add_argument("--ticker", required=True)
        delete.add_argument("--from", dest="start", required=True, help="First date to delete (YYYY-MM-DD).")
        delete.add_argument("--to", dest="end", required=True, help="Last date to delete (YYYY-MM-DD).")
        delete.add_argument("--dry-run", action="store_true", help="Say how many bars would go; delete nothing.")
        backfill = actions.add_parser("backfill", help="Fetch a ticker's whole history window again.")
        backfill.add_argument("--ticker", required=True)
        backfill.add_argument("--date", help="Last session of the window; default: the latest completed one.")
        update = actions.add_parser("update", help="Update every given ticker for one session (the data stage).")
        update.add_argument("--ticker", action="append", required=True, help="Repeat for several tickers.")
        update.add_argument("--date", help="Session (YYYY-MM-DD); default: the latest completed one.")

    def handle(self, *args, **options) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _delete(self, options: dict) -> None:
        symbol = options["ticker"].strip().upper()
        start = date_option(options["start"], "--from")
        end = date_option(options["end"], "--to")
        if end < start:
            raise CommandError(f"--to {end} is before --from {start}")
        if not Ticker.objects.filter(symbol=symbol).exists():
            raise CommandError(f"no ticker {symbol} is stored")
        if options["dry_run"]:
            count = DailyBar.objects.filter(ticker__symbol=symbol, date__gte=start, date__lte=end).count()
            self.stdout.write(f"Would delete {count} bars of {symbol} from {start} to {end} (dry run).")
            return
        result = daily_bars_delete(symbol=symbol, start=start, end=end)
        self.stdout.write(
            f"Deleted {result.bars} bars of {symbol} from {start} to {end} and {result.shared_items} shared items; "
            f"republished {result.republished} items with recomputed indicators."
        )

    def _backfill(self, options: dict) -> None:
        symbol = options["ticker"].strip().upper()
        day = date_option(options["date"], "--date") if options["date"] else calendar.latest_completed_session()
        try:
            update = ticker_history_refetch(symbol=symbol, day=day)
        except ProviderError as exc:
            raise CommandError(f"backfill of {symbol} failed: {exc}") from None
        if symbol in update.failed:
            raise CommandError(f"backfill of {symbol} failed: {update.failed[symbol]}")
        note = f" ({update.refetched[symbol]})" if symbol in update.refetched else ""
        self.stdout.write(
            f"Fetched {symbol}'s history up to {day} in {update.requests} request(s){note}; "
            f"published {update.shared_items_written} items."
        )

    def _update(self, options: dict) -> None:
        day = date_option(options["date"], "--date") if options["date"] else calendar.latest_completed_session()
        update = market_data_update(day=day, symbols=options["ticker"])
        parts = [
            f"{day} ({update.plan}): {len(update.updated)} updated, {len(update.backfilled)} backfilled",
            f"{len(update.stale)} stale, {len(update.failed)} failed, {len(update.flagged)} flagged",
            f"{update.requests} request(s)",
        ]
        if update.no_data:
            parts.append(update.no_data)
        self.stdout.write(" · ".join(parts))
        for symbol, reason in sorted(update.failed.items()):
            self.stderr.write(f"{symbol}: {reason}")
        if update.failed and not (update.updated or update.backfilled):
            raise CommandError(f"no ticker could be updated for {day}")
