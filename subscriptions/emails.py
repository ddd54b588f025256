"""The two emails of the subscription flow: confirm your address, or manage the subscription you have."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from walter_site.backends import email_connection

from . import links, tokens
from .models import Subscriber

logger = logging.getLogger("walter.subscriptions")


class EmailNotSent(Exception):
    """The email service did not take the message in time: the visitor is asked to try again."""


def _send(*, subscriber: Subscriber, subject: str, template: str, context: dict) -> None:
    context = {"subscriber": subscriber, "site_url": settings.SITE_URL, **context}
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"subscriptions/email/{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[subscriber.email],
    )
    message.attach_alternative(render_to_string(f"subscriptions/email/{template}.html", context), "text/html")
    # Sent while a visitor waits: capped at WEB_EMAIL_TIMEOUT seconds, one attempt; they can simply try again.
    message.connection = email_connection(timeout=settings.WEB_EMAIL_TIMEOUT)
    try:
        message.send()
    except Exception as exc:
        logger.warning("the %s email for subscriber %s was not sent: %s", template, subscriber.pk, exc)
        raise EmailNotSent(f"the email service did not take the {template} email: {type(exc).__name__}") from exc


def confirmation_email_send(*, subscriber: Subscriber) -> None:
    symbols = sorted(subscriber.tickers.values_list("symbol", flat=True))
    _send(
        subscriber=subscriber,
        subject="Confirm your Walter subscription",
        template="confirm",
        context={
            "confirm_url": links.confirm_url(subscriber.pk, unsubscribed_at=subscriber.unsubscribed_at),
            "symbols": symbols,
        },
    )


def manage_email_send(*, subscriber: Subscriber) -> None:
    _send(
        subscriber=subscriber,
        subject="Your Walter subscription",
        template="manage",
        context={"preferences_url": links.preferences_url(subscriber.pk)},
    )


def data_link_email_send(*, subscriber: Subscriber, purpose: str) -> None:
    """The fresh link that downloads or deletes the subscriber's data, to their own address only."""
    download = purpose == tokens.EXPORT
    _send(
        subscriber=subscriber,
        subject="Download your Walter data" if download else "Delete your Walter data",
        template="data_link",
        context={
            "download": download,
            "url": links.data_link_url(purpose, subscriber.pk),
            "minutes": settings.DATA_LINK_MAX_AGE // 60,
        },
    )
