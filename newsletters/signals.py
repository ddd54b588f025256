"""The newsletter app's part of a subscriber's data requests and of SES events (see subscriptions.signals)."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models.signals import pre_save
from django.dispatch import receiver
from django.utils import timezone

from subscriptions.signals import ses_event_received, subscriber_erasing, subscriber_exporting
from walter_site.redaction import redact, redact_data

from .archive import archive_delete, archive_prefix
from .messages import DELIVERY_TAG
from .models import DailyRun, Delivery


@receiver(subscriber_erasing)
def deliveries_erase(sender: Any, subscriber: Any, **kwargs: Any) -> None:
    """Archived copies are deleted, not anonymised: an email is personal through and through (greeting, links,
    tickers). The Delivery rows stay, without address or subscriber, so issue counts remain true."""
    deliveries = Delivery.objects.filter(subscriber=subscriber).select_related("issue")
    # Also the copies no row points at yet: archived for a message in flight, or by a run killed before it
    # recorded the key. Keys are derived from the date and the token, so they can be found without the row.
    keys = {d.archive_key for d in deliveries if d.archive_key}
    keys |= {f"{archive_prefix(d.issue.date, str(d.token))}.html" for d in deliveries}
    # Files first, inside the erase's transaction: if the storage fails, the erase fails whole and can simply be
    # asked again (rows emptied first would leave files that nothing points at any more).
    for key in sorted(keys):
        archive_delete(key)
    Delivery.objects.filter(subscriber=subscriber).update(email="", archive_key="", symbols=[], subscriber=None)


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


# A later, worse event wins: a delivered message can still draw a complaint, never the other way round.
FEEDBACK_RANK = {"": 0, "delivered": 1, "soft_bounce": 2, "bounced": 3, "complained": 4}


@receiver(ses_event_received)
def delivery_feedback_record(sender: Any, event: dict, outcome: str = "", **kwargs: Any) -> None:
    """Record on the Delivery what SES reported (``outcome``, as the webhook read the event): found by the delivery
    tag Walter sends, or by SES's message id."""
    feedback = outcome if outcome in FEEDBACK_RANK else ""
    mail = event.get("mail") if isinstance(event.get("mail"), dict) else {}
    if not feedback or not mail:
        return
    deliveries = Delivery.objects.none()
    tags = mail.get("tags") if isinstance(mail.get("tags"), dict) else {}
    tokens = [t for t in _list(tags.get(DELIVERY_TAG)) if _is_uuid(t)]
    if tokens:
        deliveries = Delivery.objects.filter(token__in=tokens)
    if not deliveries.exists() and isinstance(mail.get("messageId"), str) and mail["messageId"]:
        deliveries = Delivery.objects.filter(message_id=mail["messageId"])
    for delivery in deliveries:
        if FEEDBACK_RANK[feedback] > FEEDBACK_RANK.get(delivery.feedback, 0):
            Delivery.objects.filter(pk=delivery.pk).update(feedback=feedback, feedback_at=timezone.now())


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@receiver(pre_save, sender=DailyRun)
def daily_run_redact(sender: Any, instance: DailyRun, **kwargs: Any) -> None:
    """A run record outlives erasure, so it names deliveries by token, never by address: whatever error text a
    stage collected (an exception's message, a vendor's answer) is stored without the addresses in it."""
    instance.errors = redact_data(instance.errors)
    instance.summary = redact(instance.summary or "")
