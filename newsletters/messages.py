"""Turn a composed email into the message handed to the email backend, with the bulk-sender headers."""

from __future__ import annotations

from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives

from .compose import ComposedEmail


def message_domain() -> str:
    address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    return address.rpartition("@")[2] or "walter.local"


def message_id_for(token: str) -> str:
    """Stable per delivery, so a resend of the same delivery is recognisable as the same message."""
    return f"<{token}@{message_domain()}>"


def message_build(*, composed: ComposedEmail, to: str, token: str, unsubscribe_url: str) -> EmailMultiAlternatives:
    unsubscribe = [f"<{unsubscribe_url}>"]
    if settings.NEWSLETTER_UNSUBSCRIBE_MAILTO:
        unsubscribe.append(f"<mailto:{settings.NEWSLETTER_UNSUBSCRIBE_MAILTO}?subject=unsubscribe>")
    message = EmailMultiAlternatives(
        subject=composed.subject,
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
    )
    message.attach_alternative(composed.html, "text/html")
    return message
