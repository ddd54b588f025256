"""Test doubles for the email backend: one that answers as Amazon SES does through django-anymail, scripted per
recipient, and one that logs every hand-over durably so a killed process leaves a true record."""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict

from anymail.exceptions import AnymailAPIError
from botocore.exceptions import ClientError
from django.core.mail.backends.base import BaseEmailBackend


def ses_error(code: str, message: str = "") -> AnymailAPIError:
    """The exception anymail raises for an SES error answer: an AnymailAPIError caused by botocore's ClientError."""
    cause = ClientError({"Error": {"Code": code, "Message": message or code}}, "SendEmail")
    try:
        raise AnymailAPIError(str(cause)) from cause
    except AnymailAPIError as exc:
        return exc


class ScriptedSESBackend(BaseEmailBackend):
    """Answers like SES: ``script[address]`` lists the errors to raise, in order, before the address is accepted."""

    script: dict[str, list[tuple[str, str]]] = {}
    sent: list = []
    connections_opened = 0
    _lock = threading.Lock()

    @classmethod
    def reset(cls, script: dict[str, list[tuple[str, str]]] | None = None) -> None:
        cls.script = defaultdict(list, {k: list(v) for k, v in (script or {}).items()})
        cls.sent = []
        cls.connections_opened = 0

    def open(self) -> bool:
        with self._lock:
            type(self).connections_opened += 1
        return True

    def send_messages(self, email_messages) -> int:
        count = 0
        for message in email_messages:
            with self._lock:
                errors = self.script.get(message.to[0])
                error = errors.pop(0) if errors else None
            if error:
                raise ses_error(*error)
            with self._lock:
                self.sent.append(message)
            count += 1
        return count


class DurableLogBackend(BaseEmailBackend):
    """Appends each recipient to ``EMAIL_LOG_PATH`` with an fsync before returning, slowly (``EMAIL_LOG_DELAY``
    seconds per message), so a process killed mid-send leaves a record of exactly what was handed over."""

    _lock = threading.Lock()

    def send_messages(self, email_messages) -> int:
        path = os.environ["EMAIL_LOG_PATH"]
        delay = float(os.environ.get("EMAIL_LOG_DELAY", "0.02"))
        for message in email_messages:
            time.sleep(delay)
            with self._lock, open(path, "a", encoding="utf-8") as log:
                log.write(f"{message.to[0]} {message.extra_headers.get('X-Walter-Delivery', '')}\n")
                log.flush()
                os.fsync(log.fileno())
        return len(email_messages)
