"""The daily job as production runs it, a process of its own: with SES naming refused recipients in its answers,
nothing the job writes to its output (CloudWatch), its alert or its run records holds an address."""

from __future__ import annotations

import email
import os
import sqlite3
import subprocess
import sys
import uuid
from email import policy
from pathlib import Path

import pytest

from newsletters.management.commands.seed_demo import DEMO_SUBSCRIBERS
from tests.conftest import TRADING_DAY

ROOT = Path(__file__).resolve().parent.parent
ADDRESSES = [address for address, _, _ in DEMO_SUBSCRIBERS]
REFUSED = ["ada@example.com", "ken@example.com"]

pytestmark = pytest.mark.slow


def test_a_run_with_refusals_names_deliveries_by_token_never_by_address(tmp_path: Path):
    outbox = tmp_path / "var" / "outbox"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'walter.sqlite3'}",
        "WALTER_VAR_DIR": str(tmp_path / "var"),
        "ARCHIVE_DIR": str(tmp_path / "var" / "archive"),
        "EMAIL_FILE_PATH": str(outbox),
        "EMAIL_BACKEND": "tests.fakes.naming_backend.NamingRejectionBackend",
        "REJECT_ADDRESSES": ",".join(REFUSED),
        "ADMINS": "ops@walter.example",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "SES_MAX_SEND_RATE": "0",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def run(*args: str) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        return done.returncode, done.stdout + done.stderr

    for command in (("migrate", "--verbosity", "0"), ("seed_demo", "--quiet")):
        code, out = run(*command)
        assert code == 0, out
    code, output = run("run_daily", "--date", TRADING_DAY.isoformat())

    with sqlite3.connect(tmp_path / "walter.sqlite3") as db:
        status, errors, summary = db.execute("SELECT status, errors, summary FROM newsletters_dailyrun").fetchone()
        failed = db.execute("SELECT token, error FROM newsletters_delivery WHERE status = 'failed'").fetchall()
    assert status == "partial" and len(failed) == len(REFUSED), output
    assert all("failed the check" in error for _, error in failed)
    messages = [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in outbox.glob("*.eml")]
    (alert,) = [m for m in messages if m["To"] == "ops@walter.example"]
    alert_body = alert.get_body(("plain",)).get_content()
    tokens = [str(uuid.UUID(token)) for token, _ in failed]  # SQLite keeps a UUID as 32 hex digits
    assert all(token in alert_body for token in tokens), "the alert names the failed deliveries by token"
    assert '"level": "INFO"' in output or '"level":"INFO"' in output, "the job's log lines are in its output"

    for where, text in {
        "output": output,
        "alert": alert["Subject"] + alert_body,
        "run record": errors + summary,
        "delivery errors": " ".join(error for _, error in failed),
    }.items():
        assert [a for a in ADDRESSES if a in text] == [], f"an address in the {where}"
