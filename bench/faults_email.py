"""The email backend of ``bench/faults.py``: a journal of every message handed over, and SES's refusals on demand.

Each accepted message appends one JSON line (the time it was handed over, the delivery token, the recipient, what
the text says about its data) to ``FAULTS_JOURNAL`` and fsyncs it before returning, so a process killed at any
moment leaves a true record of what "SES" accepted. Refusals are the errors anymail raises for SES's answers (an
``AnymailAPIError`` caused by botocore's ``ClientError``), built by ``tests.fakes.email_backends.ses_error``:

- ``FAULTS_SES_THROTTLE``: the probability that one attempt is throttled (``TooManyRequestsException``);
- ``FAULTS_SES_REJECT``: the share of recipients, chosen by a hash of the address so every attempt agrees, whose
  messages SES rejects (``MessageRejected``);
- ``FAULTS_SES_PAUSE_AFTER``: after this many accepted messages the account's sending is paused
  (``SendingPausedException``) for the rest of the process.

``FAULTS_EMAIL_DELAY`` seconds per message make the backend slow enough for kills to land mid-send.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import zlib

from django.core.mail.backends.base import BaseEmailBackend

from tests.fakes.email_backends import ses_error

STALE_MARK = "No new data for"
DEMO_MARK = "DEMO DATA"
FALLBACK_MARK = "automated analysis"


def rejected_recipient(address: str, share: float) -> bool:
    """Whether SES rejects ``address`` when ``share`` of the recipients are rejected; the harness asks the same."""
    return share > 0 and zlib.crc32(address.lower().encode()) % 10_000 < share * 10_000


class JournalBackend(BaseEmailBackend):
    _lock = threading.Lock()
    _random = random.Random()
    accepted = 0  # by every connection of this process

    def send_messages(self, email_messages) -> int:
        path = os.environ["FAULTS_JOURNAL"]
        delay = float(os.environ.get("FAULTS_EMAIL_DELAY", "0.004"))
        throttle = float(os.environ.get("FAULTS_SES_THROTTLE", "0") or 0)
        reject = float(os.environ.get("FAULTS_SES_REJECT", "0") or 0)
        pause_after = int(os.environ.get("FAULTS_SES_PAUSE_AFTER", "0") or 0)
        for message in email_messages:
            handed = time.time()
            recipient = message.to[0]
            time.sleep(delay)
            with self._lock:
                throttled = throttle > 0 and self._random.random() < throttle
            with self._lock:
                paused = pause_after > 0 and type(self).accepted >= pause_after
            if paused:
                raise ses_error("SendingPausedException", "Sending is paused for this account.")
            if throttled:
                raise ses_error("TooManyRequestsException", "Maximum sending rate exceeded.")
            if rejected_recipient(recipient, reject):
                raise ses_error("MessageRejected", "Email address is not verified.")
            text = message.body or ""
            flags = [
                name
                for name, mark in (("stale", STALE_MARK), ("demo", DEMO_MARK), ("fallback", FALLBACK_MARK))
                if mark in text or mark in message.subject
            ]
            line = {
                "t": handed,
                "token": message.extra_headers.get("X-Walter-Delivery", ""),
                "to": recipient,
                "flags": flags,
                "pid": os.getpid(),
            }
            with self._lock, open(path, "a", encoding="utf-8") as journal:
                journal.write(json.dumps(line) + "\n")
                journal.flush()
                os.fsync(journal.fileno())
                type(self).accepted += 1
        return len(email_messages)
