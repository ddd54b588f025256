"""Reads of subscribers and what they follow."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Subscriber


def subscribers_receiving() -> QuerySet[Subscriber]:
    """Confirmed subscribers who should get today's issue: active and following at least one ticker."""
    return Subscriber.objects.filter(status=Subscriber.Status.ACTIVE, tickers__isnull=False).distinct()


def followed_symbols() -> list[str]:
    """Every symbol at least one active subscriber follows."""
    return sorted(
        set(
            Subscriber.tickers.through.objects.filter(
                subscriber__status=Subscriber.Status.ACTIVE, ticker__active=True
            ).values_list("ticker__symbol", flat=True)
        )
    )


def symbols_by_subscriber(subscriber_ids: list[int]) -> dict[int, list[str]]:
    """Each subscriber's followed symbols, sorted, from one query."""
    result: dict[int, list[str]] = {sid: [] for sid in subscriber_ids}
    rows = (
        Subscriber.tickers.through.objects.filter(subscriber_id__in=subscriber_ids, ticker__active=True)
        .order_by("ticker__symbol")
        .values_list("subscriber_id", "ticker__symbol")
    )
    for subscriber_id, symbol in rows:
        result[subscriber_id].append(symbol)
    return result
