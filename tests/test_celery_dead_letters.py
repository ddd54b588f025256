"""Dead letters on the Redis broker, for real: Celery workers on Redis and the test's PostgreSQL database, a batch
that fails on every receive, the dead letters, and requeue_dead_letters once the cause is fixed."""

from __future__ import annotations

import base64
import collections
import json
import time
import uuid
from pathlib import Path

import pytest
from django.urls import reverse

from tests.conftest import TRADING_DAY
from tests.test_celery_workers import REDIS_URL, cluster_factory, populate, redis_available  # noqa: F401

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_batch_that_kills_its_worker_on_every_receive_is_set_aside_after_five(cluster_factory, tmp_path):  # noqa: F811
    import redis

    from newsletters.models import Delivery

    populate(20)
    # Redis hands an unacknowledged message out again once it is older than the visibility timeout.
    cluster = cluster_factory(batch=20, delay=0, visibility=2)
    broken, failed_log = tmp_path / "broken", tmp_path / "failed.log"
    broken.touch()
    cluster.env.update(
        {"BATCHES_FAIL_WHILE": str(broken), "BATCHES_FAILED_LOG": str(failed_log), "BATCHES_FAIL_HOW": "crash"}
    )
    run = cluster.manage("run_daily", "--date", TRADING_DAY.isoformat(), "--no-wait")
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 0, out
    dead_letters = f"walter:dead-letters:{cluster.env['CELERY_QUEUE']}"
    broker = redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + 240
    while not broker.llen(dead_letters):
        assert time.monotonic() < deadline, f"never set aside: {attempts(failed_log)}\n" + cluster.worker_logs()
        if all(worker.poll() is not None for worker in cluster.workers):
            cluster.worker(*FAILING)  # the dead worker replaced, as ECS would
        time.sleep(0.3)
    assert set(attempts(failed_log).values()) == {5}, "five receives, each of which killed its worker"
    assert len({line.split()[1] for line in failed_log.read_text().splitlines()}) == 5, "five worker processes"
    assert Delivery.objects.filter(status=Delivery.Status.PENDING).count() == 20


# -- in-process: the count, the list, the admin's button -------------------------------------------------------------


@pytest.fixture
def redis_broker(settings):
    if not redis_available():
        pytest.skip(f"no Redis at {REDIS_URL}")
    import redis

    queue = f"walter-test-{uuid.uuid4().hex[:8]}"
    settings.CELERY_BROKER_URL, settings.CELERY_TASK_DEFAULT_QUEUE = REDIS_URL, queue
    client = redis.Redis.from_url(REDIS_URL)
    yield client, queue
    client.delete(queue, f"walter:dead-letters:{queue}", *client.keys("walter:receives:test-*"))


def received(queue: str, n: int = 0):
    from newsletters.dead_letters import Received

    return Received(
        task="newsletters.tasks.deliver_batch",
        message_id=f"test-{queue}-{n}:0",
        args=[7, [1, 2, 3], None],
        kwargs={},
        queue=queue,
    )


def test_the_sixth_receive_of_a_message_sets_it_aside_and_a_new_message_counts_from_zero(redis_broker):
    from newsletters.dead_letters import message_done, message_receive

    _, queue = redis_broker
    assert [message_receive(received=received(queue)) for _ in range(5)] == [False] * 5
    assert message_receive(received=received(queue)) is True
    # A message that finished forgets its count: the same id received again later is a first receive.
    for _ in range(3):
        message_receive(received=received(queue, 1))
    message_done(received=received(queue, 1))
    assert [message_receive(received=received(queue, 1)) for _ in range(5)] == [False] * 5


def test_without_a_redis_broker_nothing_is_counted(settings):
    from newsletters.dead_letters import message_receive

    settings.CELERY_BROKER_URL = ""
    assert not any(message_receive(received=received("walter")) for _ in range(10))


def queued_args(client, queue: str) -> list:
    """The arguments of the task messages waiting on ``queue`` (kombu's Redis transport: a list of JSON envelopes)."""
    return [json.loads(base64.b64decode(json.loads(raw)["body"]))[0] for raw in client.lrange(queue, 0, -1)]


def test_the_admin_button_requeues_the_dead_letters(redis_broker, admin_client):
    from newsletters.dead_letters import message_receive

    client, queue = redis_broker
    for n in (1, 2):
        for _ in range(6):
            message_receive(received=received(queue, n))
    assert client.llen(f"walter:dead-letters:{queue}") == 2
    url = reverse("admin:newsletters_dailyrun_requeue_dead_letters")
    assert admin_client.get(url).status_code == 405, "a write: POST only"
    assert "Requeue dead letters" in admin_client.get(reverse("admin:newsletters_dailyrun_changelist")).content.decode()

    page = admin_client.post(url, follow=True).content.decode()
    assert "Requeued 2 batches; 0 left in the dead letters." in page
    assert queued_args(client, queue) == [[7, [1, 2, 3], None]] * 2, "back on the delivery queue, as they were"


def test_the_admin_button_says_why_when_there_are_no_dead_letters(admin_client, settings):
    settings.CELERY_BROKER_URL = ""
    page = admin_client.post(reverse("admin:newsletters_dailyrun_requeue_dead_letters"), follow=True).content.decode()
    assert "No broker is configured" in page


def test_the_requeue_button_is_for_staff_only(client):
    response = client.post(reverse("admin:newsletters_dailyrun_requeue_dead_letters"))
    assert response.status_code == 302 and "/login/" in response["Location"]
