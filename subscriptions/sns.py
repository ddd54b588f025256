"""Amazon SNS message verification: is this POST really from SNS, for a topic we subscribed to, and recent?

django-anymail's SES tracking webhook parses SES events but does not check SNS signatures, so anyone who knew the
URL could suppress any subscriber. Every message is checked as AWS documents it: the signing certificate must be
served over https from an `sns.<region>.amazonaws.com` host, the signature (SignatureVersion 1: SHA1, 2: SHA256,
RSA PKCS#1 v1.5) must cover the canonical fields, the topic must be one we accept, and the timestamp recent.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.core.cache import cache

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
CERTIFICATE_CACHE_SECONDS = 24 * 3600


class SnsError(Exception):
    """The message is not a genuine, acceptable SNS message; the reason says which check failed."""


def is_sns_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        # .port raises on a port that is not a number or out of range; urlsplit on an unclosed "[" host.
        return parts.scheme == "https" and bool(_SNS_HOST.match(parts.hostname or "")) and parts.port in (None, 443)
    except ValueError:
        return False


def fetch_certificate(url: str) -> bytes:
    """The PEM at ``url`` (already checked to be an SNS host)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def _certificate(url: str, fetch: Callable[[str], bytes]) -> x509.Certificate:
    key = f"walter:sns:cert:{url}"
    pem = cache.get(key)
    if pem is None:
        pem = fetch(url)
        cache.set(key, pem, CERTIFICATE_CACHE_SECONDS)
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise SnsError("the signing certificate cannot be read") from exc


def string_to_sign(message: dict[str, Any]) -> bytes:
    fields = _SIGNED_FIELDS.get(message.get("Type", ""))
    if fields is None:
        raise SnsError(f"unknown message type {str(message.get('Type'))[:40]!r}")
    lines = []
    for name in fields:
        if name in message and message[name] is not None:
            lines.append(f"{name}\n{message[name]}\n")
        elif name != "Subject":
            raise SnsError(f"the message has no {name}")
    return "".join(lines).encode()


def verify(
    message: Any,
    *,
    topics: list[str],
    max_age_seconds: int,
    now: dt.datetime | None = None,
    fetch: Callable[[str], bytes] | None = None,
) -> None:
    """Raise SnsError unless ``message`` (the parsed POST body) is a genuine, recent SNS message for ``topics``."""
    # SNS never sends NUL, and PostgreSQL could not store the MessageId if it held one.
    if not isinstance(message, dict) or not all(isinstance(v, str) and "\x00" not in v for v in message.values()):
        raise SnsError("not an SNS message")
    if message.get("TopicArn") not in topics:
        raise SnsError("the topic is not one Walter accepts")
    cert_url = message.get("SigningCertURL") or message.get("SigningCertUrl") or ""
    if not is_sns_url(cert_url) or not cert_url.endswith(".pem"):
        raise SnsError("the signing certificate is not served by SNS over https")
    algorithm = _HASHES.get(message.get("SignatureVersion", ""))
    if algorithm is None:
        raise SnsError("unknown signature version")
    try:
        timestamp = dt.datetime.fromisoformat(message.get("Timestamp", "").replace("Z", "+00:00"))
    except ValueError as exc:
        raise SnsError("the timestamp cannot be read") from exc
    if timestamp.tzinfo is None:
        raise SnsError("the timestamp has no time zone")
    now = now or dt.datetime.now(dt.UTC)
    if abs((now - timestamp).total_seconds()) > max_age_seconds:
        raise SnsError("the message is too old (or from the future)")
    try:
        signature = base64.b64decode(message.get("Signature", ""), validate=True)
    except ValueError as exc:
        raise SnsError("the signature is not base64") from exc
    certificate = _certificate(cert_url, fetch or fetch_certificate)
    try:
        certificate.public_key().verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except (InvalidSignature, TypeError, ValueError) as exc:
        raise SnsError("the signature does not match") from exc
