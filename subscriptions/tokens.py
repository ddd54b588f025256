"""Signed, purpose-bound tokens for the links in emails: one purpose's token never works for another."""

from __future__ import annotations

import datetime as dt

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


# -- confirmation links, bound to the subscriber's opt-out as it was when the link was sent ----------------------


def opt_out_stamp(unsubscribed_at: dt.datetime | None) -> int:
    """The moment of the subscriber's last unsubscribe, in microseconds (0: none). An unsubscribe after a link was
    sent changes it, so the link no longer matches."""
    return 0 if unsubscribed_at is None else round(unsubscribed_at.timestamp() * 1_000_000)


def make_confirm_token(subscriber_id: int, *, unsubscribed_at: dt.datetime | None) -> str:
    return signing.dumps(
        [subscriber_id, opt_out_stamp(unsubscribed_at)], salt=f"walter.subscriber.{CONFIRM}", compress=False
    )


def read_confirm_token(token: str) -> tuple[int, int | None]:
    """(subscriber id, opt-out stamp) of a confirmation token; the stamp is None for a link sent before links
    carried one. Raises BadToken when ``token`` is not a valid, unexpired confirmation token."""
    try:
        value = signing.loads(token, salt=f"walter.subscriber.{CONFIRM}", max_age=MAX_AGE[CONFIRM])
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise BadToken(str(exc)) from exc
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
        return value[0], value[1]
    raise BadToken("malformed token")


def confirm_token_is_stale(stamp: int | None, *, status: str, unsubscribed_at: dt.datetime | None) -> bool:
    """True when confirming would undo an unsubscribe made after the link was sent (or when, for a link without a
    stamp, that cannot be ruled out). Only an unsubscribed subscriber can be harmed: confirming anyone else either
    does what the link was sent for (pending) or nothing (active, paused)."""
    if status != "unsubscribed":
        return False
    return stamp is None or stamp != opt_out_stamp(unsubscribed_at)
