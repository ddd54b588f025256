"""The archive of sent emails: exactly what was sent, stored before it is handed to the email backend.

Keys are laid out by issue date and the delivery's opaque token, never the address:
``emails/2026/11/20/<token>.html`` and ``.eml`` (the raw MIME message).
"""

from __future__ import annotations

import datetime as dt
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages


def archive_storage() -> Storage:
    return storages["archive"]


def archive_prefix(day: dt.date, token: str) -> str:
    return f"emails/{day:%Y/%m/%d}/{token}"


def archive_write(*, day: dt.date, token: str, html: str, mime: bytes, storage: Storage | None = None) -> str:
    """Store the HTML and the raw message; returns the key of the HTML copy."""
    storage = storage or archive_storage()
    prefix = archive_prefix(day, token)
    html_key = _save(storage, f"{prefix}.html", html.encode("utf-8"))
    _save(storage, f"{prefix}.eml", mime)
    return html_key


def archive_read_html(key: str, storage: Storage | None = None) -> str:
    storage = storage or archive_storage()
    with storage.open(key, "rb") as handle:
        return handle.read().decode("utf-8")


def _archived_message(key: str, storage: Storage | None = None) -> EmailMessage:
    """The raw message archived beside the HTML copy at ``key``."""
    storage = storage or archive_storage()
    with storage.open(key.removesuffix(".html") + ".eml", "rb") as handle:
        return BytesParser(policy=policy.default).parse(handle)


def archive_read_inline_image(key: str, cid: str, storage: Storage | None = None) -> tuple[bytes, str] | None:
    """An inline image (by Content-ID) of the archived raw message beside the HTML copy at ``key``."""
    for part in _archived_message(key, storage).walk():
        if part.get("Content-ID", "").strip("<>") == cid and part.get_content_maintype() == "image":
            return part.get_payload(decode=True), part.get_content_type()
    return None


def archive_read_text(key: str, storage: Storage | None = None) -> str:
    """The plain-text twin of the archived message beside the HTML copy at ``key``."""
    body = _archived_message(key, storage).get_body(("plain",))
    return body.get_content() if body is not None else ""


def _save(storage: Storage, key: str, data: bytes) -> str:
    # A rerun overwrites its own copy in one request (the storage is configured to overwrite: S3's
    # file_overwrite, the file system's allow_overwrite); a renamed duplicate would part the .html from its .eml.
    saved = storage.save(key, ContentFile(data))
    if saved != key:
        storage.delete(saved)
        raise ImproperlyConfigured(f"the archive storage renamed {key} instead of overwriting it: set it to overwrite")
    return saved


def archive_delete(key: str, storage: Storage | None = None) -> None:
    """Delete an archived email: the HTML copy at ``key`` and its raw message beside it."""
    storage = storage or archive_storage()
    for name in (key, key.removesuffix(".html") + ".eml"):
        if storage.exists(name):
            storage.delete(name)
