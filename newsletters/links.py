"""Signed "view in browser" links to an archived email."""

from __future__ import annotations

from django.core import signing
from django.urls import reverse

from subscriptions.links import absolute

SALT = "walter.delivery.view"


def view_token(delivery_token: str) -> str:
    return signing.dumps(str(delivery_token), salt=SALT, compress=False)


def read_view_token(token: str) -> str | None:
    try:
        return signing.loads(token, salt=SALT)
    except signing.BadSignature:
        return None


def view_url(delivery_token: str) -> str:
    return absolute(reverse("newsletters:view", args=[view_token(delivery_token)]))
