"""Signed, purpose-bound tokens for the links in emails: one purpose's token never works for another."""

from __future__ import annotations

from django.core import signing

CONFIRM = "confirm"
PREFERENCES = "preferences"
UNSUBSCRIBE = "unsubscribe"

# A confirmation link expires; unsubscribe and preference links in old emails must keep working.
MAX_AGE = {CONFIRM: 3 * 24 * 3600, PREFERENCES: None, UNSUBSCRIBE: None}


class BadToken(Exception):
    """Tampered, expired, or made for another purpose."""


def make_token(purpose: str, subscriber_id: int) -> str:
    return signing.dumps(subscriber_id, salt=f"walter.subscriber.{purpose}", compress=False)


def read_token(purpose: str, token: str) -> int:
    """The subscriber id in ``token``; raises BadToken when it is not a valid ``purpose`` token."""
    try:
        value = signing.loads(token, salt=f"walter.subscriber.{purpose}", max_age=MAX_AGE[purpose])
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise BadToken(str(exc)) from exc
    if not isinstance(value, int):
        raise BadToken("malformed token")
    return value
