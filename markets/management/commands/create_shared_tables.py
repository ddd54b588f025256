"""python manage.py create_shared_tables: create the shared DynamoDB tables for development, if missing."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from markets.shared_tables import get_shared_tables


class Command(BaseCommand):
    help = (
        "Create the shared tables (ticker-data-{stage}, ticker-analyses-{stage}) with on-demand billing when they "
        "are missing. With the database backend the tables are migrations and nothing is done."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stage", help="Table name suffix; default: SHARED_TABLES_STAGE.")

    def handle(self, *args, **options) -> None:
        if options["stage"]:
            settings.SHARED_TABLES_STAGE = options["stage"]
        tables = get_shared_tables()
        try:
            created = tables.create_tables()
        except Exception as exc:  # botocore's errors (no endpoint, no credentials) carry one readable line
            raise CommandError(f"could not create the shared tables: {type(exc).__name__}: {exc}") from None
        backend = type(tables).__name__
        if created:
            self.stdout.write(f"Created {', '.join(created)} ({backend}).")
        else:
            self.stdout.write(f"Nothing to create: the shared tables already exist ({backend}).")
