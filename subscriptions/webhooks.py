"""The endpoint SNS posts SES events to: bounces and complaints suppress the address at once.

Set-up: the SES configuration set publishes Bounce, Complaint and Delivery events to an SNS topic; the topic has an
https subscription to `/webhooks/ses/`; `SES_EVENTS_TOPIC_ARNS` names the topic. The first message SNS sends is
a SubscriptionConfirmation, which this endpoint confirms after checking it like any other message.

When AWS cannot be reached (the certificate or the confirmation link), the answer is 503 and nothing is recorded:
SNS delivers the message again later (it retries 5xx answers) and that delivery does the work.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import signals, sns
from .models import SnsMessage, Subscriber
from .services import subscriber_delivered, subscriber_soft_bounce, subscriber_suppress

logger = logging.getLogger("walter.webhooks")
MAX_BODY = 256 * 1024


@csrf_exempt  # SNS signs its messages; there is no session or CSRF token to check.
@require_POST
def ses_events(request: HttpRequest) -> HttpResponse:
    if len(request.body) > MAX_BODY:
        return HttpResponse("too large", status=413, content_type="text/plain")
    try:
        message = json.loads(request.body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        return HttpResponse("not JSON", status=400, content_type="text/plain")
    try:
        sns.verify(message, topics=settings.SES_EVENTS_TOPIC_ARNS, max_age_seconds=settings.SNS_MAX_AGE_SECONDS)
        if message["Type"] == "SubscriptionConfirmation":
            if SnsMessage.objects.filter(message_id=message["MessageId"][:100]).exists():
                return HttpResponse("already processed", content_type="text/plain")
            # Confirmed before it is recorded: a confirmation that failed is done again when SNS redelivers it.
            sns.confirm_subscription(sns.subscribe_url(message.get("SubscribeURL", "")))
        with transaction.atomic():
            SnsMessage.objects.create(
                message_id=message["MessageId"][:100], type=message["Type"], topic_arn=message["TopicArn"]
            )
            _handle(message)
    except IntegrityError:
        return HttpResponse("already processed", content_type="text/plain")
    except sns.SnsError as exc:
        logger.warning("SNS message refused: %s", exc)
        return HttpResponse(f"refused: {exc}", status=403, content_type="text/plain")
    except sns.SnsUnavailable as exc:
        logger.warning("SNS message not handled, AWS unavailable: %s", exc)
        response = HttpResponse(f"try again later: {exc}", status=503, content_type="text/plain")
        response["Retry-After"] = "60"
        return response
    return HttpResponse("ok", content_type="text/plain")


def _handle(message: dict[str, str]) -> None:
    if message["Type"] != "Notification":
        return
    try:
        event = json.loads(message["Message"])
    except (ValueError, RecursionError):
        logger.warning("SNS notification %s carries no JSON event", message["MessageId"])
        return
    if isinstance(event, dict):
        ses_event_apply(event)


def _section(event: dict[str, Any], name: str) -> dict[str, Any]:
    """``event[name]`` when it is an object, else empty: a malformed event is ignored, not a server error that SNS
    would retry."""
    value = event.get(name)
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _recipients(event: dict[str, Any], section: str, key: str) -> list[str]:
    rows = _list(_section(event, section).get(key))
    return [
        r["emailAddress"].strip().lower()
        for r in rows
        if isinstance(r, dict) and isinstance(r.get("emailAddress"), str)
    ]


# What an SES event says happened to its recipients; the newsletters app records the same word on the Delivery.
DELIVERED, SOFT_BOUNCE, BOUNCED, COMPLAINED = "delivered", "soft_bounce", "bounced", "complained"


def ses_event_outcome(event: dict[str, Any]) -> tuple[str, list[str]]:
    """What one SES event (event publishing's ``eventType`` or a notification's ``notificationType``) reports, and
    for which addresses: ``("bounced", [...])``; ``("", [])`` for an event Walter does not act on."""
    kind = event.get("eventType") or event.get("notificationType")
    if kind == "Bounce":
        outcome = BOUNCED if _section(event, "bounce").get("bounceType") == "Permanent" else SOFT_BOUNCE
        return outcome, _recipients(event, "bounce", "bouncedRecipients")
    if kind == "Complaint":
        return COMPLAINED, _recipients(event, "complaint", "complainedRecipients")
    if kind == "Delivery":
        recipients = _list(_section(event, "delivery").get("recipients"))
        return DELIVERED, [r.strip().lower() for r in recipients if isinstance(r, str)]
    return "", []


def ses_event_apply(event: dict[str, Any]) -> None:
    """Apply one SES event to the subscribers it names, then tell the other apps what it reported."""
    outcome, recipients = ses_event_outcome(event)
    for subscriber in _subscribers(recipients):
        if outcome == BOUNCED:
            subscriber_suppress(subscriber=subscriber, status=Subscriber.Status.BOUNCED)
        elif outcome == SOFT_BOUNCE:
            subscriber_soft_bounce(subscriber=subscriber, limit=settings.SOFT_BOUNCE_LIMIT)
        elif outcome == COMPLAINED:
            subscriber_suppress(subscriber=subscriber, status=Subscriber.Status.COMPLAINED)
        elif outcome == DELIVERED:
            subscriber_delivered(subscriber=subscriber)
    signals.ses_event_received.send(sender=ses_event_apply, event=event, outcome=outcome)


def _subscribers(addresses: list[str]) -> list[Subscriber]:
    # No stored address holds NUL, and PostgreSQL refuses one even in a query.
    addresses = [a for a in addresses if a and "\x00" not in a]
    return list(Subscriber.objects.filter(email__in=addresses)) if addresses else []
