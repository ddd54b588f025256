"""An outbox backend that refuses some recipients the way SES does, naming them in its answer, as SES's real
texts do ("... failed the check in region US-EAST-1: ada@example.com"). Which ones: ``REJECT_ADDRESSES`` (comma
separated) in the environment, so a job started as a subprocess can be given them."""

from __future__ import annotations

import os

from newsletters.email_backends import EmlFileBackend
from tests.fakes.email_backends import ses_error


class NamingRejectionBackend(EmlFileBackend):
    def send_messages(self, email_messages) -> int:
        refused = {a.strip().lower() for a in os.environ.get("REJECT_ADDRESSES", "").split(",") if a.strip()}
        for message in email_messages:
            if message.to[0].lower() in refused:
                text = f"Email address is not verified. The following identities failed the check: {message.to[0]}"
                raise ses_error("MessageRejected", text)
        return super().send_messages(email_messages)
