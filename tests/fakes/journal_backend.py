"""An email backend for multi-process tests: every hand-over journaled to one file, with the sending process."""

from __future__ import annotations

import os
import time

from django.core.mail.backends.base import BaseEmailBackend

from tests.fakes.email_backends import ses_error


def _lines(path: str) -> int:
    with open(path, "rb") as journal:
        return sum(1 for _ in journal)


class ProcessJournalBackend(BaseEmailBackend):
    """Appends ``address delivery-token pid`` to ``EMAIL_LOG_PATH`` (one O_APPEND write, fsynced) per message,
    after ``EMAIL_LOG_DELAY`` seconds; several processes may share the file, and a killed one leaves a true record
    of what it handed over. With ``EMAIL_ACCOUNT_STOPS_AFTER=N`` the account refuses everything (as SES does when
    sending is paused) once the journal holds N messages."""

    def send_messages(self, email_messages) -> int:
        path = os.environ["EMAIL_LOG_PATH"]
        delay = float(os.environ.get("EMAIL_LOG_DELAY", "0"))
        for message in email_messages:
            if delay:
                time.sleep(delay)
            stops_after = int(os.environ.get("EMAIL_ACCOUNT_STOPS_AFTER", "0"))
            if stops_after and os.path.exists(path) and _lines(path) >= stops_after:
                raise ses_error("SendingPausedException", "Sending is paused for this account.")
            line = f"{message.to[0]} {message.extra_headers.get('X-Walter-Delivery', '')} {os.getpid()}\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        return len(email_messages)
