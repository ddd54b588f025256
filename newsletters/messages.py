"""Turn a composed email into the message handed to the email backend, with the bulk-sender headers.

The HTML and its charts travel together as multipart/related (the charts are inline CID images), inside a
multipart/alternative with the plain-text twin: what mail clients expect of a newsletter with images.
"""

from __future__ import annotations

import functools
import uuid
from email.generator import BytesGenerator
from email.message import Message
from email.mime.image import MIMEImage
from email.utils import format_datetime, parseaddr
from io import BytesIO

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import SafeMIMEMultipart
from django.utils import timezone

from .compose import ComposedEmail

# SES message tags allow only ASCII letters, digits, "_" and "-": the delivery token (a UUID) fits as it is.
DELIVERY_TAG = "delivery"


class SharedPartsGenerator(BytesGenerator):
    """Writes a part that many messages share (a chart) from the bytes it came out as the first time.

    Serialising is most of the cost of an email: each chart's headers are folded and its base64 lines written again
    for every message that shows it, although they come out the same. A shared part carries a ``serialised`` dict;
    its bytes are kept per output format (line ending, line length, encoding), so whatever asks for the message
    (the archive, the email backend) gets exactly what the standard generator writes.
    """

    def _write(self, msg: Message) -> None:
        serialised = getattr(msg, "serialised", None)
        if serialised is None:
            return super()._write(msg)
        policy = self.policy
        key = (self._NL, self._mangle_from_, self.maxheaderlen, type(policy), policy.max_line_length, policy.cte_type)
        data = serialised.get(key)
        if data is None:
            outer, self._fp = self._fp, self._new_buffer()
            try:
                super()._write(msg)
                data = self._fp.getvalue()
            finally:
                self._fp = outer
            serialised[key] = data  # a race only writes the same bytes twice
        self._fp.write(data)


class NewsletterMultipart(SafeMIMEMultipart):
    """Django's multipart, serialised with the generator that writes shared parts once."""

    def as_bytes(self, unixfrom: bool = False, linesep: str = "\n") -> bytes:
        fp = BytesIO()
        SharedPartsGenerator(fp, mangle_from_=False).flatten(self, unixfrom=unixfrom, linesep=linesep)
        return fp.getvalue()


class NewsletterMessage(EmailMultiAlternatives):
    """An HTML email with a text twin whose HTML part carries inline images (Content-ID → PNG bytes)."""

    def __init__(self, *args, inline_images: dict[str, bytes] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.inline_images = inline_images or {}
        self._mime = None

    def message(self):
        # Built once: the archive and the email backend serialise the very same message object.
        if self._mime is None:
            self._mime = super().message()
        return self._mime

    def _create_alternatives(self, msg):
        msg = super()._create_alternatives(msg)
        if not msg.is_multipart():
            return msg
        outer = NewsletterMultipart(_subtype=msg.get_content_subtype(), encoding=msg.encoding)
        for part in msg.get_payload():
            outer.attach(part)
        msg = outer
        # A random boundary set up front spares the generator its search of the whole body for a safe one.
        msg.set_boundary(f"=_walter_{uuid.uuid4().hex}")
        if not self.inline_images:
            return msg
        parts = msg.get_payload()
        related = SafeMIMEMultipart(_subtype="related", encoding=self.encoding or settings.DEFAULT_CHARSET)
        related.set_boundary(f"=_walter_{uuid.uuid4().hex}")
        related.attach(parts[-1])
        for cid, data in self.inline_images.items():
            related.attach(_inline_png(cid, data))
        parts[-1] = related
        return msg


@functools.lru_cache(maxsize=4096)
def _inline_png(cid: str, data: bytes) -> MIMEImage:
    """One MIME part per chart, shared by every message that shows it (parts are only read once built)."""
    image = MIMEImage(data, _subtype="png")
    image["Content-ID"] = f"<{cid}>"
    image.add_header("Content-Disposition", "inline", filename=f"{cid.split('@')[0]}.png")
    image.serialised = {}
    return image


def message_domain() -> str:
    address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    return address.rpartition("@")[2] or "walter.local"


def message_id_for(token: str) -> str:
    """Stable per delivery, so a resend of the same delivery is recognisable as the same message."""
    return f"<{token}@{message_domain()}>"


def message_build(
    *, composed: ComposedEmail, to: str, token: str, unsubscribe_url: str, test_copy: bool = False
) -> NewsletterMessage:
    unsubscribe = [f"<{unsubscribe_url}>"]
    if settings.NEWSLETTER_UNSUBSCRIBE_MAILTO:
        unsubscribe.append(f"<mailto:{settings.NEWSLETTER_UNSUBSCRIBE_MAILTO}?subject=unsubscribe>")
    message = NewsletterMessage(
        subject=f"[TEST COPY] {composed.subject}" if test_copy else composed.subject,
        body=composed.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers={
            "Message-ID": message_id_for(token),
            # Django's default writes "-0000" ("zone unknown"); the time is UTC and the header says so.
            "Date": format_datetime(timezone.now()),
            "List-Unsubscribe": ", ".join(unsubscribe),
            # RFC 8058: mail clients may unsubscribe with one POST to the https URL.
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Walter-Delivery": token,
        },
        inline_images=composed.images,
    )
    message.attach_alternative(composed.html, "text/html")
    # Amazon SES (through django-anymail): the configuration set comes from ANYMAIL settings; the tag lets
    # SES events (bounces, complaints, deliveries) be traced back to this delivery.
    message.esp_extra = {"EmailTags": [{"Name": DELIVERY_TAG, "Value": token}]}
    return message
