"""Writes of subscribers: creation, confirmation, status changes and ticker changes."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from markets.services import ticker_ensure

from .models import Subscriber


@transaction.atomic
def subscriber_create(*, email: str, symbols: Iterable[str], status: str = Subscriber.Status.PENDING) -> Subscriber:
    """Create a subscriber following ``symbols`` (already validated); an existing address keeps its status."""
    subscriber, created = Subscriber.objects.get_or_create(
        email__iexact=email.strip(), defaults={"email": email, "status": status}
    )
    if created and status == Subscriber.Status.ACTIVE:
        subscriber.confirmed_at = timezone.now()
        subscriber.save(update_fields=["confirmed_at", "updated_at"])
    subscriber_set_tickers(subscriber=subscriber, symbols=symbols)
    return subscriber


@transaction.atomic
def subscriber_set_tickers(*, subscriber: Subscriber, symbols: Iterable[str]) -> None:
    subscriber.tickers.set([ticker_ensure(symbol=s) for s in symbols])


@transaction.atomic
def subscriber_set_status(*, subscriber: Subscriber, status: str) -> Subscriber:
    subscriber.status = status
    now = timezone.now()
    fields = ["status", "updated_at"]
    if status == Subscriber.Status.ACTIVE and subscriber.confirmed_at is None:
        subscriber.confirmed_at = now
        fields.append("confirmed_at")
    if status == Subscriber.Status.UNSUBSCRIBED:
        subscriber.unsubscribed_at = now
        fields.append("unsubscribed_at")
    subscriber.save(update_fields=fields)
    return subscriber
