"""Amazon SNS message verification: is this POST really from SNS, for a topic we subscribed to, and recent?

django-anymail's SES tracking webhook parses SES events but does not check SNS signatures, so anyone who knew the
URL could suppress any subscriber. Every message is checked as AWS documents it: the signing certificate must be
served over https from an `sns.<region>.amazonaws.com` host, the signature (SignatureVersion 1: SHA1, 2: SHA256,
RSA PKCS#1 v1.5) must cover the canonical fields, the topic must be one we accept, and the timestamp recent.

Every call to AWS made here runs inside a web request, so each is capped at FETCH_TIMEOUT_SECONDS in total, and its
failure is translated once, here: SnsError (the message or its URL is wrong: refuse it) or SnsUnavailable (AWS did
not answer: SNS should deliver again later). A certificate URL must have the shape AWS uses before anything is
fetched, and fetched certificates, and failures for a short while, are cached, so a flood of messages naming
certificates cannot make one outbound request each.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import re
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.conf import settings
from django.core.cache import cache

from walter_site.ratelimit import allow

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# What AWS serves: /SimpleNotificationService-<hex id>.pem. Anything else is refused before any request is made.
_CERTIFICATE_PATH = re.compile(r"^/SimpleNotificationService-[A-Za-z0-9]{1,64}\.pem$")
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
CERTIFICATE_CACHE_SECONDS = 24 * 3600
# A certificate AWS did not serve is asked for again only after this long, however many messages name it.
FAILURE_CACHE_SECONDS = 60
# A web request waits at most this long for AWS (a load balancer or SNS gives up on the whole request soon after).
FETCH_TIMEOUT_SECONDS = 2.0
MAX_RESPONSE_BYTES = 64 * 1024


class SnsError(Exception):
    """The message is not a genuine, acceptable SNS message; the reason says which check failed."""


class SnsUnavailable(Exception):
    """AWS could not be asked right now (down, slow, or too many asks); the same message may succeed later."""


def _sns_parts(url: str) -> SplitResult | None:
    """``url`` split, when it is https on an SNS host (any case) and the default port; else None."""
    try:
        parts = urlsplit(url)
        # .port raises on a port that is not a number or out of range; urlsplit on an unclosed "[" host.
        if parts.scheme.lower() != "https" or parts.port not in (None, 443) or parts.username or parts.password:
            return None
    except ValueError:
        return None
    # .hostname is lower-cased already; a NUL, space or other control character never belongs in a URL.
    if not _SNS_HOST.match(parts.hostname or "") or any(ord(c) < 33 or c == "\x7f" for c in url):
        return None
    return parts


def is_sns_url(url: str) -> bool:
    return _sns_parts(url) is not None


def certificate_url(url: str) -> str:
    """The canonical form of a SigningCertURL (lower-case host, no port); SnsError unless it is shaped like AWS's."""
    parts = _sns_parts(url)
    if parts is None or not _CERTIFICATE_PATH.match(parts.path) or parts.query or parts.fragment:
        raise SnsError("the signing certificate is not served by SNS over https")
    return f"https://{parts.hostname}{parts.path}"


def subscribe_url(url: str) -> str:
    """The canonical form of a SubscribeURL; SnsError unless it is an SNS ConfirmSubscription link."""
    parts = _sns_parts(url)
    if parts is None or parts.path not in ("", "/") or parts.fragment:
        raise SnsError("the SubscribeURL is not an SNS URL")
    if parse_qs(parts.query).get("Action") != ["ConfirmSubscription"]:
        raise SnsError("the SubscribeURL does not confirm a subscription")
    return f"https://{parts.hostname}/?{parts.query}"


def http_get(url: str, *, timeout: float = FETCH_TIMEOUT_SECONDS) -> bytes:
    """GET ``url`` (already checked) with ``timeout`` seconds in all: connecting, waiting and reading together.

    Raises SnsError when AWS says the URL is wrong (4xx), SnsUnavailable when it cannot answer now.
    """
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, timeout=timeout, context=ssl.create_default_context()
        )
    else:  # plain http: only ever loopback test servers, which is_sns_url never accepts
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        # Resolved here, within the budget (the socket's timeout does not cover name resolution); TLS still checks
        # the certificate against the host name.
        addresses = _resolve(parts.hostname, connection.port, deadline)
        connection._create_connection = lambda _address, *args: _connect(addresses, *args)
        connection.request("GET", target, headers={"User-Agent": "Walter"})
        _remaining(connection, deadline)
        response = connection.getresponse()
        chunks: list[bytes] = []
        size = 0
        while True:
            _remaining(connection, deadline)
            chunk = response.read1(16 * 1024)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise SnsError("AWS answered more than a certificate or a confirmation")
            chunks.append(chunk)
    except (OSError, http.client.HTTPException) as exc:  # timeouts, refused connections, TLS errors, bad answers
        raise SnsUnavailable(f"AWS did not answer: {type(exc).__name__}") from exc
    finally:
        connection.close()
    if 400 <= response.status < 500 and response.status != 429:
        raise SnsError(f"AWS answered HTTP {response.status}")
    if response.status != 200:
        raise SnsUnavailable(f"AWS answered HTTP {response.status}")
    return b"".join(chunks)


def _resolve(host: str, port: int, deadline: float) -> list[tuple[str, int]]:
    """The addresses of ``host``, or TimeoutError once ``deadline`` passes (a resolver that does not answer keeps
    only its own worker thread waiting, not the request)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sns-resolve")
    try:
        future = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        infos = future.result(timeout=max(deadline - time.monotonic(), 0))
    finally:
        pool.shutdown(wait=False)
    return [info[4][:2] for info in infos]


def _connect(addresses: list[tuple[str, int]], *args: Any) -> socket.socket:
    """A connection to the first of ``addresses`` that answers (an unreachable IPv6 address is skipped)."""
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            return socket.create_connection(address, *args)
        except OSError as exc:
            error = exc
    raise error


def _remaining(connection: http.client.HTTPConnection, deadline: float) -> None:
    """Shrink the socket's timeout to what is left of the total, so a server that trickles cannot stretch it."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the total time for the request ran out")
    if connection.sock is not None:
        connection.sock.settimeout(left)


def fetch_certificate(url: str) -> bytes:
    """The PEM at ``url`` (already canonical)."""
    return http_get(url)


def confirm_subscription(url: str) -> None:
    """Visit the SubscribeURL SNS sent (already canonical): the topic then delivers to this endpoint."""
    http_get(url)


def _certificate(url: str, fetch: Callable[[str], bytes]) -> x509.Certificate:
    key = f"walter:sns:cert:{hashlib.sha256(url.encode()).hexdigest()}"
    pem = cache.get(key)
    if isinstance(pem, tuple):  # a recent failure, remembered: ("refused" | "unavailable", reason)
        kind, reason = pem
        raise (SnsError if kind == "refused" else SnsUnavailable)(f"{reason} (remembered)")
    if pem is None:
        # Certificates change rarely; more fetches than this in a minute means someone is naming made-up ones.
        if not allow("sns:certificate-fetches", settings.SNS_CERTIFICATE_FETCHES_PER_MINUTE, 60):
            raise SnsUnavailable("too many signing certificates asked for; try again later")
        try:
            pem = fetch(url)
        except SnsError as exc:
            cache.set(key, ("refused", f"the signing certificate cannot be fetched: {exc}"), FAILURE_CACHE_SECONDS)
            raise SnsError(f"the signing certificate cannot be fetched: {exc}") from exc
        except SnsUnavailable as exc:
            cache.set(key, ("unavailable", str(exc)), FAILURE_CACHE_SECONDS)
            raise
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
    """Raise SnsError unless ``message`` (the parsed POST body) is a genuine, recent SNS message for ``topics``;
    SnsUnavailable when its certificate cannot be had right now."""
    # SNS never sends NUL, and PostgreSQL could not store the MessageId if it held one.
    if not isinstance(message, dict) or not all(isinstance(v, str) and "\x00" not in v for v in message.values()):
        raise SnsError("not an SNS message")
    if message.get("TopicArn") not in topics:
        raise SnsError("the topic is not one Walter accepts")
    cert_url = certificate_url(message.get("SigningCertURL") or message.get("SigningCertUrl") or "")
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
