"""bench/faults.py runs end to end on a tiny configuration and prints its table (the targets are its own business).

It needs PostgreSQL: it copies its database from a template for every scenario. On a PostgreSQL run of the suite
it uses the same server, with databases of its own named after the suite's (so colleagues sharing the server do
not collide); on SQLite it is skipped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def bench_database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("bench/faults.py needs PostgreSQL; this run uses " + db["ENGINE"].rsplit(".", 1)[-1])
    import psycopg

    user = quote(db.get("USER") or "postgres")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    server = f"{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    try:
        psycopg.connect(f"postgresql://{server}/postgres", connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    return f"postgres://{server}/{db['NAME']}_bench_faults"


def test_the_harness_prints_one_row_per_scenario():
    url = bench_database_url()
    scenarios = ["healthy", "sigkill-x3"]
    done = subprocess.run(
        [
            sys.executable,
            "bench/faults.py",
            "--database-url",
            url,
            "--subscribers",
            "40",
            "--scenarios",
            ",".join(scenarios),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| scenario |"))
    columns = [c.strip() for c in lines[header].strip("|").split("|")]
    assert columns[:7] == ["scenario", "tried", "sent once", "sent twice", "never sent", "ambiguous", "exit codes"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[header + 2 : header + 2 + len(scenarios)]]
    assert [row[0] for row in rows] == scenarios
    for row in rows:
        assert len(row) == len(columns)
        tried, once, twice, never, ambiguous = (int(row[i]) for i in range(1, 6))
        assert tried == 40
        # Every subscriber lands in exactly one bucket, whatever the code under test does.
        assert once + twice + never <= tried and 0 <= ambiguous <= tried
        assert row[6], "the exit codes of the runs are listed"
    # The killed run's exit code is the signal's.
    assert rows[1][6].startswith("-9")
    assert lines[-1].startswith("targets met in ")


def test_the_harness_refuses_a_database_that_is_not_its_own():
    done = subprocess.run(
        [sys.executable, "bench/faults.py", "--database-url", "postgres://postgres@127.0.0.1:5432/postgres"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "own database" in done.stderr


# -- the harness's email backend answers as SES does, so Walter's sender reacts to it as to SES -----------------


def _message(to: str = "reader0001@example.com"):
    from django.core.mail import EmailMessage

    return EmailMessage(subject="Walter", body="AAPL rose 1.00%", to=[to], headers={"X-Walter-Delivery": "token-1"})


@pytest.mark.parametrize(
    ("variable", "value", "kind"),
    [
        ("FAULTS_SES_THROTTLE", "1", "throttled"),
        ("FAULTS_SES_REJECT", "1", "rejected"),
        ("FAULTS_SES_PAUSE_AFTER", "1", "account"),
    ],
)
def test_the_journal_backend_refuses_with_the_errors_ses_gives(monkeypatch, tmp_path, variable, value, kind):
    from bench.faults_email import JournalBackend
    from newsletters.sending import refusal_of

    monkeypatch.setenv("FAULTS_JOURNAL", str(tmp_path / "journal.jsonl"))
    monkeypatch.setenv("FAULTS_EMAIL_DELAY", "0")
    monkeypatch.setattr(JournalBackend, "accepted", 1 if variable == "FAULTS_SES_PAUSE_AFTER" else 0)
    monkeypatch.setenv(variable, value)
    with pytest.raises(Exception) as refused:
        JournalBackend().send_messages([_message()])
    assert refusal_of(refused.value).kind == kind
    assert not (tmp_path / "journal.jsonl").exists(), "a refused message is not journaled as handed over"


def test_the_journal_backend_records_each_accepted_message(monkeypatch, tmp_path):
    import json

    from bench.faults_email import JournalBackend, rejected_recipient

    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv("FAULTS_JOURNAL", str(journal))
    monkeypatch.setenv("FAULTS_EMAIL_DELAY", "0")
    stale = _message("reader0002@example.com")
    stale.body = "MSFT: No new data for Friday, November 20."
    assert JournalBackend().send_messages([_message(), stale]) == 2
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(e["to"], e["token"], e["flags"]) for e in lines] == [
        ("reader0001@example.com", "token-1", []),
        ("reader0002@example.com", "token-1", ["stale"]),
    ]
    # Rejection follows the address, the same in every process and every attempt.
    chosen = {
        f"reader{i:04d}@example.com" for i in range(1000) if rejected_recipient(f"reader{i:04d}@example.com", 0.05)
    }
    assert 20 <= len(chosen) <= 80
    assert chosen == {a for a in chosen if rejected_recipient(a.upper(), 0.05)}
