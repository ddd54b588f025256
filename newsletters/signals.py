"""The newsletter app's part of a subscriber's data requests (see subscriptions.signals)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import receiver

from subscriptions.signals import subscriber_erasing, subscriber_exporting

from .archive import archive_delete
from .models import Delivery


@receiver(subscriber_erasing)
def deliveries_erase(sender: Any, subscriber: Any, **kwargs: Any) -> None:
    """Archived copies are deleted, not anonymised: an email is personal through and through (greeting, links,
    tickers). The Delivery rows stay, without address or subscriber, so issue counts remain true."""
    deliveries = list(Delivery.objects.filter(subscriber=subscriber).exclude(archive_key=""))
    keys = [d.archive_key for d in deliveries]
    Delivery.objects.filter(subscriber=subscriber).update(email="", archive_key="", symbols=[], subscriber=None)
    # Files go only once the rows no longer point at them.
    transaction.on_commit(lambda: [archive_delete(key) for key in keys])


@receiver(subscriber_exporting)
def deliveries_export(sender: Any, subscriber: Any, **kwargs: Any) -> dict:
    rows = Delivery.objects.filter(subscriber=subscriber).select_related("issue").order_by("issue__date")
    return {
        "emails": [
            {
                "date": d.issue.date.isoformat(),
                "status": d.status,
                "tickers": d.symbols,
                "sent_at": d.sent_at.isoformat() if d.sent_at else None,
            }
            for d in rows
        ]
    }
