"""Fault injection: does every confirmed subscriber get exactly one correct issue, whatever goes wrong?

    .venv/bin/python bench/faults.py [--database-url postgres://postgres@127.0.0.1:5432/faults] [--subscribers 300]
                                     [--scenarios a,b,...] [--seed N] [--date D] [--concurrency 8] [--rate 200]
                                     [--batch-size N] [--email-delay S] [--resend-ambiguous] [--strict] [--keep]

The harness owns one PostgreSQL database (the name in ``--database-url``) and its template ``<name>_template``; it
drops and recreates both and touches no other database. The template is migrated, seeded with N confirmed
subscribers following 1-4 of a handful of tickers, and primed with the market history up to the session before
the one reported on. Each scenario starts from a fresh copy of it and runs ``manage.py run_daily --date D`` as a
real subprocess against local fake servers (Polygon and an OpenAI-compatible LLM, in this process, with fault
modes from ``bench/faults_fakes.py``) and an email backend that journals every message handed over, fsync'd
(``bench/faults_email.py``). The fault is injected, then switched off, and a healthy rerun follows. The journal
(who was handed what, and when) is then compared with the database.

Columns:
- tried: confirmed subscribers when the scenario started;
- sent once / sent twice: subscribers whose issue the backend accepted once / more than once;
- never sent: subscribers with nothing accepted and no reason: not in flight, not rejected, not opted out;
- ambiguous: deliveries left "sending" (in flight when a run stopped), after the healthy rerun;
- exit codes: each run_daily in order, the healthy rerun last (-9, -15: killed by that signal);
- failed: deliveries SES rejected (recorded as failed, not retried);
- opted out: subscribers who unsubscribed or were erased during the run; after opt-out: messages handed over
  (their window marked "sending", where the opt-out is checked) after that change had committed, or an opt-out
  undone; one marked before the change and taken by the backend just after it was already in flight (a note);
- wrong: messages that showed a failure as data (a ticker's "no new data" or DEMO DATA in an issue of real data).

Targets (the verdict column): sent twice = 0 unless --resend-ambiguous; ambiguous per kill <= 2 x
SES_SEND_CONCURRENCY, 0 without a kill; never sent = 0 after the healthy rerun; after opt-out = 0; wrong = 0;
market data that cannot be had: the run exits non-zero and sends nothing; SIGTERM: exit non-zero within 20 s with
nothing left in flight; the healthy rerun exits 0 and never says "every subscriber already has this issue" while
some have nothing; no DailyRun row is left "running". ``--strict`` exits 1 when a scenario misses a target.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench.faults_email import rejected_recipient  # noqa: E402
from bench.faults_fakes import FaultyOpenAI, FaultyPolygon  # noqa: E402
from markets import calendar  # noqa: E402  (the calendar needs no configured Django)

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "JPM", "XOM"]
DEFAULT_DAY = dt.date(2026, 11, 20)
RUN_TIMEOUT = 300.0
STOP_LIMIT = 20.0  # seconds a SIGTERM'd run may take to exit


@dataclass(frozen=True)
class Scenario:
    name: str
    polygon: str = ""  # "", "down", "500", "garbage", "hang"
    llm: str = ""  # "", "slow", "500", "garbage"
    ses_throttle: float = 0.0
    ses_reject: float = 0.0
    ses_pause_at: float = 0.0  # SES pauses the account once this share of the subscribers has been sent to
    overlapping: bool = False  # two run_daily started at once (a cron start while the last run still runs)
    stop_signal: int = 0  # SIGTERM or SIGKILL at random points during sending
    stops: int = 0
    early: bool = False  # stop during the market data and analysis stages, not during sending
    opt_outs: float = 0.0  # share of subscribers who unsubscribe or are erased during sending

    @property
    def slug(self) -> str:
        return re.sub(r"[^\w.-]", "_", self.name)


SCENARIOS = [
    Scenario("healthy"),
    Scenario("polygon-down", polygon="down"),
    Scenario("polygon-500", polygon="500"),
    Scenario("polygon-garbage", polygon="garbage"),
    Scenario("polygon-hang", polygon="hang"),
    Scenario("llm-slow-one-slot", llm="slow"),
    Scenario("llm-500", llm="500"),
    Scenario("llm-garbage", llm="garbage"),
    Scenario("ses-throttle-5%", ses_throttle=0.05),
    Scenario("ses-reject-5%", ses_reject=0.05),
    Scenario("ses-paused-at-33%", ses_pause_at=1 / 3),
    Scenario("overlapping-runs", overlapping=True),
    Scenario("sigterm-x2", stop_signal=signal.SIGTERM, stops=2),
    Scenario("sigkill-x3", stop_signal=signal.SIGKILL, stops=3),
    Scenario("sigkill-before-sending-x2", stop_signal=signal.SIGKILL, stops=2, early=True),
    Scenario("opt-outs-10%", opt_outs=0.10),
]


@dataclass
class Result:
    scenario: Scenario
    tried: int = 0
    once: int = 0
    twice: int = 0
    never: int = 0
    ambiguous: int = 0
    codes: list[int | str] = field(default_factory=list)
    failed: int = 0
    opted_out: int = 0
    after_opt_out: int = 0
    wrong: int = 0
    unsent: int = 0  # subscribers with nothing handed over and no reason of their own (never sent, or in flight)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# -- the database ----------------------------------------------------------------------------------------------


class Database:
    """The harness's own database and its template; nothing else on the server is touched."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql", "pgsql"):
            raise SystemExit(f"--database-url must be a PostgreSQL URL, not {parts.scheme}://")
        self.name = parts.path.lstrip("/")
        if not self.name or self.name in ("postgres", "template0", "template1"):
            raise SystemExit(f"--database-url must name the harness's own database, not {self.name!r}")
        self.template = f"{self.name}_template"
        self.url = url
        self.server = urlunsplit(parts._replace(path="/postgres"))
        self.conninfo = urlunsplit(parts._replace(scheme="postgresql"))

    def _admin(self, *statements: sql.Composable) -> None:
        with psycopg.connect(urlunsplit(urlsplit(self.server)._replace(scheme="postgresql")), autocommit=True) as c:
            for statement in statements:
                c.execute(statement)

    def create_template(self) -> None:
        t = sql.Identifier(self.template)
        self._admin(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(t), sql.SQL("CREATE DATABASE {}").format(t)
        )

    def template_url(self) -> str:
        return urlunsplit(urlsplit(self.url)._replace(path=f"/{self.template}"))

    def reset_from_template(self) -> None:
        d, t = sql.Identifier(self.name), sql.Identifier(self.template)
        self._admin(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(d),
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(d, t),
        )

    def drop_all(self) -> None:
        for name in (self.name, self.template):
            self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def rows(self, query: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            return c.execute(query, params).fetchall()

    def in_flight(self, day: dt.date) -> int:
        return self.rows(
            "SELECT count(*) FROM newsletters_delivery d JOIN newsletters_issue i ON i.id = d.issue_id "
            "WHERE i.date = %s AND d.status = 'sending'",
            (day,),
        )[0][0]


# -- the journal of handed-over messages -------------------------------------------------------------------------


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._lines = 0

    def count(self) -> int:
        """Lines so far, read incrementally (polled every few milliseconds while a run is watched)."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk.rfind(b"\n") + 1
        self._lines += chunk[:complete].count(b"\n")
        self._offset += complete
        return self._lines

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


# -- the harness -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Harness:
    def __init__(self, args: argparse.Namespace, workdir: Path, db: Database) -> None:
        self.args = args
        self.workdir = workdir
        self.day: dt.date = args.date
        self.prime_day = calendar.previous_trading_day(self.day)
        self.db = db
        self.rng = random.Random(args.seed)
        self.polygon = FaultyPolygon()
        self.polygon.add_random_walks(SYMBOLS, calendar.trading_days_ending(self.day, 450), seed=args.seed)
        self.llm = FaultyOpenAI()
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True)
        self.emails = [f"reader{i:04d}@example.com" for i in range(args.subscribers)]
        self._log_number = 0
        self.last_log: Path = self.logs / "none.log"

    def __enter__(self) -> Harness:
        self.polygon.start()
        self.llm.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.polygon.stop()
        self.llm.stop()

    def env(self, *, database_url: str, journal: Path, scenario: Scenario | None = None) -> dict[str, str]:
        s = scenario or Scenario("healthy")
        polygon_url = f"http://127.0.0.1:{free_port()}" if s.polygon == "down" else self.polygon.url
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "WALTER_VAR_DIR": str(self.workdir / "var"),
            "ARCHIVE_DIR": str(self.workdir / "var" / "archive"),
            "LOG_LEVEL": "ERROR",
            "EMAIL_BACKEND": "bench.faults_email.JournalBackend",
            "FAULTS_JOURNAL": str(journal),
            "FAULTS_EMAIL_DELAY": str(self.args.email_delay),
            "FAULTS_SES_THROTTLE": str(s.ses_throttle),
            "FAULTS_SES_REJECT": str(s.ses_reject),
            "FAULTS_SES_PAUSE_AFTER": str(round(len(self.emails) * s.ses_pause_at)) if s.ses_pause_at else "0",
            "SES_MAX_SEND_RATE": str(self.args.rate),
            "SES_SEND_CONCURRENCY": str(self.args.concurrency),
            "MARKET_DATA_PROVIDER": "markets.providers.polygon.PolygonProvider",
            "POLYGON_API_KEY": "bench",
            "POLYGON_BASE_URL": polygon_url,
            "POLYGON_REQUESTS_PER_MINUTE": "600000",
            "POLYGON_RETRIES": "1",
            "POLYGON_CONNECT_TIMEOUT": "1",
            "POLYGON_READ_TIMEOUT": "3",
            "NEWSLETTER_ANALYST": "newsletters.analysts.llm.LLMAnalyst",
            "LLM_BASE_URL": self.llm.url,
            "LLM_API_KEY": "bench",
            "LLM_MODEL": "fake-model",
            "LLM_REQUESTS_PER_MINUTE": "600000",
            "LLM_TIMEOUT": "2",
            "LLM_MAX_RETRIES": "1",
            "LLM_RETRY_AFTER_DEFAULT": "0.5",
            "SHARED_TABLES_BACKEND": "markets.shared_tables.database.DatabaseSharedTables",
            "ARCHIVE_STORAGE_BACKEND": "django.core.files.storage.FileSystemStorage",
        }
        if self.args.batch_size:
            env["DELIVERY_BATCH_SIZE"] = str(self.args.batch_size)
        # Everything in one process on the machine's own resources: no broker, no shared cache, no alerts.
        for name in (
            "DJANGO_SETTINGS_MODULE",
            "CACHE_URL",
            "CELERY_BROKER_URL",
            "ADMINS",
            "ALERT_SNS_TOPIC_ARN",
            "METRICS",
            "WALTER_ENV",
            "AWS_SECRETS_MANAGER_SECRET_ID",
        ):
            env.pop(name, None)
        return env

    def start(self, env: dict[str, str], *args: str, script: str = "manage.py") -> tuple[subprocess.Popen, Path]:
        self._log_number += 1
        log = self.logs / f"{self._log_number:03d}-{(args or ('x',))[0]}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, script, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        return process, log

    def call(self, env: dict[str, str], *args: str, script: str = "manage.py") -> int:
        process, log = self.start(env, *args, script=script)
        self.last_log = log
        try:
            code = process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise SystemExit(f"{' '.join(args)} took longer than {RUN_TIMEOUT:.0f}s; see {log}") from None
        return code

    def prepare(self) -> None:
        """The template every scenario copies: migrated, seeded, with market history up to the previous session."""
        self.db.create_template()
        env = self.env(database_url=self.db.template_url(), journal=self.workdir / "prime.jsonl")
        steps = [
            ("manage.py", ("migrate", "--verbosity", "0")),
            (
                "bench/faults_django.py",
                (
                    "seed",
                    "--subscribers",
                    str(self.args.subscribers),
                    "--symbols",
                    ",".join(SYMBOLS),
                    "--seed",
                    str(self.args.seed),
                ),
            ),
            ("manage.py", ("run_daily", "--date", self.prime_day.isoformat(), "--stage", "data")),
        ]
        for script, args in steps:
            if self.call(env, *args, script=script) != 0:
                raise SystemExit(f"preparing the template failed at {script} {args[0]}; see {self.logs}")

    # -- one scenario -------------------------------------------------------------------------------------------

    def run_scenario(self, scenario: Scenario) -> Result:
        # Each scenario draws its own moments and opt-outs: the same seed gives the same ones in any selection.
        self.rng = random.Random(f"{self.args.seed}:{scenario.name}")
        self.db.reset_from_template()
        self.polygon.mode = scenario.polygon if scenario.polygon != "down" else ""
        self.llm.mode = scenario.llm
        journal_path = self.workdir / f"{scenario.slug}.jsonl"
        journal = Journal(journal_path)
        env = self.env(database_url=self.db.url, journal=journal_path, scenario=scenario)
        result = Result(scenario, tried=len(self.emails))
        run_args = ("run_daily", "--date", self.day.isoformat())
        opt_outs: dict[str, tuple[float, str]] = {}
        try:
            if scenario.stops:
                self._stopped_runs(scenario, env, journal, run_args, result)
            elif scenario.opt_outs:
                opt_outs = self._run_with_opt_outs(scenario, env, journal, run_args, result)
            elif scenario.overlapping:
                both = [self.start(env, *run_args)[0] for _ in range(2)]
                result.codes.extend(self._wait(process) for process in both)
            else:
                result.codes.append(self.call(env, *run_args))
        finally:
            self.polygon.mode = ""
            self.llm.mode = ""
        handed_during_fault = journal.count()
        fallback = self.db.rows(
            "SELECT coalesce(max(analyses_fallback), 0) FROM newsletters_dailyrun WHERE date = %s", (self.day,)
        )[0][0]

        # With --resend-ambiguous the rerun may send these a second time, and only these.
        may_repeat = self.db.in_flight(self.day) if self.args.resend_ambiguous else 0
        # Outages end; a recipient SES rejects stays rejected.
        healthy = self.env(
            database_url=self.db.url, journal=journal_path, scenario=Scenario("rerun", ses_reject=scenario.ses_reject)
        )
        rerun = (*run_args, "--resend-ambiguous") if self.args.resend_ambiguous else run_args
        result.codes.append(self.call(healthy, *rerun))
        rerun_said = self.last_log.read_text()

        self._count(scenario, journal, opt_outs, result, may_repeat)
        if "every subscriber already has this issue" in rerun_said and result.unsent:
            result.problems.append("rerun says everyone has the issue")
        running = self.db.rows("SELECT count(*) FROM newsletters_dailyrun WHERE status = 'running'")[0][0]
        if running:
            result.notes.append(f"{running} DailyRun rows left running")
            result.problems.append("run left 'running'")
        if scenario.polygon:
            result.notes.append(f"{handed_during_fault} handed during the outage")
            if handed_during_fault:
                result.problems.append("sent during outage")
            if result.codes[0] == 0:
                result.problems.append("outage exit 0")
        if scenario.llm:
            result.notes.append(f"{fallback} tickers fell back")
        if scenario.ses_pause_at:
            result.notes.append(f"{handed_during_fault} handed before the pause")
            if result.codes[0] == 0:
                result.problems.append("account stop exit 0")
        if result.codes[-1] != 0:
            result.problems.append("rerun exit != 0")
        return result

    def _stopped_runs(
        self, scenario: Scenario, env: dict[str, str], journal: Journal, run_args: tuple, result: Result
    ) -> None:
        """Stop ``scenario.stops`` runs at a random moment during sending (or, ``early``, during the market data and
        analysis stages); each stop is followed by a new run."""
        per_stop: list[int] = []
        stop_seconds: list[str] = []
        skipped = 0
        for _ in range(scenario.stops):
            before = journal.count()
            handed = len({e["to"] for e in journal.entries()})
            remaining = len(self.emails) - handed - self.db.in_flight(self.day) if before else len(self.emails)
            in_flight_before = self.db.in_flight(self.day) if before else 0
            process, _ = self.start(env, *run_args)
            if remaining < 4:  # nothing left to interrupt: the run goes to its end
                result.codes.append(self._wait(process))
                skipped += 1
                continue
            if scenario.early:
                # Once the run has recorded itself (Django is up), a random moment of its data and analysis stages.
                runs = self._runs_recorded()
                deadline = time.monotonic() + RUN_TIMEOUT
                while self._runs_recorded() == runs and process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                deadline = time.monotonic() + self.rng.uniform(0.0, 0.4)
                while journal.count() == before and process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.002)
            else:
                target = before + self.rng.randint(1, max(1, remaining * 3 // 4))
                deadline = time.monotonic() + RUN_TIMEOUT
                while journal.count() < target and process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.002)
            handed_at_stop = journal.count() - before
            if process.poll() is not None:
                result.codes.append(process.returncode)
                result.notes.append("a run ended before its stop")
                continue
            process.send_signal(scenario.stop_signal)
            signalled = time.monotonic()
            try:
                code: int | str = process.wait(timeout=STOP_LIMIT + 10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = "hung"
            took = time.monotonic() - signalled
            result.codes.append(code)
            stop_seconds.append(f"{took:.1f}")
            left = self.db.in_flight(self.day)
            per_stop.append(left - in_flight_before)
            if scenario.early and handed_at_stop:
                result.notes.append(f"an early stop came after {handed_at_stop} messages")
            if scenario.stop_signal == signal.SIGTERM:
                if code == 0 or code == "hung" or took > STOP_LIMIT:
                    result.problems.append(f"SIGTERM exit {code} after {took:.1f}s")
                if left:
                    result.problems.append("in flight after SIGTERM")
        what = "SIGTERM" if scenario.stop_signal == signal.SIGTERM else "SIGKILL"
        result.notes.append(f"{what} to exit: {','.join(stop_seconds) or '-'} s; left in flight per stop: {per_stop}")
        if skipped:
            result.notes.append(f"{skipped} later runs had nothing left to interrupt")
        if scenario.stop_signal == signal.SIGKILL and per_stop and max(per_stop) > 2 * self.args.concurrency:
            result.problems.append(f"ambiguous/kill {max(per_stop)} > {2 * self.args.concurrency}")

    def _wait(self, process: subprocess.Popen) -> int | str:
        try:
            return process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return "timeout"

    def _runs_recorded(self) -> int:
        return self.db.rows("SELECT count(*) FROM newsletters_dailyrun WHERE date = %s", (self.day,))[0][0]

    def _run_with_opt_outs(
        self, scenario: Scenario, env: dict[str, str], journal: Journal, run_args: tuple, result: Result
    ) -> dict[str, tuple[float, str]]:
        """Run while another process unsubscribes or erases random subscribers; returns when each change committed."""
        chosen = self.rng.sample(self.emails, max(1, round(len(self.emails) * scenario.opt_outs)))
        plan = self.workdir / f"{scenario.slug}.plan"
        plan.write_text("".join(f"{self.rng.choice(['unsubscribe', 'erase'])} {e}\n" for e in chosen))
        # Spread over the sending window (its length at the paced rate), starting with the first message handed.
        interval = self.args.opt_out_interval
        if interval is None:
            interval = len(self.emails) / self.args.rate / (len(chosen) + 1)
        wisher, wishes_log = self.start(
            env,
            *("wishes", "--plan", str(plan), "--interval", f"{interval:.4f}", "--after", str(journal.path)),
            script="bench/faults_django.py",
        )
        process, _ = self.start(env, *run_args)
        result.codes.append(self._wait(process))
        if self._wait(wisher) != 0:
            raise SystemExit(f"the opt-out process failed; see {wishes_log}")
        done: dict[str, tuple[float, str]] = {}
        for line in wishes_log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in ("unsubscribe", "erase"):
                done[parts[2]] = (float(parts[0]), parts[1])
        handed_at_end = journal.count()
        result.notes.append(f"{len(done)} opt-outs; {handed_at_end} handed by the end of the run")
        return done

    def _count(
        self,
        scenario: Scenario,
        journal: Journal,
        opt_outs: dict[str, tuple[float, str]],
        result: Result,
        may_repeat: int,
    ) -> None:
        entries = journal.entries()
        per_recipient = collections.Counter(e["to"] for e in entries)
        rows = self.db.rows(
            "SELECT s.email, d.status, d.retryable FROM newsletters_delivery d "
            "JOIN newsletters_issue i ON i.id = d.issue_id "
            "LEFT JOIN subscriptions_subscriber s ON s.id = d.subscriber_id WHERE i.date = %s",
            (self.day,),
        )
        status = {email: (st, retryable) for email, st, retryable in rows if email}
        result.ambiguous = sum(1 for _, st, _ in rows if st == "sending")
        subscribers = dict(self.db.rows("SELECT email, status FROM subscriptions_subscriber"))
        rejected_expected = {e for e in self.emails if rejected_recipient(e, scenario.ses_reject)}
        for email in self.emails:
            n = per_recipient.get(email, 0)
            st, retryable = status.get(email, ("", True))
            if n == 1:
                result.once += 1
            elif n > 1:
                result.twice += 1
            elif st == "failed" and not retryable:
                result.failed += 1
            elif email in opt_outs:
                pass  # counted under opted out
            elif st == "sending":
                result.unsent += 1  # counted under ambiguous
            else:
                result.never += 1
                result.unsent += 1
        result.opted_out = len(opt_outs)
        # A message is handed over when the statement marking its window "sending" commits (that statement is
        # where an opt-out is checked); one the backend took after the opt-out but marked before it was in flight.
        marked = {
            token: float(at)
            for token, at in self.db.rows(
                "SELECT d.token::text, extract(epoch from d.sending_at) FROM newsletters_delivery d "
                "JOIN newsletters_issue i ON i.id = d.issue_id WHERE i.date = %s AND d.sending_at IS NOT NULL",
                (self.day,),
            )
        }
        in_flight_at_opt_out = 0
        for email, (committed, action) in opt_outs.items():
            after = [e for e in entries if e["to"] == email and e["t"] > committed]
            late = [e for e in after if marked.get(e["token"], float("inf")) > committed]
            in_flight_at_opt_out += len(after) - len(late)
            undone = (
                subscribers.get(email) not in (None, "unsubscribed")
                if action == "unsubscribe"
                else email in subscribers
            )
            result.after_opt_out += len(late) + int(undone)
        if in_flight_at_opt_out:
            result.notes.append(f"{in_flight_at_opt_out} already in flight when their opt-out committed")
        result.wrong = sum(1 for e in entries if {"stale", "demo"} & set(e["flags"]))
        if scenario.ses_reject:
            result.notes.append(f"{len(rejected_expected)} recipients rejected by SES")
            if result.failed != len(rejected_expected):
                result.problems.append("rejections not recorded as failed")
        if result.twice > may_repeat:
            result.problems.append("sent twice")
        if result.never:
            result.problems.append("never sent")
        if result.after_opt_out:
            result.problems.append("sent after opt-out")
        if result.wrong:
            result.problems.append("failure shown as data")
        if result.ambiguous and scenario.stop_signal != signal.SIGKILL:
            result.problems.append("left in flight")


# -- the table -----------------------------------------------------------------------------------------------------

HEADERS = [
    "scenario",
    "tried",
    "sent once",
    "sent twice",
    "never sent",
    "ambiguous",
    "exit codes",
    "failed",
    "opted out",
    "after opt-out",
    "wrong",
    "verdict",
    "notes",
]


def table(results: list[Result]) -> str:
    rows = [
        [
            r.scenario.name,
            r.tried,
            r.once,
            r.twice,
            r.never,
            r.ambiguous,
            "→".join(str(c) for c in r.codes),
            r.failed,
            r.opted_out,
            r.after_opt_out,
            r.wrong,
            "ok" if not r.problems else "FAIL: " + "; ".join(dict.fromkeys(r.problems)),
            "; ".join(r.notes),
        ]
        for r in results
    ]
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/faults")
    parser.add_argument("--subscribers", type=int, default=300)
    parser.add_argument(
        "--scenarios",
        default="",
        help="Comma-separated names (default: all): " + ", ".join(s.name for s in SCENARIOS).replace("%", "%%"),
    )
    parser.add_argument("--seed", type=int, default=7, help="Seeds the subscribers' tickers, the prices, kill moments.")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=DEFAULT_DAY, help="The session reported on.")
    parser.add_argument("--concurrency", type=int, default=8, help="SES_SEND_CONCURRENCY of the runs.")
    parser.add_argument("--rate", type=float, default=200.0, help="SES_MAX_SEND_RATE of the runs (messages/s).")
    parser.add_argument("--batch-size", type=int, help="DELIVERY_BATCH_SIZE of the runs (default: Walter's own).")
    parser.add_argument("--email-delay", type=float, default=0.004, help="Seconds the backend takes per message.")
    parser.add_argument(
        "--opt-out-interval", type=float, help="Seconds between two opt-outs (default: spread over the sending)."
    )
    parser.add_argument("--resend-ambiguous", action="store_true", help="The healthy rerun resends what was in flight.")
    parser.add_argument("--strict", action="store_true", help="Exit 1 when a scenario misses a target.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder, the logs and the databases.")
    args = parser.parse_args(argv)
    known = {s.name: s for s in SCENARIOS}
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()] or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.subscribers < 1:
        parser.error("--subscribers must be at least 1")
    args.chosen = [known[n] for n in names]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    db = Database(args.database_url)
    workdir = Path(tempfile.mkdtemp(prefix="walter-faults-"))
    started = time.monotonic()
    results: list[Result] = []
    harness = Harness(args, workdir, db)
    finished = False
    try:
        with harness:
            harness.prepare()
            for scenario in args.chosen:
                scenario_started = time.monotonic()
                results.append(harness.run_scenario(scenario))
                print(f"{scenario.name}: {time.monotonic() - scenario_started:.1f}s", file=sys.stderr, flush=True)
        finished = True
    finally:
        # A harness that broke down keeps its logs and databases for a look.
        if args.keep or not finished:
            print(f"work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            with contextlib.suppress(psycopg.Error):
                harness.db.drop_all()
    print(
        f"{args.subscribers} subscribers, session {args.date.isoformat()}, SES_MAX_SEND_RATE={args.rate:g}, "
        f"SES_SEND_CONCURRENCY={args.concurrency}, seed {args.seed}, "
        f"{'--resend-ambiguous' if args.resend_ambiguous else 'no --resend-ambiguous'}, "
        f"{time.monotonic() - started:.0f}s"
    )
    print(table(results))
    failed = [r.scenario.name for r in results if r.problems]
    print(
        f"targets met in {len(results) - len(failed)} of {len(results)} scenarios"
        + (f"; failing: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
