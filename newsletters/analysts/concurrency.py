"""How many requests a model server gets at once: additive increase, multiplicative decrease (AIMD), like TCP.

A server that answers 429, 5xx or lets a request time out is saturated: the limit halves (at least 1). A full
round of good answers (as many as the limit) adds one request, up to the configured maximum. A burst of failures from requests sent at the same limit halves it once, not once per request:
each request carries the epoch it was sent in, and only a failure from the current epoch cuts again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

OK = "ok"
OVERLOAD = "overload"
NEUTRAL = "neutral"  # an answer that says nothing about load (a 4xx, a refused format)


@dataclass(frozen=True)
class Ticket:
    epoch: int


class AdaptiveLimit:
    def __init__(self, maximum: int, *, adaptive: bool = True) -> None:
        self.maximum = max(1, int(maximum))
        self.adaptive = adaptive
        self.limit = self.maximum
        self._answers = 0
        self.in_flight = 0
        #: Every whole limit taken, in order, starting with the maximum (for tests, the bench and the run's record).
        self.history: list[int] = [self.maximum]
        self._epoch = 0
        self._cond = threading.Condition()

    @property
    def current(self) -> int:
        return self.limit

    def acquire(self, timeout: float | None = None) -> Ticket | None:
        """A place among the requests in flight, or None when ``timeout`` seconds pass without one."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.in_flight >= self.current:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            self.in_flight += 1
            return Ticket(self._epoch)

    def release(self, ticket: Ticket, outcome: str) -> None:
        with self._cond:
            self.in_flight -= 1
            if self.adaptive and outcome == OVERLOAD and ticket.epoch == self._epoch:
                self.limit = max(1, self.limit // 2)
                self._epoch += 1
                self._answers = 0
            elif self.adaptive and outcome == OK and self.limit < self.maximum:
                self._answers += 1
                if self._answers >= self.limit:
                    self.limit += 1
                    self._answers = 0
            if self.history[-1] != self.current:
                self.history.append(self.current)
            self._cond.notify_all()
