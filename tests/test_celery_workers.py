"""Past one machine, for real: `celery -A walter_site worker` processes on the Redis broker and the test's PostgreSQL
database, run_daily in its own process planning, queueing and waiting, and a journal of every message handed over.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import TRADING_DAY

ROOT = Path(__file__).resolve().parent.parent
# One Redis database, flushed by every test here; another one when several checkouts run these tests at once.
REDIS_URL = os.environ.get("WALTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
SUBSCRIBERS = 2000
# Each worker sends over this many connections: a killed one leaves at most two windows of it in doubt.
WORKER_SEND_CONCURRENCY = 2

pytestmark = [pytest.mark.slow]


def populate(n: int) -> list[str]:
    from markets.providers.demo import DEMO_UNIVERSE
    from markets.services import ticker_ensure
    from subscriptions.models import Subscriber

    rng = random.Random(12)
    tickers = [ticker_ensure(symbol=s) for s in sorted(DEMO_UNIVERSE)[:8]]
    emails = [f"reader{i:05d}@example.com" for i in range(n)]
    Subscriber.objects.bulk_create(
        [Subscriber(email=e, status=Subscriber.Status.ACTIVE) for e in emails], batch_size=1000
    )
    Through = Subscriber.tickers.through
    Through.objects.bulk_create(
        [
            Through(subscriber_id=sid, ticker_id=t.id)
            for sid in Subscriber.objects.values_list("id", flat=True)
            for t in rng.sample(tickers, rng.randint(1, 3))
        ],
        batch_size=2000,
    )
    return emails


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class Cluster:
    """Workers and commands as separate processes, all on the test database and one fresh queue."""

    def __init__(self, tmp_path: Path, batch: int, delay: float, visibility: int) -> None:
        db = connection.settings_dict
        self.journal = tmp_path / "journal.log"
        self.logs = tmp_path
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "CELERY_BROKER_URL": REDIS_URL,
            # SES pacing and the "account stopped" word are shared by every process through the cache.
            "CACHE_URL": REDIS_URL,
            "CELERY_QUEUE": f"walter-test-{uuid.uuid4().hex[:8]}",
            "CELERY_VISIBILITY_TIMEOUT": str(visibility),
            "DELIVERY_WAIT_STALL_SECONDS": "60",
            "WALTER_VAR_DIR": str(tmp_path / "var"),
            "ARCHIVE_DIR": str(tmp_path / "var" / "archive"),
            "EMAIL_BACKEND": "tests.fakes.journal_backend.ProcessJournalBackend",
            "EMAIL_LOG_PATH": str(self.journal),
            "EMAIL_LOG_DELAY": str(delay),
            "DELIVERY_BATCH_SIZE": str(batch),
            "SES_SEND_CONCURRENCY": str(WORKER_SEND_CONCURRENCY),
            "SES_MAX_SEND_RATE": "0",
            "LOG_LEVEL": "WARNING",
        }
        if db.get("PASSWORD"):
            self.env["DATABASE_PASSWORD"] = db["PASSWORD"]
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.workers: list[subprocess.Popen] = []

    def worker(self, *extra: str) -> subprocess.Popen:
        n = len(self.workers)
        log = (self.logs / f"worker{n}.log").open("w")
        # The solo pool runs the task in the worker process itself, so a SIGKILL of that process kills the task.
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "walter_site", "worker", "-P", "solo", "-n", f"w{n}@%h"),
                *("-Q", self.env["CELERY_QUEUE"], "--without-gossip", "--without-mingle", "--loglevel=WARNING"),
                *extra,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        return process

    def manage(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def handed(self) -> list[tuple[str, str, int]]:
        if not self.journal.exists():
            return []
        rows = [line.split() for line in self.journal.read_text().splitlines()]
        return [(r[0], r[1], int(r[2])) for r in rows if len(r) == 3]

    def stop(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def worker_logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.logs.glob("worker*.log")))


@pytest.fixture
def cluster_factory(transactional_db, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("workers share the test database through PostgreSQL (the suite's PostgreSQL pass runs this)")
    if not redis_available():
        pytest.skip(f"no Redis at {REDIS_URL}")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    clusters: list[Cluster] = []

    def make(**kwargs) -> Cluster:
        cluster = Cluster(tmp_path, **kwargs)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()
    # The workers' connections are gone before pytest-django empties the tables.
    connection.close()


@pytest.mark.parametrize("workers", [2, 4])
def test_every_subscriber_gets_the_issue_exactly_once(cluster_factory, workers):
    emails = populate(SUBSCRIBERS)
    cluster = cluster_factory(batch=100, delay=0, visibility=120)
    for _ in range(workers):
        cluster.worker()
    run = cluster.manage("run_daily", "--date", TRADING_DAY.isoformat())
    out, _ = run.communicate(timeout=240)
    assert run.returncode == 0, out + cluster.worker_logs()

    handed = cluster.handed()
    counts = collections.Counter(address for address, _, _ in handed)
    assert set(counts) == set(emails), "every subscriber got the issue"
    assert max(counts.values()) == 1, f"someone got it twice: {counts.most_common(3)}"
    assert len({pid for _, _, pid in handed}) > 1, "the batches were shared between the workers"
    assert "emails 2000 sent" in out, out

    from newsletters.models import DailyRun, Delivery

    assert DailyRun.objects.get().emails_sent == SUBSCRIBERS
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}

    # A second run finds nothing to send and sends nothing.
    again = cluster.manage("run_daily", "--date", TRADING_DAY.isoformat())
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert len(cluster.handed()) == SUBSCRIBERS
    assert "every subscriber already has this issue" in out


def test_a_worker_killed_mid_batch_its_batch_is_redelivered_and_finished(cluster_factory):
    emails = populate(400)
    batch = 40
    cluster = cluster_factory(batch=batch, delay=0.02, visibility=6)
    victim = cluster.worker()
    cluster.worker()
    run = cluster.manage("run_daily", "--date", TRADING_DAY.isoformat())

    # Kill the victim once it has handed over a few messages of a batch, not at a batch's end.
    deadline = time.monotonic() + 120
    while True:
        mine = [row for row in cluster.handed() if row[2] == victim.pid]
        if len(mine) % batch >= 5:
            break
        assert time.monotonic() < deadline, "the victim worker sent nothing" + cluster.worker_logs()
        assert run.poll() is None, run.stdout.read()
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    in_flight = {address for address, _, pid in cluster.handed() if pid == victim.pid}

    out, _ = run.communicate(timeout=240)
    assert run.returncode == 0, out + cluster.worker_logs()
    counts = collections.Counter(address for address, _, _ in cluster.handed())
    assert set(counts) == set(emails), "the killed batch was redelivered and finished: everybody got the issue"
    # Only what the dead worker had handed over and not yet recorded (two windows at most) may arrive twice.
    twice = {address for address, n in counts.items() if n > 1}
    assert twice <= in_flight and len(twice) <= 2 * WORKER_SEND_CONCURRENCY, twice
    assert max(counts.values()) <= 2

    from newsletters.models import Delivery

    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}


def test_a_worker_stopped_with_sigterm_finishes_what_is_in_flight_and_leaves_the_rest(cluster_factory):
    emails = populate(300)
    batch = 150  # 3 s of sending at 20 ms a message: a SIGTERM lands in the middle of it
    cluster = cluster_factory(batch=batch, delay=0.02, visibility=120)
    stopped = cluster.worker()
    cluster.worker()
    run = cluster.manage("run_daily", "--date", TRADING_DAY.isoformat())
    deadline = time.monotonic() + 120
    while len([row for row in cluster.handed() if row[2] == stopped.pid]) % batch < 5:
        assert time.monotonic() < deadline, "the worker sent nothing" + cluster.worker_logs()
        time.sleep(0.005)
    signalled = time.monotonic()
    stopped.send_signal(signal.SIGTERM)
    stopped.wait(timeout=60)
    left_after = time.monotonic() - signalled
    mine = len([row for row in cluster.handed() if row[2] == stopped.pid])
    assert mine % batch, "the worker left mid-batch rather than sending the whole batch first"
    assert left_after < 2.5, f"the worker took {left_after:.1f} s to stop (its batch alone takes 3 s)"

    out, _ = run.communicate(timeout=240)
    assert run.returncode == 0, out + cluster.worker_logs()
    counts = collections.Counter(address for address, _, _ in cluster.handed())
    assert set(counts) == set(emails) and max(counts.values()) == 1, "the rest went to the other worker, once"


def test_no_wait_returns_once_queued_and_the_last_worker_records_the_run(cluster_factory):
    from newsletters.models import DailyRun

    populate(300)
    cluster = cluster_factory(batch=50, delay=0, visibility=120)
    run = cluster.manage("run_daily", "--date", TRADING_DAY.isoformat(), "--no-wait")
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 0, out
    assert "queued for the workers: 300 emails" in out
    assert DailyRun.objects.get().status == DailyRun.Status.RUNNING, "nobody has sent anything yet"
    assert cluster.handed() == []

    cluster.worker()
    cluster.worker()
    deadline = time.monotonic() + 120
    while DailyRun.objects.get().status == DailyRun.Status.RUNNING:
        assert time.monotonic() < deadline, cluster.worker_logs()
        time.sleep(0.2)
    record = DailyRun.objects.get()
    assert record.status == DailyRun.Status.SUCCEEDED, record.errors
    assert record.emails_sent == 300 and record.finished_at is not None
    assert "emails 300 sent" in record.summary
    assert len(cluster.handed()) == 300


def test_an_account_stop_seen_by_one_worker_stops_them_all_and_the_run_says_so(cluster_factory):
    from newsletters.models import Delivery

    emails = populate(400)
    cluster = cluster_factory(batch=20, delay=0.005, visibility=120)
    cluster.env["EMAIL_ACCOUNT_STOPS_AFTER"] = "50"
    cluster.worker()
    cluster.worker()
    run = cluster.manage("run_daily", "--date", TRADING_DAY.isoformat())
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 1, out
    assert "sending stopped: SendingPausedException" in out and "left pending for a later run" in out
    handed = cluster.handed()
    assert 50 <= len(handed) < 50 + 2 * 20, "nothing more was handed over than the batches in flight"
    assert Delivery.objects.filter(status=Delivery.Status.PENDING).count() == len(emails) - len(handed)

    # Once the account sends again, the next run sends the rest, and nobody twice.
    cluster.env["EMAIL_ACCOUNT_STOPS_AFTER"] = "0"
    cluster.stop()
    cluster.workers.clear()
    cluster.worker()
    cluster.worker()
    again = cluster.manage("run_daily", "--date", TRADING_DAY.isoformat())
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out + cluster.worker_logs()
    counts = collections.Counter(address for address, _, _ in cluster.handed())
    assert set(counts) == set(emails) and max(counts.values()) == 1
