"""The shared pacer, driven by a simulated clock: no real sleeping."""

from __future__ import annotations

import itertools
import threading

import pytest
from django.core.cache import caches

from walter_site.ratelimit import Pacer, PacerBusy


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.lock = threading.Lock()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


@pytest.fixture
def cache():
    cache = caches["default"]
    cache.clear()
    return cache


def test_rate_is_never_exceeded_and_slots_are_not_skipped(cache):
    clock = FakeClock()
    pacer = Pacer("test-rate", 20, cache=cache, clock=clock.time, sleep=clock.sleep)
    starts = [pacer.acquire() for _ in range(200)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(0.05)
    # 200 messages at 20/s take at least 9.95 s of simulated time and not more than 10 s.
    assert 9.9 <= clock.now - 1_000_000.0 <= 10.01


def test_two_pacers_with_the_same_name_share_the_budget(cache):
    clock = FakeClock()
    a = Pacer("shared", 5 / 60, cache=cache, clock=clock.time, sleep=clock.sleep)
    b = Pacer("shared", 5 / 60, cache=cache, clock=clock.time, sleep=clock.sleep)
    starts = sorted([a.acquire(), b.acquire(), a.acquire(), b.acquire()])
    assert all(later - earlier >= 12 - 1e-6 for earlier, later in itertools.pairwise(starts))


def test_retry_after_pushes_every_caller_back(cache):
    clock = FakeClock()
    pacer = Pacer("deferred", 10, cache=cache, clock=clock.time, sleep=clock.sleep)
    pacer.acquire()
    pacer.defer(30)
    start = pacer.acquire()
    assert start >= 1_000_000.0 + 30


def test_per_minute_constructor():
    assert Pacer.per_minute("x", 5).interval == pytest.approx(12.0)
    with pytest.raises(ValueError):
        Pacer("x", 0)


def test_a_slot_further_than_max_wait_raises_without_sleeping_or_claiming_it(cache):
    clock = FakeClock()
    pacer = Pacer.per_minute("bounded", 5, cache=cache, clock=clock.time, sleep=clock.sleep)
    first = pacer.acquire()
    assert clock.now == first
    with pytest.raises(PacerBusy, match=r"12\.0s away, more than the 2s allowed") as busy:
        pacer.acquire(max_wait=2)
    assert busy.value.wait == pytest.approx(12.0) and clock.now == first  # nothing slept
    # The refused caller left the slot free: the next caller that can wait gets it, not the one after.
    assert pacer.acquire(max_wait=12) == pytest.approx(first + 12)
    assert clock.now == pytest.approx(first + 12)


def test_a_retry_after_deferral_counts_against_max_wait(cache):
    clock = FakeClock()
    pacer = Pacer("deferred-bounded", 10, cache=cache, clock=clock.time, sleep=clock.sleep)
    pacer.defer(30)
    with pytest.raises(PacerBusy):
        pacer.acquire(max_wait=2)
    assert clock.now == 1_000_000.0
    assert pacer.acquire(max_wait=31) >= 1_000_000.0 + 30
