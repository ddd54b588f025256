"""The daily job as the scheduler sees it: a real `manage.py run_daily` process against the fake Polygon server.

Killed while the market request hangs, and run while the provider fails, it sends nothing and exits non-zero
with one line (what the retrying state machine reads); run again after recovery, it sends every reader the
real issue once.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from markets import calendar
from newsletters.management.commands.seed_demo import DEMO_SUBSCRIBERS
from subscriptions.models import Subscriber
from tests.fakes.polygon_server import FakePolygon

ROOT = Path(__file__).resolve().parent.parent
PREVIOUS = "2026-11-19"
DAY = "2026-11-20"
READERS = {address for address, status, _ in DEMO_SUBSCRIBERS if status == Subscriber.Status.ACTIVE}
FOLLOWED = sorted({s for _, status, symbols in DEMO_SUBSCRIBERS if status == Subscriber.Status.ACTIVE for s in symbols})

pytestmark = pytest.mark.slow


@pytest.fixture
def job(tmp_path: Path):
    server = FakePolygon().start()
    server.add_random_walks(FOLLOWED, calendar.trading_days_ending(dt.date.fromisoformat(DAY), 430))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'walter.sqlite3'}",
        "WALTER_VAR_DIR": str(tmp_path / "var"),
        "EMAIL_BACKEND": "tests.fakes.email_backends.DurableLogBackend",
        "EMAIL_LOG_PATH": str(tmp_path / "accepted.log"),
        "EMAIL_LOG_DELAY": "0",
        "SES_MAX_SEND_RATE": "0",
        "MARKET_DATA_PROVIDER": "markets.providers.polygon.PolygonProvider",
        "POLYGON_API_KEY": "test-key",
        "POLYGON_BASE_URL": server.url,
        "POLYGON_REQUESTS_PER_MINUTE": "600000",
        "POLYGON_RETRIES": "1",
        "POLYGON_CONNECT_TIMEOUT": "1",
        "POLYGON_READ_TIMEOUT": "2",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def manage(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(*args: str) -> tuple[int, str, str]:
        process = manage(*args)
        out, err = process.communicate(timeout=180)
        return process.returncode, out, err

    assert run("migrate", "--verbosity", "0")[0] == 0
    assert run("seed_demo", "--quiet")[0] == 0
    yield server, manage, run, tmp_path / "accepted.log"
    server.stop()


def accepted(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def test_killed_or_failing_on_market_data_it_sends_nothing_and_a_run_after_recovery_sends_everyone(job):
    server, manage, run, log = job
    code, out, err = run("run_daily", "--date", PREVIOUS)
    assert code == 0, out + err
    assert sorted(accepted(log)) == sorted(READERS)

    # Killed while the whole-market request hangs.
    server.fault("/v2/aggs/grouped/", "hang", hang=60)
    before = server.count("/v2/aggs/grouped/")
    process = manage("run_daily", "--date", DAY)
    deadline = time.monotonic() + 60
    while server.count("/v2/aggs/grouped/") == before:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never asked for the market"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert len(accepted(log)) == len(READERS)

    # The provider answers 500: the process exits non-zero with one line, having sent nothing.
    server.heal()
    server.fault("/v2/aggs/grouped/", "500")
    code, out, err = run("run_daily", "--date", DAY)
    assert code != 0
    (line,) = err.strip().splitlines()[-1:]
    assert line.startswith(f"CommandError: run for {DAY} failed: nothing sent") and "HTTP 500" in line
    assert len(accepted(log)) == len(READERS)

    # Recovered: the next run sends each reader the real issue, once.
    server.heal()
    code, out, err = run("run_daily", "--date", DAY)
    assert code == 0, out + err
    got = Counter(accepted(log))
    assert set(got) == READERS and set(got.values()) == {2}
