"""Absolute URLs of a subscriber's personal pages, for emails."""

import datetime as dt

from django.conf import settings
from django.urls import reverse

from . import tokens


def absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def unsubscribe_url(subscriber_id: int) -> str:
    return absolute(reverse("subscriptions:unsubscribe", args=[tokens.make_token(tokens.UNSUBSCRIBE, subscriber_id)]))


def preferences_url(subscriber_id: int) -> str:
    return absolute(reverse("subscriptions:preferences", args=[tokens.make_token(tokens.PREFERENCES, subscriber_id)]))


def confirm_url(subscriber_id: int, *, unsubscribed_at: dt.datetime | None = None) -> str:
    """``unsubscribed_at``: the subscriber's, now; a later unsubscribe makes the link stale."""
    token = tokens.make_confirm_token(subscriber_id, unsubscribed_at=unsubscribed_at)
    return absolute(reverse("subscriptions:confirm", args=[token]))


def data_link_url(purpose: str, subscriber_id: int) -> str:
    """A fresh, short-lived link that downloads (``tokens.EXPORT``) or deletes (``tokens.DELETE``) the data."""
    name = {tokens.EXPORT: "subscriptions:data_export", tokens.DELETE: "subscriptions:data_delete"}[purpose]
    return absolute(reverse(name, args=[tokens.make_token(purpose, subscriber_id)]))
