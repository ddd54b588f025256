"""python manage.py requeue_dead_letters [--limit N] [--dry-run]: failed delivery batches back to the queue."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from newsletters.dead_letters import DeadLetterError, dead_letters_requeue


class Command(BaseCommand):
    help = (
        "Put the delivery batches of the dead letters (SQS's dead-letter queue, or Redis's list) back on the "
        "delivery queue, after the cause is fixed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, help="Move at most N batches.")
        parser.add_argument("--dry-run", action="store_true", help="Only count what waits there.")

    def handle(self, *args, **options) -> None:
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be 1 or more")
        try:
            result = dead_letters_requeue(limit=options["limit"], dry_run=options["dry_run"])
        except DeadLetterError as exc:
            raise CommandError(str(exc)) from None
        if options["dry_run"]:
            self.stdout.write(f"{result.waiting} batches wait in the dead letters; nothing moved (dry run).")
        else:
            self.stdout.write(f"Requeued {result.moved} batches; {result.waiting} left in the dead letters.")
