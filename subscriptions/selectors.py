"""Reads of subscribers and what they follow."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, QuerySet

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


def subscriber_status_counts() -> dict[str, int]:
    """How many subscribers have each status, every status present (zero included), in the order of the choices."""
    counts = dict(Subscriber.objects.order_by().values_list("status").annotate(n=Count("pk")))
    return {status: counts.get(status, 0) for status in Subscriber.Status.values}


def subscriber_export_rows(subscribers: QuerySet[Subscriber]) -> Iterator[tuple[str, str, str, str, str]]:
    """email, status, followed symbols (space-separated, sorted), created and confirmed (ISO 8601, or empty) of each
    subscriber in ``subscribers``, read in chunks so a large list does not sit in memory."""
    for subscriber in subscribers.prefetch_related("tickers").iterator(chunk_size=500):
        yield (
            subscriber.email,
            subscriber.status,
            " ".join(sorted(t.symbol for t in subscriber.tickers.all())),
            subscriber.created_at.isoformat(),
            subscriber.confirmed_at.isoformat() if subscriber.confirmed_at else "",
        )
