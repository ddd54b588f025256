"""Run logging with the run id, one summary line per run, EMF metrics, and alerts by email and SNS."""

from __future__ import annotations

import io
import json
import logging

import boto3
import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from moto import mock_aws

from newsletters import observability
from newsletters.models import DailyRun
from walter_site.logging import LogContextFilter, PlainFormatter, log_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def walter_log(settings):
    """The walter logger's lines as the JSON formatter of settings.LOGGING writes them."""
    from pythonjsonlogger.json import JsonFormatter

    options = {k: v for k, v in settings.LOGGING["formatters"]["json"].items() if k != "()"}
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(JsonFormatter(**options))
    walter = logging.getLogger("walter")
    old_level = walter.level
    walter.addHandler(handler)
    walter.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    walter.removeHandler(handler)
    walter.setLevel(old_level)


@pytest.fixture
def seeded():
    call_command("seed_demo", "--quiet")


@pytest.fixture
def admins_by_locmem(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def test_every_line_of_a_run_carries_its_id_and_one_summary_line_ends_it(seeded, trading_day, walter_log):
    logging.getLogger("walter.before").info("not part of a run")
    call_command("run_daily", "--date", trading_day.isoformat())
    logging.getLogger("walter.after").info("not part of a run either")

    run = DailyRun.objects.get(date=trading_day)
    lines = walter_log()
    assert lines[0]["message"] == "not part of a run" and "run_id" not in lines[0]
    assert lines[-1]["message"] == "not part of a run either" and "run_id" not in lines[-1]
    during = lines[1:-1]
    assert len(during) >= 2
    assert all(line["run_id"] == run.pk for line in during)
    assert {line["level"] for line in lines} <= {"INFO", "WARNING", "ERROR"}
    assert all(line["time"].endswith("+00:00") for line in lines)
    summaries = [line for line in during if line["message"].startswith("daily run finished")]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["message"] == f"daily run finished: {run.summary}"
    assert summary["run_status"] == "succeeded"
    assert summary["emailssent"] == run.emails_sent > 0


def test_plain_lines_show_the_bound_context():
    record = logging.LogRecord("walter.run", logging.INFO, __file__, 1, "sending", None, None)
    formatter = PlainFormatter("%(levelname)s %(name)s%(context)s %(message)s")
    assert formatter.format(record) == "INFO walter.run sending"
    with log_context(run_id=42):
        assert formatter.format(record) == "INFO walter.run [run_id=42] sending"


def test_emf_line_per_run_when_enabled(seeded, trading_day, settings, capsys):
    settings.METRICS = "emf"
    settings.STAGE = "prod"
    call_command("run_daily", "--date", trading_day.isoformat())
    run = DailyRun.objects.get(date=trading_day)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert len(emf) == 1
    doc = emf[0]
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "Walter"
    assert directive["Dimensions"] == [["Stage"]]
    names = {m["Name"] for m in directive["Metrics"]}
    assert {"EmailsSent", "EmailsFailed", "AnalysesCreated", "AnalysesFallback", "DurationSeconds", "RunFailed"} <= (
        names
    )
    assert all(name in doc for name in names)  # every declared metric has its value at the top level
    assert doc["Stage"] == "prod"
    assert doc["EmailsSent"] == run.emails_sent > 0
    assert doc["EmailsFailed"] == 0
    assert doc["AnalysesCreated"] == run.analyses_created
    assert doc["RunFailed"] == 0
    assert doc["RunId"] == run.pk
    assert isinstance(doc["_aws"]["Timestamp"], int)


def test_no_emf_by_default(seeded, trading_day, capsys):
    call_command("run_daily", "--date", trading_day.isoformat())
    assert '"_aws"' not in capsys.readouterr().out


def test_a_succeeded_run_alerts_nobody(seeded, trading_day, admins_by_locmem):
    call_command("run_daily", "--date", trading_day.isoformat())
    assert mail.outbox  # the newsletters themselves
    assert not [m for m in mail.outbox if "ops@example.com" in m.to]


@pytest.fixture
def alert_queue(settings):
    """An SNS topic with an SQS queue subscribed, so the test reads what SNS delivered."""
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic_arn = sns.create_topic(Name="walter-alerts-test")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        settings.ALERT_SNS_TOPIC_ARN = topic_arn
        settings.AWS_REGION = "us-east-1"

        def received() -> list[dict]:
            answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
            return [json.loads(m["Body"]) for m in answer.get("Messages", [])]

        yield received


def test_a_failed_run_emails_admins_and_publishes_to_sns(
    seeded, trading_day, monkeypatch, admins_by_locmem, alert_queue, settings
):
    settings.STAGE = "prod"

    def provider_down(**kwargs):
        raise ConnectionError("market data provider unreachable")

    monkeypatch.setattr("newsletters.pipeline.market_data_update", provider_down)
    with pytest.raises(CommandError, match="failed"):
        call_command("run_daily", "--date", trading_day.isoformat())

    run = DailyRun.objects.get(date=trading_day)
    assert run.status == "failed"
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["ops@example.com"]
    assert f"daily run for {trading_day.isoformat()} failed" in email.subject
    assert "market data provider unreachable" in email.body

    messages = alert_queue()
    assert len(messages) == 1
    assert messages[0]["Subject"] == f"Walter prod: daily run for {trading_day.isoformat()} failed"
    assert f"Run id: {run.pk}" in messages[0]["Message"]
    assert "ConnectionError: market data provider unreachable" in messages[0]["Message"]
    assert messages[0]["MessageAttributes"]["status"]["Value"] == "failed"


def test_a_partial_run_alerts_too(trading_day, admins_by_locmem, alert_queue):
    run = DailyRun.objects.create(
        date=trading_day,
        status=DailyRun.Status.PARTIAL,
        summary="2026-11-20 partial · emails 9 sent, 1 failed, 0 skipped",
        errors={"delivery": {"ada@example.com": "SES throttled"}},
        emails_sent=9,
        emails_failed=1,
    )
    observability.run_finished(run)
    assert "partial" in mail.outbox[0].subject
    assert "SES throttled" in mail.outbox[0].body
    assert "partial" in alert_queue()[0]["Subject"]


def test_a_broken_alert_channel_does_not_mask_the_run(trading_day, settings, walter_log):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "walter.no.such.Backend"
    settings.ALERT_SNS_TOPIC_ARN = ""
    run = DailyRun.objects.create(date=trading_day, status=DailyRun.Status.FAILED, summary="failed")
    observability.run_finished(run)
    errors = [line for line in walter_log() if line["level"] == "ERROR"]
    assert [line["message"] for line in errors] == [
        "daily run finished: failed",
        f"could not email the alert for run {run.pk} to ADMINS",
    ]
    assert "exc_info" in errors[1]


def test_a_day_without_a_session_logs_one_line_and_alerts_nobody(walter_log, admins_by_locmem):
    call_command("run_daily", "--date", "2026-11-21")  # a Saturday
    lines = walter_log()
    assert [line["message"] for line in lines] == ["daily run finished: No session: Saturday 2026-11-21 is a weekend"]
    assert mail.outbox == []


def test_a_run_that_cannot_even_start_still_alerts(trading_day, monkeypatch, admins_by_locmem, settings, capsys):
    settings.METRICS = "emf"

    def misconfigured():
        raise ValueError("MARKET_DATA_PROVIDER 'nope' cannot be imported")

    monkeypatch.setattr("newsletters.pipeline.get_provider", misconfigured)
    with pytest.raises(CommandError, match="ValueError: MARKET_DATA_PROVIDER"):
        call_command("run_daily", "--date", trading_day.isoformat())
    assert not DailyRun.objects.exists()
    (alert_mail,) = mail.outbox
    assert "failed" in alert_mail.subject
    assert "stopped before it was recorded" in alert_mail.body
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert [doc["RunFailed"] for doc in emf] == [1]
