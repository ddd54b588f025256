""" "Send now" clicked twice at once, or during the daily run: real processes on PostgreSQL, one copy each."""

from __future__ import annotations

import collections
import time

import pytest

from tests.conftest import TRADING_DAY
from tests.test_celery_workers import cluster_factory, populate  # noqa: F401 - the fixture, shared

pytestmark = [pytest.mark.slow]


def test_a_second_send_now_while_the_first_is_in_flight_sends_one_copy(cluster_factory):  # noqa: F811
    from newsletters.models import Delivery

    (address,) = populate(1)
    cluster = cluster_factory(batch=10, delay=3, visibility=120)
    cluster.env["CELERY_BROKER_URL"] = ""  # each command runs its job in-process, as without a broker
    date = TRADING_DAY.isoformat()
    first = cluster.manage("send_newsletter", "--email", address, "--date", date)
    deadline = time.monotonic() + 120
    while not Delivery.objects.filter(status=Delivery.Status.SENDING).exists():
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.05)
    # The first copy is being handed over right now: the second click must not make another.
    second = cluster.manage("send_newsletter", "--email", address, "--date", date)
    outputs = [(p.wait(timeout=120), p.stdout.read()) for p in (first, second)]
    assert [a for a, _, _ in cluster.handed()] == [address], outputs
    for code, out in outputs:
        assert (code == 0 and "Sent the issue" in out) or "already received" in out, out


def test_send_now_during_the_daily_run_on_workers_sends_one_copy(cluster_factory):  # noqa: F811
    emails = populate(100)
    cluster = cluster_factory(batch=10, delay=0.01, visibility=120)
    cluster.worker()
    cluster.worker()
    date = TRADING_DAY.isoformat()
    run = cluster.manage("run_daily", "--date", date)
    clicks = [cluster.manage("send_newsletter", "--email", e, "--date", date) for e in emails[:: len(emails) // 4]]
    outputs = [(p.wait(timeout=180), p.stdout.read()) for p in clicks]
    out, _ = run.communicate(timeout=240)
    assert run.returncode == 0, out + cluster.worker_logs()
    counts = collections.Counter(address for address, _, _ in cluster.handed())
    assert set(counts) == set(emails) and max(counts.values()) == 1, (counts.most_common(3), outputs)
    for code, text in outputs:
        assert (code == 0 and "Sent the issue" in text) or "already received" in text, text
