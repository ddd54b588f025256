"""Only one run_daily at a time, and the demo provider's data is the same every time.

The lock must hold between processes (two cron starts, a manual run beside the scheduled one): those tests start a
second, real process holding the lock, on whichever database the suite runs (SQLite: a file lock; PostgreSQL: an
advisory lock), and kill it to show that a dead holder never blocks the next run.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from markets.providers.demo import DemoProvider
from newsletters.locks import LockHeld, exclusive

pytestmark = pytest.mark.django_db


def test_a_second_run_exits_at_once_with_a_clear_message(trading_day, outbox):
    call_command("seed_demo", "--quiet")
    with exclusive("run_daily"):
        with pytest.raises(CommandError, match="already running"):
            call_command("run_daily", "--date", trading_day.isoformat())
    assert not outbox.exists() or not list(outbox.glob("*.eml"))
    # Released: the next run goes ahead.
    call_command("run_daily", "--date", trading_day.isoformat())
    assert len(list(outbox.glob("*.eml"))) == 5


def test_the_lock_is_exclusive_and_released():
    with exclusive("demo-lock"):
        with pytest.raises(LockHeld), exclusive("demo-lock"):
            pass
    with exclusive("demo-lock"):
        pass


def test_demo_prices_are_deterministic_and_history_never_changes():
    provider = DemoProvider()
    early = provider.daily_bars("AAPL", dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    later = provider.daily_bars("AAPL", dt.date(2026, 1, 1), dt.date(2026, 11, 20))
    assert early == later[: len(early)]
    assert len(provider.daily_bars("AAPL", dt.date(2024, 11, 20), dt.date(2026, 11, 20))) >= 500
    market = provider.grouped_daily(dt.date(2026, 11, 20))
    assert market["AAPL"] == later[-1]
    assert provider.grouped_daily(dt.date(2026, 11, 21)) == {}
    assert all(b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close) for b in later)


# -- between processes ---------------------------------------------------------------------------------------

HOLDER = """
import sys

import django

django.setup()
from newsletters.locks import LockHeld, exclusive

try:
    with exclusive(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()  # until the test closes stdin (or kills this process)
except LockHeld:
    print("busy", flush=True)
"""


def _database_url() -> str:
    """The test database as a URL, so the other process uses the very same one."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        login = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
        return f"postgres://{login}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    # The SQLite test database lives in this process's memory; the file lock needs no database at all.
    return f"sqlite:///{Path(django_settings.VAR_DIR) / 'other-process.sqlite3'}"


@pytest.fixture
def other_process():
    started: list[subprocess.Popen] = []

    def start(name: str) -> tuple[subprocess.Popen, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "walter_site.settings",
            "WALTER_VAR_DIR": str(django_settings.VAR_DIR),
            "DATABASE_URL": _database_url(),
        }
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=Path(django_settings.BASE_DIR),
        )
        started.append(process)
        return process, process.stdout.readline().decode().strip()

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _acquired_within(name: str, seconds: float) -> bool:
    """Whether this process gets the lock within ``seconds`` (a killed holder's database session ends a moment
    after the process)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with exclusive(name):
                return True
        except LockHeld:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


@pytest.mark.slow
def test_a_lock_held_by_another_process_stops_this_one_and_dies_with_it(other_process, trading_day):
    holder, said = other_process("run_daily")
    assert said == "held"
    with pytest.raises(LockHeld), exclusive("run_daily"):
        pass
    with pytest.raises(CommandError, match="already running"):
        call_command("run_daily", "--date", trading_day.isoformat())
    holder.send_signal(signal.SIGKILL)  # no finally block, no unlock: only the OS or the database can release it
    holder.wait(timeout=30)
    assert _acquired_within("run_daily", 10)


@pytest.mark.slow
def test_a_lock_held_here_stops_another_process_until_released(other_process):
    with exclusive("run_daily"):
        busy, said = other_process("run_daily")
        assert said == "busy"
        busy.wait(timeout=30)
    released, said = other_process("run_daily")
    assert said == "held"
    released.stdin.close()
    assert released.wait(timeout=30) == 0
