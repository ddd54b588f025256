"""The whole daily job on the embedded defaults, through the management command."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from newsletters.models import DailyRun, Delivery
from subscriptions.models import Subscriber

pytestmark = pytest.mark.django_db


def read_outbox(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]


def test_one_email_per_active_subscriber_with_their_tickers(outbox, archive_dir, trading_day, capsys):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat())

    active = {s.email: s for s in Subscriber.objects.filter(status=Subscriber.Status.ACTIVE)}
    messages = read_outbox(outbox)
    assert sorted(m["To"] for m in messages) == sorted(active)
    for message in messages:
        subscriber = active[message["To"]]
        followed = set(subscriber.tickers.values_list("symbol", flat=True))
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        for symbol in followed:
            assert f"{symbol} " in text
            assert f">{symbol}<" in html
        others = {"AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "SPY", "JPM"} - followed
        for symbol in others:
            assert f">{symbol}<" not in html, f"{message['To']} got {symbol}, which they do not follow"
        assert "Not investment advice" in text
        assert "DEMO DATA" in message["Subject"] and "DEMO DATA" in html
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    deliveries = Delivery.objects.filter(issue__date=trading_day)
    assert deliveries.count() == len(active)
    assert set(deliveries.values_list("status", flat=True)) == {Delivery.Status.SENT}
    for delivery in deliveries:
        html_copy = archive_dir / delivery.archive_key
        assert html_copy.exists()
        assert html_copy.with_suffix(".eml").exists()
        assert delivery.email not in delivery.archive_key

    run = DailyRun.objects.get(date=trading_day)
    assert run.status == DailyRun.Status.SUCCEEDED
    assert run.emails_sent == len(active)
    assert run.tickers_updated > 0 and run.analyses_created == run.tickers_updated
    assert "emails 5 sent" in capsys.readouterr().out

    # The same date again: nothing new is sent, and the command says so.
    call_command("run_daily", "--date", trading_day.isoformat())
    assert len(read_outbox(outbox)) == len(active)
    assert "Nothing new to send" in capsys.readouterr().out
    second = DailyRun.objects.filter(date=trading_day).order_by("-started_at").first()
    assert second.emails_sent == 0 and second.analyses_cached == run.analyses_created


def test_pending_paused_and_unsubscribed_get_nothing(outbox, trading_day):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat())
    recipients = {m["To"] for m in read_outbox(outbox)}
    for status in (Subscriber.Status.PENDING, Subscriber.Status.PAUSED, Subscriber.Status.UNSUBSCRIBED):
        emails = set(Subscriber.objects.filter(status=status).values_list("email", flat=True))
        assert emails, f"the demo has a {status} subscriber"
        assert not emails & recipients
    assert not Delivery.objects.exclude(subscriber__status=Subscriber.Status.ACTIVE).exists()


@pytest.mark.parametrize(
    ("day", "reason"),
    [("2026-11-21", "weekend"), ("2026-11-26", "Thanksgiving"), ("2026-12-25", "Christmas")],
)
def test_no_session_sends_nothing(outbox, day, reason, capsys):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", day)
    assert reason in capsys.readouterr().out
    assert not outbox.exists() or not list(outbox.glob("*.eml"))
    assert not Delivery.objects.exists()
    assert DailyRun.objects.get().status == DailyRun.Status.SKIPPED


def test_bad_date_is_one_readable_error():
    with pytest.raises(CommandError) as error:
        call_command("run_daily", "--date", "2026-13-45")
    message = str(error.value)
    assert "2026-13-45" in message and "YYYY-MM-DD" in message
    assert "\n" not in message
