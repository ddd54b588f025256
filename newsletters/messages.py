"""Turn a composed email into the message handed to the email backend, with the bulk-sender headers.

The HTML and its charts travel together as multipart/related (the charts are inline CID images), inside a
multipart/alternative with the plain-text twin: what mail clients expect of a newsletter with images.
"""

from __future__ import annotations

from email.mime.image import MIMEImage
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import SafeMIMEMultipart

from .compose import ComposedEmail

# SES message tags allow only ASCII letters, digits, "_" and "-": the delivery token (a UUID) fits as it is.
DELIVERY_TAG = "delivery"


class NewsletterMessage(EmailMultiAlternatives):
    """An HTML email with a text twin whose HTML part carries inline images (Content-ID → PNG bytes)."""

    def __init__(self, *args, inline_images: dict[str, bytes] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.inline_images = inline_images or {}

    def _create_alternatives(self, msg):
        msg = super()._create_alternatives(msg)
        if not self.inline_images or not msg.is_multipart():
            return msg
        parts = msg.get_payload()
        html = parts[-1]
        related = SafeMIMEMultipart(_subtype="related", encoding=self.encoding or settings.DEFAULT_CHARSET)
        related.attach(html)
        for cid, data in self.inline_images.items():
            image = MIMEImage(data, _subtype="png")
            image["Content-ID"] = f"<{cid}>"
            image.add_header("Content-Disposition", "inline", filename=f"{cid.split('@')[0]}.png")
            related.attach(image)
        parts[-1] = related
        return msg


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
