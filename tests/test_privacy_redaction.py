"""No address in what outlives erasure: stored delivery errors, run records, log lines, alerts, command output."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.core.management import call_command
from django.utils.module_loading import import_string

import newsletters.delivery
from newsletters import observability
from newsletters.models import DailyRun, Delivery
from newsletters.sending import refusal_of
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create
from tests.fakes.email_backends import ScriptedSESBackend, ses_error
from walter_site.redaction import redact, redact_data

READERS = ["ada.lovelace@example.com", "Bob+walter@Mail.Example.org", "carol@example.com"]
REJECTED, BROKEN = READERS[0], READERS[1].lower()


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com",
        "Ada.Lovelace+news@Sub.Example.CO.UK",
        '"ada lovelace"@example.com',
        "o'brien@example.ie",
        "ada%40example.com",  # inside a URL
        "jürgen@bücher.example",
        "ada@localhost",
    ],
)
def test_redact_removes_the_address_and_keeps_the_rest(address):
    text = f"554 Message rejected: Email address is not verified: <{address}> (region us-east-1)"
    redacted = redact(text)
    assert address not in redacted and address.split("@")[0].strip('"') not in redacted.replace("<address>", "")
    assert redacted.startswith("554 Message rejected: Email address is not verified: <")
    assert redacted.endswith("> (region us-east-1)")
    assert redact("nothing personal: 3 emails failed") == "nothing personal: 3 emails failed"


def test_redact_data_reaches_every_string_in_a_run_record():
    data = {"delivery": {"0b7d": "rejected: ada@example.com"}, "ada@example.com": ["x ada@example.com", 3, None]}
    assert "ada@example.com" not in json.dumps(redact_data(data))
    assert redact_data(data)["delivery"]["0b7d"].startswith("rejected: ")


def test_an_ses_rejection_naming_the_address_is_kept_without_it():
    text = f"Email address is not verified. The following identities failed the check in region US-EAST-1: {REJECTED}"
    refusal = refusal_of(ses_error("MessageRejected", text))
    assert refusal.kind == "rejected"
    assert REJECTED not in refusal.reason and "failed the check in region US-EAST-1" in refusal.reason


@pytest.fixture
def console_log():
    """What the configured console handler (the process's stderr, CloudWatch in production) writes."""
    # The one settings.LOGGING made (pytest adds capture handlers of its own, subclasses of StreamHandler).
    (handler,) = [h for h in logging.getLogger("walter").handlers if type(h) is logging.StreamHandler]
    buffer = io.StringIO()
    old = handler.setStream(buffer)
    yield buffer
    handler.setStream(old)


@pytest.fixture
def failing_run(db, settings, trading_day, monkeypatch, console_log):
    """A run in which SES rejects one reader with their address in its answer and one email cannot be composed
    (an exception whose text holds the address), with the alert emailed to ADMINS through the same backend."""
    settings.EMAIL_BACKEND = "tests.fakes.email_backends.ScriptedSESBackend"
    settings.ADMINS = [("Ops", "ops@walter.example")]
    text = f"Email address is not verified. The following identities failed the check: {REJECTED}"
    ScriptedSESBackend.reset({REJECTED: [("MessageRejected", text)]})
    for address in READERS:
        subscriber_create(email=address, symbols=["AAPL"], status=Subscriber.Status.ACTIVE)
    real_compose = newsletters.delivery.email_compose

    def compose(*, email, **kwargs):
        if email == BROKEN:
            raise ValueError(f"cannot build a message for {email}")
        return real_compose(email=email, **kwargs)

    monkeypatch.setattr(newsletters.delivery, "email_compose", compose)
    out = io.StringIO()
    call_command("run_daily", "--date", trading_day.isoformat(), stdout=out, stderr=out)
    alerts = [m for m in ScriptedSESBackend.sent if m.to == ["ops@walter.example"]]
    return {"out": out.getvalue(), "log": console_log.getvalue(), "alerts": alerts}


def _addresses_in(text: str) -> list[str]:
    return [a for a in READERS if a.lower() in text.lower() or a.split("@")[0].lower() in text.lower()]


def test_a_run_with_failures_keeps_no_address_in_records_logs_alerts_or_output(failing_run, trading_day):
    run = DailyRun.objects.get(date=trading_day)
    assert run.status == DailyRun.Status.PARTIAL and run.emails_failed == 2
    deliveries = {d.subscriber.email: d for d in Delivery.objects.select_related("subscriber")}
    rejected, broken = deliveries[REJECTED], deliveries[BROKEN]
    # What failed is still there to read, by delivery token.
    assert "failed the check" in rejected.error and "cannot build a message" in broken.error
    assert set(run.errors["delivery"]) == {str(rejected.token), str(broken.token)}
    assert "cannot build a message" in failing_run["log"], "the traceback is logged"
    (alert,) = failing_run["alerts"]
    assert str(rejected.token) in alert.body

    for where, text in {
        "Delivery.error": rejected.error + broken.error,
        "DailyRun.errors": json.dumps(run.errors),
        "DailyRun.summary": run.summary,
        "log": failing_run["log"],
        "command output": failing_run["out"],
        "alert": alert.subject + alert.body,
    }.items():
        assert _addresses_in(text) == [], f"an address in the {where}"


def test_an_alert_for_a_run_that_crashed_before_it_was_recorded_names_no_address(
    settings, trading_day, console_log, mailoutbox
):
    settings.ADMINS = [("Ops", "ops@walter.example")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    error = RuntimeError(f"the row of {READERS[2]} is locked")
    observability.run_crashed(day=trading_day, stages=["delivery"], error=error)
    (alert,) = mailoutbox
    assert "is locked" in alert.body and "is locked" in console_log.getvalue()
    assert READERS[2] not in alert.body and READERS[2] not in console_log.getvalue()


@pytest.mark.parametrize("formatter", ["plain", "json"])
def test_every_configured_log_line_is_redacted_message_arguments_traceback_and_extra(settings, formatter):
    """The filters of settings.LOGGING's console handler, with either formatter, on a logger that is not Walter's."""
    config = settings.LOGGING
    options = {k: v for k, v in config["formatters"][formatter].items() if k != "()"}
    if "format" in options:  # dictConfig's name for the Formatter's fmt
        options["fmt"] = options.pop("format")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(import_string(config["formatters"][formatter]["()"])(**options))
    for name in config["handlers"]["console"]["filters"]:
        handler.addFilter(import_string(config["filters"][name]["()"])())
    vendor = logging.getLogger("botocore.test-privacy")
    vendor.addHandler(handler)
    try:
        try:
            raise ValueError("refused ada@example.com")
        except ValueError:
            vendor.error("send to %s failed", "bob@example.com", exc_info=True, extra={"recipient": "eve@example.com"})
    finally:
        vendor.removeHandler(handler)
    line = buffer.getvalue()
    assert "send to <address> failed" in line and "ValueError: refused <address>" in line
    assert "@example.com" not in line


def test_the_migration_redacts_errors_stored_before_redaction(db, trading_day):
    from importlib import import_module

    from django.apps import apps

    from newsletters.models import Issue

    migration = import_module("newsletters.migrations.0005_redact_stored_errors")
    issue = Issue.objects.create(date=trading_day)
    old = Delivery.objects.create(issue=issue, error=f"rejected: MessageRejected: not verified: {REJECTED}")
    clean = Delivery.objects.create(issue=issue, error="send: InternalFailure: try later")
    run = DailyRun.objects.create(date=trading_day)
    # Written as before this change: past the pre_save redaction, as the old code's rows are.
    DailyRun.objects.filter(pk=run.pk).update(
        errors={"delivery_ambiguous": {"count": 1, "emails": [READERS[2]]}}, summary=f"stopped at {READERS[2]}"
    )

    migration.redact_stored_errors(apps, None)

    old.refresh_from_db(), clean.refresh_from_db(), run.refresh_from_db()
    assert old.error == "rejected: MessageRejected: not verified: <address>"
    assert clean.error == "send: InternalFailure: try later"
    assert run.errors == {"delivery_ambiguous": {"count": 1, "emails": ["<address>"]}}
    assert run.summary == "stopped at <address>"
