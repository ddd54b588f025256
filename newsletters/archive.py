"""The archive of sent emails: exactly what was sent, stored before it is handed to the email backend.

Keys are laid out by issue date and the delivery's opaque token, never the address:
``emails/2026/11/20/<token>.eml`` is the raw MIME message exactly as sent; ``<token>.html`` is its HTML with the
inline charts pointed at ``charts/<content-id>.png`` beside it, written once per issue (a chart is the same in
every email of the day, and nobody's in particular), so the copy opens from the folder as the reader saw it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
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


CID_SRC = re.compile(r'src="cid:([^"]+)"')
CHART_SRC = re.compile(r'src="charts/([^"/]+)\.png"')


def archive_write(
    *,
    day: dt.date,
    token: str,
    html: str,
    mime: bytes,
    images: dict[str, bytes] | None = None,
    charts_written: set[tuple[str, str]] | None = None,
    storage: Storage | None = None,
) -> str:
    """Store the HTML and the raw message (and the issue's charts the HTML shows); returns the HTML copy's key.

    ``charts_written``: the caller's memo of (key, digest) already stored, so a batch of thousands of emails
    writes each chart once.
    """
    charts_written = set() if charts_written is None else charts_written
    storage = storage or archive_storage()
    prefix = archive_prefix(day, token)
    if images:
        folder = prefix.rsplit("/", 1)[0]
        for cid, png in images.items():
            key = f"{folder}/charts/{cid}.png"
            memo = (key, hashlib.blake2b(png, digest_size=16).hexdigest())
            if memo not in charts_written:
                _save(storage, key, png)
                charts_written.add(memo)
        html = CID_SRC.sub(lambda m: f'src="charts/{m.group(1)}.png"' if m.group(1) in images else m.group(0), html)
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
