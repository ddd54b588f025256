"""Staff's view of subscribers: who follows what, in which state, and the few changes staff may make."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet
from django.dispatch import receiver
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.utils.html import format_html

from .models import Subscriber, shares_text
from .selectors import subscriber_export_rows, subscriber_status_counts
from .services import (
    subscriber_erase,
    subscriber_resend_confirmation,
    subscriber_set_tickers,
    subscriber_suppress,
    subscriber_unsuppress,
)
from .signals import subscriber_erasing

CSV_HEADER = ("email", "status", "tickers", "created", "confirmed")
# A spreadsheet runs a cell starting with one of these as a formula; an address may legally start with "=" or "+".
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_START) else value


class _Echo:
    """A file-like object whose write hands the line back, so csv.writer can feed a streamed response."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Iterable[str]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for row in rows:
        yield writer.writerow([csv_cell(cell) for cell in row])


class FollowedTickerFilter(admin.RelatedOnlyFieldListFilter):
    """Only tickers someone follows, and no "-" entry: a subscriber always follows at least one."""

    @property
    def include_empty_choice(self) -> bool:
        return False


TICKERS_SHOWN = 6


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "status",
        "ticker_list",
        "holding_list",
        "soft_bounces",
        "created_at",
        "confirmed_at",
        "unsubscribed_at",
    ]
    # Only tickers someone follows: the full listing has thousands.
    list_filter = ["status", ("tickers", FollowedTickerFilter), "created_at"]
    search_fields = ["email", "tickers__symbol"]
    filter_horizontal = ["tickers"]
    readonly_fields = ["holding_list", "created_at", "confirmed_at", "unsubscribed_at", "updated_at"]
    actions = ["resend_confirmation", "suppress_complained", "suppress_bounced", "unsuppress", "export_csv"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tickers", "holdings__ticker")

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # A ticker staff unticked here loses its holding, as it does when the subscriber removes it.
        subscriber_set_tickers(subscriber=form.instance, symbols=form.instance.tickers.values_list("symbol", flat=True))

    # Deleting a subscriber here is an erasure like the subscriber's own: their deliveries lose the address and
    # their archived emails go (a plain delete would leave both behind).
    def delete_model(self, request: HttpRequest, obj: Subscriber) -> None:
        subscriber_erase(subscriber=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        for subscriber in queryset:
            subscriber_erase(subscriber=subscriber)

    @admin.display(description="Tickers")
    def ticker_list(self, obj: Subscriber) -> str:
        symbols = [t.symbol for t in obj.tickers.all()]
        shown = ", ".join(symbols[:TICKERS_SHOWN]) + (
            f" +{len(symbols) - TICKERS_SHOWN}" if len(symbols) > TICKERS_SHOWN else ""
        )
        return format_html('<span style="white-space:nowrap" title="{}">{}</span>', ", ".join(symbols), shown)

    @admin.display(description="Holdings")
    def holding_list(self, obj: Subscriber) -> str:
        """The shares given per ticker (the subscriber's own figures, shown in their email's portfolio line)."""
        held = sorted((h.ticker.symbol, h.shares) for h in obj.holdings.all())
        return ", ".join(f"{symbol}: {shares_text(shares)}" for symbol, shares in held) or "—"

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        labels = dict(Subscriber.Status.choices)
        counts = [
            {"status": status, "label": labels[status], "count": n} for status, n in subscriber_status_counts().items()
        ]
        return super().changelist_view(request, {**(extra_context or {}), "status_counts": counts})

    @admin.action(description="Resend the confirmation email (pending or unsubscribed only)")
    def resend_confirmation(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        sent = sum(subscriber_resend_confirmation(subscriber=s) for s in queryset)
        skipped = queryset.count() - sent
        self.message_user(request, f"Confirmation email sent to {sent} subscriber(s).", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} skipped: only pending or unsubscribed addresses confirm.", messages.WARNING
            )

    @admin.action(description="Suppress (mark complained)")
    def suppress_complained(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        self._suppress(request, queryset, Subscriber.Status.COMPLAINED)

    @admin.action(description="Suppress (mark bounced)")
    def suppress_bounced(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        self._suppress(request, queryset, Subscriber.Status.BOUNCED)

    def _suppress(self, request: HttpRequest, queryset: QuerySet[Subscriber], status: str) -> None:
        for subscriber in queryset:
            subscriber_suppress(subscriber=subscriber, status=status)
        self.message_user(request, f"{len(queryset)} subscriber(s) suppressed as {status}.", messages.SUCCESS)

    @admin.action(description="Unsuppress (bounced or complained only)")
    def unsuppress(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        # An unsubscribed address stays so: only its owner may subscribe it again, by confirming.
        suppressed = [s for s in queryset if s.status in (Subscriber.Status.BOUNCED, Subscriber.Status.COMPLAINED)]
        for subscriber in suppressed:
            subscriber_unsuppress(subscriber=subscriber)
        self.message_user(request, f"{len(suppressed)} subscriber(s) unsuppressed.", messages.SUCCESS)
        skipped = queryset.count() - len(suppressed)
        if skipped:
            self.message_user(request, f"{skipped} skipped: not bounced or complained.", messages.WARNING)

    @admin.action(description="Export as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> StreamingHttpResponse:
        response = StreamingHttpResponse(
            csv_lines(subscriber_export_rows(queryset.order_by("email"))), content_type="text/csv; charset=utf-8"
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="walter-subscribers-{stamp}.csv"'
        return response


@receiver(subscriber_erasing)
def admin_log_forget(sender: Any, subscriber: Subscriber, **kwargs: Any) -> None:
    """The admin's history names an object by its ``str()``, the address: an erased subscriber's entries keep
    only the id (the admin logs a deletion before it deletes, so that entry is renamed too)."""
    LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Subscriber), object_id=str(subscriber.pk)
    ).update(object_repr=f"Subscriber #{subscriber.pk} (erased)")
