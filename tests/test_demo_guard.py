"""The demo's example subscribers are never emailed through a real email service."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from newsletters.models import DailyRun, Delivery
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create

pytestmark = pytest.mark.django_db


def test_a_real_email_backend_refuses_a_database_with_the_demo_subscribers(settings, aws_env, trading_day):
    from moto import mock_aws

    call_command("seed_demo", "--quiet")
    settings.EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
    with mock_aws(), pytest.raises(CommandError) as failure:
        call_command("run_daily", "--date", trading_day.isoformat())
    assert "demo's example subscribers" in str(failure.value) and "\n" not in str(failure.value)
    assert not Delivery.objects.exists(), "nothing planned, nothing sent"
    assert DailyRun.objects.get().status == DailyRun.Status.FAILED


def test_the_demo_sends_to_its_subscribers_through_the_file_backend(trading_day, outbox):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat())
    assert len(list(outbox.glob("*.eml"))) == Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count()


def test_real_subscribers_are_sent_through_a_real_backend(settings, aws_env, trading_day):
    import boto3
    from moto import mock_aws

    settings.EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "Walter <walter@news.example.com>"
    settings.ANYMAIL = {**settings.ANYMAIL, "AMAZON_SES_CLIENT_PARAMS": {"region_name": "us-east-1"}}
    subscriber_create(email="reader@example.org", symbols=["AAPL"], status=Subscriber.Status.ACTIVE)
    with mock_aws():
        boto3.client("sesv2", region_name="us-east-1").create_email_identity(EmailIdentity="walter@news.example.com")
        call_command("run_daily", "--date", trading_day.isoformat())
    assert Delivery.objects.get().status == Delivery.Status.SENT
