"""Exactly once per subscriber per day, for real: run_daily killed with SIGKILL mid-send, then run again.

The job runs as a subprocess against its own SQLite database; its email backend appends every accepted message to
a log with an fsync, so the log is the truth about who got what, whatever the moment of the kill.
"""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TRADING_DAY

ROOT = Path(__file__).resolve().parent.parent
READERS = [f"reader{i:02d}@example.com" for i in range(30)]
BATCH = 6
# Messages accepted before each kill. Two connections accept messages in pairs, and the poll may see a pair or two
# late: these counts stay inside a batch even then, so every kill lands with a batch in flight (a kill between two
# batches would leave nothing ambiguous, which is right, but would not test the hard case).
KILL_AFTER = [2, 8, 8]

pytestmark = pytest.mark.slow


@pytest.fixture
def job(tmp_path: Path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'walter.sqlite3'}",
        "WALTER_VAR_DIR": str(tmp_path / "var"),
        "ARCHIVE_DIR": str(tmp_path / "var" / "archive"),
        "EMAIL_BACKEND": "tests.fakes.email_backends.DurableLogBackend",
        "EMAIL_LOG_PATH": str(tmp_path / "accepted.log"),
        "EMAIL_LOG_DELAY": "0.05",
        "DELIVERY_BATCH_SIZE": str(BATCH),
        "SES_SEND_CONCURRENCY": "2",
        "SES_MAX_SEND_RATE": "0",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def manage(*args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,
        )

    def run(*args: str) -> tuple[int, str]:
        process = manage(*args)
        out, _ = process.communicate(timeout=120)
        return process.returncode, out

    assert run("migrate", "--verbosity", "0")[0] == 0
    script = (
        "from subscriptions.services import subscriber_create\n"
        f"for address in {READERS!r}:\n"
        "    subscriber_create(email=address, symbols=['AAPL', 'MSFT'], status='active')\n"
    )
    code, out = run("shell", "-c", script)
    assert code == 0, out
    return manage, run, tmp_path / "accepted.log", tmp_path / "walter.sqlite3"


def accepted(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def in_flight(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT s.email FROM newsletters_delivery d JOIN subscriptions_subscriber s ON s.id = d.subscriber_id "
            "WHERE d.status = 'sending'"
        ).fetchall()
    return {email for (email,) in rows}


def test_killed_mid_send_then_rerun_sends_nobody_twice(job):
    manage, run, log, database = job
    for kill_after in KILL_AFTER:
        before = len(accepted(log))
        process = manage("run_daily", "--date", TRADING_DAY.isoformat())
        deadline = time.monotonic() + 60
        while len(accepted(log)) < before + kill_after:
            assert process.poll() is None, f"the run ended before it could be killed: {process.stdout.read()}"
            assert time.monotonic() < deadline, "the run sent nothing"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        got = accepted(log)
        assert len(got) == len(set(got)), f"someone got the issue twice: {collections.Counter(got).most_common(3)}"

    # A plain rerun finishes the job and sends nothing that may already have been sent.
    code, out = run("run_daily", "--date", TRADING_DAY.isoformat())
    assert code == 0, out
    got = accepted(log)
    assert len(got) == len(set(got)), "a rerun sent someone the issue a second time"
    ambiguous = in_flight(database)
    assert set(got) | ambiguous == set(READERS), "every reader got the issue or is reported as in flight"
    assert ambiguous, "killed mid-batch, some deliveries must have been in flight"
    assert len(ambiguous) <= len(KILL_AFTER) * BATCH, "at most one batch per kill is ambiguous"
    assert f"{len(ambiguous)} emails were in flight" in out, "the rerun counts what it did not resend"
    assert not any(address in out for address in ambiguous), "... naming no address (tokens, in the run record)"
    assert "--resend-ambiguous" in out

    # Asked to, the next run sends the ambiguous ones; only they can arrive twice.
    code, out = run("run_daily", "--date", TRADING_DAY.isoformat(), "--resend-ambiguous")
    assert code == 0, out
    got = accepted(log)
    assert set(got) == set(READERS)
    twice = {address for address, n in collections.Counter(got).items() if n > 1}
    assert twice <= ambiguous
    assert in_flight(database) == set()
