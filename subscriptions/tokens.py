"""Signed, purpose-bound tokens for the links in emails: one purpose's token never works for another."""

from __future__ import annotations

from django.conf import settings
from django.core import signing

CONFIRM = "confirm"
PREFERENCES = "preferences"
UNSUBSCRIBE = "unsubscribe"
# Downloading or deleting someone's data acts at once, so its link is never one that sits in every email (and in
# every copy forwarded): it is sent to the address on request and lives DATA_LINK_MAX_AGE seconds.
EXPORT = "export"
DELETE = "delete"
DATA_PURPOSES = (EXPORT, DELETE)

# A confirmation link expires; unsubscribe and preference links in old emails must keep working.
MAX_AGE = {CONFIRM: 3 * 24 * 3600, PREFERENCES: None, UNSUBSCRIBE: None}


class BadToken(Exception):
    """Tampered, expired, or made for another purpose."""


class ExpiredToken(BadToken):
    """Genuine, but older than its purpose allows."""


def make_token(purpose: str, subscriber_id: int) -> str:
    return signing.dumps(subscriber_id, salt=f"walter.subscriber.{purpose}", compress=False)


def read_token(purpose: str, token: str) -> int:
    """The subscriber id in ``token``; raises BadToken when it is not a valid ``purpose`` token."""
    max_age = settings.DATA_LINK_MAX_AGE if purpose in DATA_PURPOSES else MAX_AGE[purpose]
    try:
        value = signing.loads(token, salt=f"walter.subscriber.{purpose}", max_age=max_age)
    except signing.SignatureExpired as exc:
        raise ExpiredToken(str(exc)) from exc
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise BadToken(str(exc)) from exc
    if not isinstance(value, int):
        raise BadToken("malformed token")
    return value
