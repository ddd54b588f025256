"""Pacing shared by every process through the cache: at most ``rate`` calls per second, cluster-wide.

Time is cut into slots of ``1 / rate`` seconds; a caller claims the first free slot with the cache's atomic
``add`` (Redis SETNX in production) and sleeps until it starts. A `Retry-After` from the outside system moves
every caller's next slot past it. A caller that cannot wait long (a web request) passes ``max_wait`` and gets
`PacerBusy` instead of a slot further away, without claiming it. The clock and sleep are injectable so tests need
no real waiting.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

from django.core.cache import BaseCache, caches

# How far ahead one caller searches for a free slot before it gives up and re-reads the clock.
MAX_LOOKAHEAD = 10_000


class PacerBusy(Exception):
    """The next free slot starts later than the caller is willing to wait; nothing was claimed."""

    def __init__(self, name: str, wait: float, max_wait: float) -> None:
        super().__init__(f"{name}: the next free slot is {wait:.1f}s away, more than the {max_wait:g}s allowed")
        self.wait = wait
        self.max_wait = max_wait


class Pacer:
    def __init__(
        self,
        name: str,
        rate_per_second: float,
        *,
        cache: BaseCache | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self.name = name
        self.interval = 1.0 / rate_per_second
        self.cache = cache or caches["default"]
        self.clock = clock
        self.sleep = sleep

    @classmethod
    def per_minute(cls, name: str, requests_per_minute: float, **kwargs) -> Pacer:
        return cls(name, requests_per_minute / 60.0, **kwargs)

    def _key(self, slot: int) -> str:
        return f"walter:pace:{self.name}:{slot}"

    def _blocked_until(self) -> float:
        return float(self.cache.get(f"walter:pace:{self.name}:until") or 0.0)

    def acquire(self, *, max_wait: float | None = None) -> float:
        """Wait for this caller's slot; returns the time it starts.

        With ``max_wait``, raises `PacerBusy` rather than wait longer than that many seconds (a 429's deferral
        counts too): the slot is left for a caller that can wait.
        """
        while True:
            now = max(self.clock(), self._blocked_until())
            first = math.ceil(now / self.interval - 1e-9)
            # Keep a slot's claim a little longer than it takes for the slot to pass.
            timeout = max(2, math.ceil(self.interval * 4))
            for slot in range(first, first + MAX_LOOKAHEAD):
                if max_wait is not None and (wait := slot * self.interval - self.clock()) > max_wait:
                    raise PacerBusy(self.name, wait, max_wait)
                if self.cache.add(self._key(slot), 1, timeout=timeout + math.ceil((slot - first) * self.interval)):
                    start = slot * self.interval
                    delay = start - self.clock()
                    if delay > 0:
                        self.sleep(delay)
                    return start

    def defer(self, seconds: float) -> None:
        """No caller starts before ``seconds`` from now (a 429's Retry-After)."""
        until = self.clock() + max(0.0, seconds)
        if until > self._blocked_until():
            self.cache.set(f"walter:pace:{self.name}:until", until, timeout=math.ceil(seconds) + 5)


def safe_cache_key(text: str) -> str:
    """``text`` itself when every cache backend accepts it as part of a key, else its digest: keys built from what
    visitors type (an address, a search) may hold spaces, control characters or be long, which memcached refuses."""
    if len(text) <= 120 and text.isascii() and text.isprintable() and " " not in text:
        return text
    return "sha256-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def allow(key: str, limit: int, window_seconds: int, *, cache: BaseCache | None = None) -> bool:
    """Count one hit of ``key`` in the current window; False once more than ``limit`` hits were counted.

    Shared by every process through the cache (Redis in production: a per-process or database cache would
    undercount). Fixed windows: simple, and at worst twice the limit across a window boundary.
    """
    cache = cache or caches["default"]
    bucket = f"walter:limit:{safe_cache_key(key)}:{int(time.time() // window_seconds)}"
    if cache.add(bucket, 1, timeout=window_seconds + 5):
        return limit >= 1
    try:
        return cache.incr(bucket) <= limit
    except ValueError:  # expired between add and incr
        cache.add(bucket, 1, timeout=window_seconds + 5)
        return True
