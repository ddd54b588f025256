"""Stopping on request: a SIGTERM (ECS deploys, scale-in, spot) or SIGINT ends sending cleanly instead of mid-message.

One process-wide flag, :data:`stop`. The delivery loop reads it between windows and stops handing out messages;
what is already with the email backend finishes and is recorded. Outside such a "graceful" section (market data,
analysis) nothing needs finishing, so the signal raises :class:`Stopped` at once, like Ctrl-C does.

- ``run_daily`` wraps its run in :func:`stop_on_signals`.
- A Celery worker (warm shutdown) calls :func:`stop_request` from its ``worker_shutting_down`` signal: the
  delivery task then finishes the messages in flight and leaves the rest pending for another worker.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Stopped(BaseException):  # like KeyboardInterrupt: no "except Exception" may swallow it
    """A stop was requested outside a graceful section: unwind now."""


class StopFlag:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self._graceful = 0
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def request(self, reason: str) -> None:
        with self._lock:
            self.reason = self.reason or reason
        self._event.set()

    def clear(self) -> None:
        with self._lock:
            self.reason = ""
        self._event.clear()

    @contextlib.contextmanager
    def graceful(self) -> Iterator[None]:
        """Inside, a signal only sets the flag: the code here checks it and finishes what it started."""
        with self._lock:
            self._graceful += 1
        try:
            yield
        finally:
            with self._lock:
                self._graceful -= 1

    @property
    def in_graceful_section(self) -> bool:
        return self._graceful > 0


#: The process's stop flag: set by a signal or by a worker shutting down.
stop = StopFlag()


def stop_request(reason: str) -> None:
    """Ask the sending in this process to stop handing out messages (thread-safe; callable from a signal handler)."""
    stop.request(reason)


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Turn ``signals`` into a stop request for the block; the previous handlers come back afterwards.

    Only the main thread may install handlers; elsewhere (a test thread, a worker's pool thread) the block runs
    without them and the stop must be requested by whoever owns the signals.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        stop.request(f"received {signal.Signals(signum).name}")
        if not stop.in_graceful_section:
            raise Stopped(stop.reason)

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
