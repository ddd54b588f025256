"""An email backend for tests that stop or change a run while it sends: the durable log, with a hold.

``EMAIL_LOG_HOLD=address`` and ``EMAIL_LOG_HOLD_FILE=path``: the message to ``address`` is taken by the backend,
which then writes ``path.held`` and waits (at most a minute) for ``path`` to exist before accepting it. So a test
knows for certain that this message is with the backend, and can act (erase its subscriber) while it is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.fakes.email_backends import DurableLogBackend


class HoldingLogBackend(DurableLogBackend):
    def send_messages(self, email_messages) -> int:
        hold = os.environ.get("EMAIL_LOG_HOLD", "")
        for message in email_messages:
            if hold and message.to[0] == hold:
                release = Path(os.environ["EMAIL_LOG_HOLD_FILE"])
                Path(f"{release}.held").write_text(message.extra_headers.get("X-Walter-Delivery", ""))
                deadline = time.monotonic() + 60
                while not release.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
        return super().send_messages(email_messages)
