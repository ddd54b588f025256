"""Reads of subscribers and what they follow."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from django.db.models import Count, OuterRef, QuerySet, Subquery

from .models import Holding, Subscriber


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
    return follows_by_subscriber(subscriber_ids)[0]


def follows_by_subscriber(subscriber_ids: list[int]) -> tuple[dict[int, list[str]], dict[int, dict[str, Decimal]]]:
    """Each subscriber's followed symbols (sorted) and the shares they hold of them (symbol → shares; only
    subscribers with a holding appear), from one query: what delivery needs of each subscriber of a batch."""
    symbols: dict[int, list[str]] = {sid: [] for sid in subscriber_ids}
    holdings: dict[int, dict[str, Decimal]] = {}
    held = Holding.objects.filter(subscriber_id=OuterRef("subscriber_id"), ticker_id=OuterRef("ticker_id"))
    rows = (
        Subscriber.tickers.through.objects.filter(subscriber_id__in=subscriber_ids, ticker__active=True)
        .annotate(shares=Subquery(held.values("shares")[:1]))
        .order_by("ticker__symbol")
        .values_list("subscriber_id", "ticker__symbol", "shares")
    )
    for subscriber_id, symbol, shares in rows:
        symbols[subscriber_id].append(symbol)
        if shares is not None:
            holdings.setdefault(subscriber_id, {})[symbol] = shares
    return symbols, holdings


def holdings_of(subscriber: Subscriber) -> dict[str, Decimal]:
    """The shares the subscriber holds of each ticker that has a holding (symbol → shares), in symbol order."""
    return dict(
        Holding.objects.filter(subscriber=subscriber).order_by("ticker__symbol").values_list("ticker__symbol", "shares")
    )


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
