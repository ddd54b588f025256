"""Stops, kills and changes of mind, for real: run_daily as a subprocess, SIGTERMed, SIGKILLed, or racing a second
process that unsubscribes and erases while it sends.

The job runs against its own SQLite database, or its own PostgreSQL database when ``CRASH_TEST_POSTGRES`` names a
server (``postgres://postgres@127.0.0.1:5432``); its email backend appends every accepted message to a log with an
fsync, so the log is the truth about who got what, whatever the moment of the kill.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import TRADING_DAY

ROOT = Path(__file__).resolve().parent.parent
READERS = [f"reader{i:02d}@example.com" for i in range(30)]
OPS = "ops@example.com"
CONCURRENCY = 2
# Bigger than two windows: claiming a whole batch as "maybe sent" (the old way) would show in the counts.
BATCH = 12
DAY = TRADING_DAY.isoformat()

pytestmark = pytest.mark.slow


class Job:
    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp = tmp_path
        self.log = tmp_path / "accepted.log"
        self.database_url = database_url
        self.archive = tmp_path / "var" / "archive"
        self.release = tmp_path / "release"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "WALTER_VAR_DIR": str(tmp_path / "var"),
            "ARCHIVE_DIR": str(self.archive),
            "EMAIL_BACKEND": "tests.fakes.delivery_backends.HoldingLogBackend",
            "EMAIL_LOG_PATH": str(self.log),
            "EMAIL_LOG_DELAY": "0.05",
            "EMAIL_LOG_HOLD_FILE": str(self.release),
            "DELIVERY_BATCH_SIZE": str(BATCH),
            "SES_SEND_CONCURRENCY": str(CONCURRENCY),
            "SES_MAX_SEND_RATE": "0",
            "ADMINS": OPS,
            "LOG_LEVEL": "WARNING",
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, *args: str) -> tuple[int, str]:
        process = self.start(*args)
        out, _ = process.communicate(timeout=120)
        return process.returncode, out

    def shell(self, script: str) -> None:
        code, out = self.run("shell", "-c", script)
        assert code == 0, out

    def accepted(self) -> list[str]:
        """Readers who were handed a message (the alerts to OPS are not issues)."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line.split()[0] for line in lines if line.split()[0] != OPS]

    def alerts(self) -> int:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return sum(1 for line in lines if line.split()[0] == OPS)

    def query(self, sql: str, *params) -> list[tuple]:
        if self.database_url.startswith("sqlite:///"):
            with sqlite3.connect(self.database_url.removeprefix("sqlite:///")) as db:
                return db.execute(sql, params).fetchall()
        import psycopg

        with psycopg.connect(self.database_url) as db:
            rows = db.execute(sql.replace("?", "%s"), params).fetchall()
        # As SQLite returns them: text, not UUID and JSON objects.
        return [
            tuple(json.dumps(v) if isinstance(v, list) else str(v) if isinstance(v, uuid.UUID) else v for v in r)
            for r in rows
        ]

    def statuses(self) -> collections.Counter:
        return collections.Counter(s for (s,) in self.query("SELECT status FROM newsletters_delivery"))

    def in_flight(self) -> dict[str, str]:
        """Token → address of the deliveries left "sending": the ambiguous ones."""
        rows = self.query(
            "SELECT d.token, s.email FROM newsletters_delivery d "
            "LEFT JOIN subscriptions_subscriber s ON s.id = d.subscriber_id WHERE d.status = 'sending'"
        )
        return {_uuid(token): email for token, email in rows}

    def runs(self) -> list[str]:
        return [s for (s,) in self.query("SELECT status FROM newsletters_dailyrun ORDER BY id")]

    def wait_for(self, process: subprocess.Popen, condition, what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert process.poll() is None, f"the run ended before {what}: {process.stdout.read()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.005)


def _uuid(token: str) -> str:
    # SQLite stores Django's UUIDField as 32 hex digits; messages and listings use the dashed form.
    return f"{token[:8]}-{token[8:12]}-{token[12:16]}-{token[16:20]}-{token[20:]}" if "-" not in token else token


@pytest.fixture
def database_url(tmp_path: Path):
    server = os.environ.get("CRASH_TEST_POSTGRES", "")
    if not server:
        yield f"sqlite:///{tmp_path / 'walter.sqlite3'}"
        return
    import psycopg

    name = f"delivery_crash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def job(tmp_path: Path, database_url: str) -> Job:
    job = Job(tmp_path, database_url)
    code, out = job.run("migrate", "--verbosity", "0")
    assert code == 0, out
    job.shell(
        "from subscriptions.services import subscriber_create\n"
        f"for address in {READERS!r}:\n"
        "    subscriber_create(email=address, symbols=['AAPL', 'MSFT'], status='active')\n"
    )
    return job


def test_sigterm_mid_send_finishes_what_is_in_flight_records_it_and_exits_non_zero(job):
    process = job.start("run_daily", "--date", DAY)
    job.wait_for(process, lambda: len(job.accepted()) >= 5, "it sent anything")
    process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    out, _ = process.communicate(timeout=60)
    seconds = time.monotonic() - stopped_at

    assert process.returncode == 1, f"exit {process.returncode}, expected a CommandError's 1: {out}"
    assert seconds < 20
    assert "interrupted" in out and "received SIGTERM" in out
    assert job.runs() == ["interrupted"]
    statuses = job.statuses()
    assert statuses["sending"] == 0 and statuses["claimed"] == 0, f"nothing left in flight or claimed: {statuses}"
    got = job.accepted()
    assert statuses["sent"] == len(got) == len(set(got)), "every accepted message is recorded as sent"
    assert 0 < len(got) < len(READERS), "stopped mid-send"
    assert job.alerts() == 1, "the interrupted run alerts"

    code, out = job.run("run_daily", "--date", DAY)
    assert code == 0, out
    got = job.accepted()
    assert sorted(got) == sorted(READERS), "the rerun sends the rest, nobody twice"


@pytest.mark.parametrize("connections", [2, 1])
def test_sigterm_while_the_backend_hangs_exits_after_the_grace_period_with_that_message_in_flight(job, connections):
    """With one connection, the next window waits behind the hung send: never handed over, it is not in doubt."""
    job.env.update(
        {"EMAIL_LOG_HOLD": READERS[0], "DELIVERY_STOP_GRACE": "2", "SES_SEND_CONCURRENCY": str(connections)}
    )  # reader00's send never returns
    process = job.start("run_daily", "--date", DAY)
    job.wait_for(process, Path(f"{job.release}.held").exists, "reader00's message reached the backend")
    # Long enough for the run to compose the next windows and wait for reader00's: the stop must end that wait.
    job.wait_for(process, lambda: len(job.accepted()) >= 3 * (connections - 1), "the next window was sent")
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    out, _ = process.communicate(timeout=60)
    seconds = time.monotonic() - stopped_at

    assert process.returncode == 1, out
    assert seconds < 20, f"exited {seconds:.1f}s after SIGTERM"
    assert "interrupted" in out and "1 still in flight (ambiguous)" in out
    assert job.runs() == ["interrupted"]
    assert list(job.in_flight().values()) == [READERS[0]], "only the hung message is in doubt"
    assert job.statuses()["claimed"] == 0
    assert job.alerts() == 1


def test_sigkill_at_random_moments_leaves_at_most_two_windows_ambiguous_and_the_rerun_sends_the_rest(job):
    rng = random.Random(os.environ.get("KILL_SEED", time.time_ns()))
    ambiguous: dict[str, str] = {}
    for _ in range(4):
        before = len(job.accepted())
        process = job.start("run_daily", "--date", DAY)
        kill_after = rng.randint(1, 6)
        job.wait_for(process, lambda: len(job.accepted()) >= before + kill_after, "it could be killed")
        time.sleep(rng.uniform(0, 0.08))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        now = job.in_flight()
        new = len(now) - len(ambiguous)
        assert new <= 2 * CONCURRENCY, f"{new} deliveries left ambiguous by one kill (windows of {CONCURRENCY})"
        ambiguous = now
        got = job.accepted()
        assert len(got) == len(set(got)), f"someone got the issue twice: {collections.Counter(got).most_common(3)}"
        if len(got) + len(ambiguous) >= len(READERS) - 6:
            break

    # A plain rerun finishes the job, sends nothing that may already have been sent, and says so.
    code, out = job.run("run_daily", "--date", DAY)
    assert code == 0, out
    got = job.accepted()
    assert len(got) == len(set(got)), "a rerun sent someone the issue a second time"
    assert set(got) | set(ambiguous.values()) == set(READERS), "every reader got the issue or is listed as in flight"
    assert job.in_flight() == ambiguous
    if ambiguous:
        assert f"{len(ambiguous)} were in flight and were not sent again (--resend-ambiguous)" in out
        assert "every subscriber already has this issue" not in out
        for token, address in ambiguous.items():
            assert token in out and address not in out, "listed by the opaque token, never the address"
    runs = job.runs()
    assert runs[-1] == ("partial" if ambiguous else "succeeded")
    assert runs.count("interrupted") == len(runs) - 1, "each killed run is marked interrupted by the next one"
    assert job.alerts() == runs.count("interrupted") + (1 if ambiguous else 0), "each killed run alerted, once"

    # Asked to, the next run sends the ambiguous ones; only they can arrive twice.
    code, out = job.run("run_daily", "--date", DAY, "--resend-ambiguous")
    assert code == 0, out
    got = job.accepted()
    assert set(got) == set(READERS)
    twice = {address for address, n in collections.Counter(got).items() if n > 1}
    assert twice <= set(ambiguous.values())
    assert job.in_flight() == {}


def test_wishes_made_while_the_run_sends_win_and_an_erase_is_never_undone(job):
    """A second process unsubscribes, pauses, suppresses and erases readers while the run is sending, one of
    them (reader05) while their message is with the email backend."""
    job.env.update({"EMAIL_LOG_HOLD": READERS[5], "DELIVERY_BATCH_SIZE": "100"})
    process = job.start("run_daily", "--date", DAY)
    held = Path(f"{job.release}.held")
    job.wait_for(process, held.exists, "reader05's message reached the backend")
    tokens = {
        email: _uuid(token)
        for token, email in job.query(
            "SELECT d.token, s.email FROM newsletters_delivery d JOIN subscriptions_subscriber s "
            "ON s.id = d.subscriber_id"
        )
    }
    changes = {20: "unsubscribed", 21: "paused", 22: "bounced", 23: "erase", 5: "erase"}
    job.shell(
        "from subscriptions.models import Subscriber\n"
        "from subscriptions.services import subscriber_erase, subscriber_set_status, subscriber_suppress\n"
        "get = lambda a: Subscriber.objects.get(email=a)\n"
        f"subscriber_set_status(subscriber=get({READERS[20]!r}), status='unsubscribed')\n"
        f"subscriber_set_status(subscriber=get({READERS[21]!r}), status='paused')\n"
        f"subscriber_suppress(subscriber=get({READERS[22]!r}), status='bounced')\n"
        f"subscriber_erase(subscriber=get({READERS[23]!r}))\n"
        f"subscriber_erase(subscriber=get({READERS[5]!r}))\n"
    )
    job.release.touch()
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out

    got = job.accepted()
    assert READERS[5] in got, "reader05's message was already with the backend: it went"
    for i in (20, 21, 22, 23):
        assert READERS[i] not in got, f"{READERS[i]} ({changes[i]} during the run) was sent the issue"
    assert sorted(got) == sorted(set(READERS) - {READERS[i] for i in (20, 21, 22, 23)})

    for i in (5, 23):
        (row,) = job.query(
            "SELECT subscriber_id, email, symbols, archive_key, status FROM newsletters_delivery WHERE token = ?",
            tokens[READERS[i]] if "postgres" in job.database_url else tokens[READERS[i]].replace("-", ""),
        )
        assert row[:4] == (None, "", "[]", ""), f"the erase of {READERS[i]} was undone: {row}"
        leftovers = list(job.archive.rglob(f"{tokens[READERS[i]]}*"))
        assert leftovers == [], f"archived copies of an erased subscriber remain: {leftovers}"
    assert row[4] == "skipped", "reader23 was erased before hand-over: skipped, not sent"
    for i in (20, 21, 22):
        leftovers = list(job.archive.rglob(f"{tokens[READERS[i]]}*"))
        assert leftovers == [], f"an archived copy of a message never sent to {READERS[i]}: {leftovers}"
    assert job.statuses()["sending"] == 0
