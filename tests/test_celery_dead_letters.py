"""Dead letters on the Redis broker, for real: Celery workers on Redis and the test's PostgreSQL database, a batch
that fails on every receive, the dead letters, and requeue_dead_letters once the cause is fixed."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

from tests.conftest import TRADING_DAY
from tests.test_celery_workers import cluster_factory, populate  # noqa: F401 - the fixture, shared

pytestmark = [pytest.mark.slow]

FAILING = ("--include", "tests.fakes.failing_batches")


def attempts(log: Path) -> collections.Counter:
    """Failed attempts per batch (its first delivery id)."""
    if not log.exists():
        return collections.Counter()
    return collections.Counter(line.split()[0] for line in log.read_text().splitlines())


def wait_for(what: str, done, cluster, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n" + cluster.worker_logs()
        time.sleep(0.2)


def dead_letters_waiting(cluster) -> int:
    out, _ = cluster.manage("requeue_dead_letters", "--dry-run").communicate(timeout=60)
    assert "batches wait in the dead letters" in out, out
    return int(out.split()[0])


def test_a_batch_failing_on_every_receive_is_set_aside_after_five_and_sent_once_when_requeued(
    cluster_factory,  # noqa: F811
    tmp_path,
):
    from newsletters.models import DailyRun, Delivery

    emails = populate(60)
    cluster = cluster_factory(batch=20, delay=0, visibility=120)
    broken, failed_log = tmp_path / "broken", tmp_path / "failed.log"
    broken.touch()
    cluster.env.update({"BATCHES_FAIL_WHILE": str(broken), "BATCHES_FAILED_LOG": str(failed_log)})
    cluster.worker(*FAILING)
    cluster.worker(*FAILING)
    run = cluster.manage("run_daily", "--date", TRADING_DAY.isoformat(), "--no-wait")
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 0 and "queued for the workers: 60 emails" in out, out

    wait_for("three batches in the dead letters", lambda: dead_letters_waiting(cluster) == 3, cluster)
    time.sleep(2)  # a message still going round would fail again meanwhile
    tries = attempts(failed_log)
    assert len(tries) == 3 and set(tries.values()) == {5}, f"each batch received and failed 5 times: {tries}"
    assert cluster.handed() == [], "nothing was sent"
    assert Delivery.objects.filter(status=Delivery.Status.PENDING).count() == 60, "the deliveries stay pending"
    assert DailyRun.objects.get().status == DailyRun.Status.RUNNING

    # The cause is fixed; the batches go back once, and each subscriber gets the issue once.
    broken.unlink()
    requeue = cluster.manage("requeue_dead_letters", "--limit", "2")
    out, _ = requeue.communicate(timeout=60)
    assert requeue.returncode == 0 and "Requeued 2 batches; 1 left in the dead letters." in out, out
    requeue = cluster.manage("requeue_dead_letters")
    out, _ = requeue.communicate(timeout=60)
    assert "Requeued 1 batches; 0 left in the dead letters." in out, out
    wait_for("the requeued batches to be sent", lambda: len(cluster.handed()) >= 60, cluster)
    wait_for("the last worker to record the run", lambda: DailyRun.objects.get().finished_at is not None, cluster)
    counts = collections.Counter(address for address, _, _ in cluster.handed())
    assert set(counts) == set(emails) and max(counts.values()) == 1
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    record = DailyRun.objects.get()
    assert record.status == DailyRun.Status.SUCCEEDED and record.emails_sent == 60, record.errors
    assert sum(attempts(failed_log).values()) == 15, "nothing failed after the fix"
