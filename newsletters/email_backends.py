"""An email backend that writes each message to its own `.eml` file: the embedded default's outbox.

Django's file backend appends every message of a connection to one `.log` file; one file per message is what a
person wants to open in a mail client, and what tests count.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage


class EmlFileBackend(BaseEmailBackend):
    def __init__(self, *args, file_path: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.directory = Path(file_path or settings.EMAIL_FILE_PATH)
        self._lock = threading.Lock()

    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        sent = 0
        for message in email_messages:
            mime = message.message()
            raw = mime.as_bytes(linesep="\r\n")
            token = re.sub(r"[^A-Za-z0-9.@_-]", "", mime.get("Message-ID", "")) or f"message-{id(message)}"
            with self._lock:
                (self.directory / f"{token}.eml").write_bytes(raw)
            sent += 1
        return sent
