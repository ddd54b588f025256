"""What the analysis stage keeps: each analysis the moment it is made (a killed run loses nothing paid for), every
reply in the audit (the unusable ones too), and an analysis the shared tables refused, offered again next run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from markets.shared_tables import get_shared_tables
from markets.shared_tables.database import DatabaseSharedTables
from newsletters.models import Analysis, AnalystCall, DailyRun
from subscriptions.selectors import followed_symbols
from tests.conftest import TRADING_DAY
from tests.fakes.openai_server import completion, garbage, good_analysis, not_json

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(openai_server):
    return openai_server


class DownSharedTables(DatabaseSharedTables):
    """Shared tables whose analyses table fails every write (throttled, unreachable, a bad deploy)."""

    def put_analysis(self, item):
        raise ConnectionError("ticker-analyses-dev: could not connect to the endpoint")


@pytest.mark.django_db
def test_a_failing_shared_table_never_stops_analysis_or_email_and_the_next_run_publishes(
    llm_settings, server, outbox, trading_day
):
    call_command("seed_demo", "--quiet")
    llm_settings.SHARED_TABLES_BACKEND = "tests.test_llm_stage_store.DownSharedTables"
    call_command("run_daily", "--date", trading_day.isoformat())
    tickers = len(followed_symbols())
    run = DailyRun.objects.get(date=trading_day)
    assert run.analyses_created == tickers and len(list(outbox.glob("*.eml"))) == 5
    assert run.status == DailyRun.Status.PARTIAL and "ConnectionError" in json.dumps(run.errors["analysis_publish"])
    assert Analysis.objects.filter(date=trading_day, published_at__isnull=True).count() == tickers

    llm_settings.SHARED_TABLES_BACKEND = "markets.shared_tables.database.DatabaseSharedTables"
    call_command("run_daily", "--date", trading_day.isoformat())
    assert server.count() == tickers  # the analyses were not paid for again, only published
    assert not Analysis.objects.filter(published_at__isnull=True).exists()
    symbol = sorted(followed_symbols())[0]
    item = get_shared_tables().get_analysis(symbol, trading_day.isoformat(), "fake-model", "analysis-v2")
    assert item and item["headline"] == Analysis.objects.get(ticker__symbol=symbol).headline
    assert "analysis_publish" not in DailyRun.objects.order_by("-id").first().errors


@pytest.mark.django_db
@pytest.mark.parametrize("bad", [not_json, garbage], ids=["prose", "not-a-completion"])
def test_an_unusable_reply_is_followed_up_once_and_both_replies_are_audited(llm_settings, server, trading_day, bad):
    call_command("seed_demo", "--quiet")
    first = sorted(followed_symbols())[0]

    def bad_for_first(request):
        if f"Facts about {first} " in request["messages"][1]["content"]:
            return bad()
        return completion(json.dumps(good_analysis(request["messages"])))

    server.script(*[bad_for_first] * 60)
    call_command("run_daily", "--date", trading_day.isoformat())
    fallback = Analysis.objects.get(ticker__symbol=first, date=trading_day)
    assert fallback.automated and "invalid reply after one repair" in fallback.fallback_reason
    calls = list(fallback.calls.all())
    assert [c.outcome for c in calls] == ["invalid", "invalid"]  # one follow-up, not more
    assert all(c.raw_reply for c in calls) and all(c.status == 200 for c in calls)
    sample = bad().body
    expected = sample if isinstance(sample, str) else sample["choices"][0]["message"]["content"]
    assert calls[0].raw_reply == expected  # the bad reply as it came, for whoever reads the audit
    assert AnalystCall.objects.filter(outcome="ok").count() == len(followed_symbols()) - 1


@pytest.mark.django_db
def test_a_slow_model_never_makes_the_newsletter_late(llm_settings, server, outbox, trading_day):
    server.slots, server.answer_delay = 1, 0.3  # 17 tickers would take 5 s; the stage has 1 s
    llm_settings.ANALYSIS_TIME_BUDGET = 1.0
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat())
    run = DailyRun.objects.get(date=trading_day)
    tickers = len(followed_symbols())
    assert run.durations["analysis"] < 1.0 + 0.5
    assert run.analyses_created >= 1 and run.analyses_created + run.analyses_fallback == tickers
    late = Analysis.objects.filter(date=trading_day).exclude(fallback_reason="")
    assert late.count() == run.analyses_fallback and all(a.automated for a in late)
    assert all("time budget ran out" in a.fallback_reason for a in late)
    assert len(list(outbox.glob("*.eml"))) == 5  # everyone got the issue, on time, automated where it had to be


@pytest.mark.django_db
def test_an_analysis_that_cannot_be_stored_never_stops_the_others(
    llm_settings, server, outbox, trading_day, monkeypatch
):
    from newsletters import analysis as stage

    call_command("seed_demo", "--quiet")
    first = sorted(followed_symbols())[0]
    real_store = stage.analysis_store

    def store(*, snapshot, **kwargs):
        if snapshot.symbol == first:
            raise ValueError("value too long for type character varying(200)")
        return real_store(snapshot=snapshot, **kwargs)

    monkeypatch.setattr(stage, "analysis_store", store)
    call_command("run_daily", "--date", trading_day.isoformat())
    run = DailyRun.objects.get(date=trading_day)
    assert "not stored: ValueError" in run.errors["analysis"][first]
    assert Analysis.objects.filter(date=trading_day).count() == len(followed_symbols()) - 1
    assert len(list(outbox.glob("*.eml"))) == 5


# -- a real process, killed -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_killed_mid_analysis_keeps_every_answer_it_paid_for(tmp_path: Path, server):
    # Four answers, then the model stops answering: the run is killed while it waits for the fifth.
    server.slots, server.hold_after = 1, 4
    database = tmp_path / "walter.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "WALTER_VAR_DIR": str(tmp_path / "var"),
        "ARCHIVE_DIR": str(tmp_path / "var" / "archive"),
        "NEWSLETTER_ANALYST": "newsletters.analysts.llm.LLMAnalyst",
        "LLM_BASE_URL": server.url,
        "LLM_API_KEY": "test",
        "LLM_MODEL": "fake-model",
        "LLM_REQUESTS_PER_MINUTE": "600000",
        "LLM_PARALLELISM": "4",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def manage(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(*args: str) -> str:
        process = manage(*args)
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, out
        return out

    day = TRADING_DAY.isoformat()
    run("migrate", "--verbosity", "0")
    run("seed_demo", "--quiet")
    run("run_daily", "--date", day, "--stage", "data")

    def stored() -> tuple[int, int, int]:
        with sqlite3.connect(database) as db:
            kept = db.execute("SELECT COUNT(*) FROM newsletters_analysis WHERE fallback_reason = ''").fetchone()[0]
            audited = db.execute("SELECT COUNT(*) FROM newsletters_analystcall WHERE outcome = 'ok'").fetchone()[0]
            tickers = db.execute(
                "SELECT COUNT(DISTINCT t.ticker_id) FROM subscriptions_subscriber_tickers t"
                " JOIN subscriptions_subscriber s ON s.id = t.subscriber_id WHERE s.status = 'active'"
            ).fetchone()[0]
        return kept, audited, tickers

    job = manage("run_daily", "--date", day, "--stage", "analysis")
    end = time.monotonic() + 90
    # Every answer is stored as it arrives, while the run goes on: the four paid for are in the database before
    # the stage ends (it is still waiting on the fifth).
    while stored()[0] < 4 and time.monotonic() < end and job.poll() is None:
        time.sleep(0.05)
    assert job.poll() is None, job.communicate()[0]
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL
    kept, audited, tickers = stored()
    assert server.answered == 4
    assert kept == 4 and audited == 4 and kept < tickers

    server.hold_after = None
    run("run_daily", "--date", day, "--stage", "analysis")
    # The rerun paid only for what the killed run had not stored (the request held at the kill was dropped
    # unanswered, as llama.cpp drops it when the client is gone).
    assert server.answered == tickers
    with sqlite3.connect(database) as db:
        answered = db.execute("SELECT COUNT(*) FROM newsletters_analysis WHERE fallback_reason = ''").fetchone()[0]
    assert answered == tickers
