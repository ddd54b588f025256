""" "Send me the latest issue now": the job record, its status endpoint, the page, the rate limit, one copy."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from newsletters.jobs import TooManyRequests, send_job_create, send_job_run
from newsletters.models import Delivery, SendJob
from subscriptions import tokens
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create
from tests.fakes.email_backends import ScriptedSESBackend

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def latest_session(monkeypatch, trading_day):
    # "The latest issue" is the latest completed session: pinned to the demo history's Friday.
    monkeypatch.setattr("markets.calendar.latest_completed_session", lambda *a, **k: trading_day)


@pytest.fixture
def ann(trading_day):
    ann = subscriber_create(email="ann@example.com", symbols=["AAPL", "MSFT"], status=Subscriber.Status.ACTIVE)
    # The day's market data, as the daily run fetches it: a subscriber's click never fetches any.
    call_command("run_daily", "--date", trading_day.isoformat(), "--stage", "data")
    return ann


@pytest.fixture(autouse=True)
def ses(settings):
    # Records every message handed over (the .eml outbox names files by Message-ID, so a second copy overwrites).
    settings.EMAIL_BACKEND = "tests.fakes.email_backends.ScriptedSESBackend"
    ScriptedSESBackend.reset()


def sent_to(outbox) -> list[str]:
    return [m.to[0] for m in ScriptedSESBackend.sent]


def send_now_url(subscriber: Subscriber) -> str:
    return reverse("newsletters:send-now", args=[tokens.make_token(tokens.PREFERENCES, subscriber.pk)])


def test_the_button_queues_a_job_and_the_page_follows_it_to_sent(client, ann, outbox, trading_day):
    response = client.post(send_now_url(ann))
    job = SendJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("newsletters:send-job", args=[job.token])

    page = client.get(response["Location"]).content.decode()
    assert "in your inbox" in page and "ann@example.com" not in page
    status = client.get(reverse("newsletters:send-job-status", args=[job.token])).json()
    assert status["status"] == "sent" and status["day"] == trading_day.isoformat()
    assert status["finished_at"] and "ann@example.com" not in str(status)
    assert sent_to(outbox) == ["ann@example.com"]
    delivery = Delivery.objects.get(subscriber=ann, issue__date=trading_day)
    assert delivery.status == Delivery.Status.SENT and job.source == "page"

    # The daily run then does not send it again.
    call_command("run_daily", "--date", trading_day.isoformat())
    assert sent_to(outbox) == ["ann@example.com"]


def test_status_goes_queued_rendering_sent_and_a_second_run_does_nothing(client, ann, outbox, trading_day):
    job = SendJob.objects.create(subscriber=ann, day=trading_day)
    url = reverse("newsletters:send-job-status", args=[job.token])
    assert client.get(url).json()["status"] == "queued"
    seen = []
    original = Delivery.objects.get_or_create

    def spy(*args, **kwargs):
        seen.append(SendJob.objects.get(pk=job.pk).status)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Delivery.objects, "get_or_create", spy)
        send_job_run(job_id=job.pk)
    assert seen == ["rendering"]
    assert client.get(url).json()["status"] == "sent"
    assert send_job_run(job_id=job.pk) is None, "a redelivered task finds the job done and sends nothing"
    assert sent_to(outbox) == ["ann@example.com"]


def test_a_refused_message_fails_the_job_with_the_reason(client, ann):
    ScriptedSESBackend.reset({"ann@example.com": [("MessageRejected", "Address is on the suppression list.")]})
    job = send_job_create(subscriber=ann)
    status = client.get(reverse("newsletters:send-job-status", args=[job.token])).json()
    assert status["status"] == "failed"
    assert "MessageRejected" in status["reason"] and status["message"].startswith("Not sent:")


def test_already_received_is_told_so_and_can_ask_again(client, ann, outbox):
    client.post(send_now_url(ann))
    response = client.post(send_now_url(ann))
    page = response.content.decode()
    assert response.status_code == 200 and "already received the issue of 2026-11-20" in page
    assert 'name="again" value="1"' in page and "Send it to me again" in page
    assert SendJob.objects.count() == 1 and sent_to(outbox) == ["ann@example.com"]

    again = client.post(send_now_url(ann), {"again": "1"})
    assert again.status_code == 302
    assert sent_to(outbox) == ["ann@example.com", "ann@example.com"], "asked explicitly: a second copy"


def test_at_most_three_a_day_per_subscriber(client, ann, outbox, settings):
    assert settings.SEND_NOW_LIMIT_PER_DAY == 3
    for _ in range(3):
        send_job_create(subscriber=ann, again=True)
    with pytest.raises(TooManyRequests):
        send_job_create(subscriber=ann, again=True)
    response = client.post(send_now_url(ann), {"again": "1"})
    assert response.status_code == 429 and "at most 3 sends a day" in response.content.decode()
    assert len(sent_to(outbox)) == 3
    # Another subscriber is not limited by Ann's requests.
    bob = subscriber_create(email="bob@example.com", symbols=["AAPL"], status=Subscriber.Status.ACTIVE)
    assert send_job_create(subscriber=bob).status == SendJob.Status.SENT


def test_paused_subscriber_and_bad_link_are_refused_with_a_message(client, ann, outbox):
    ann.status = Subscriber.Status.PAUSED
    ann.save()
    response = client.post(send_now_url(ann))
    assert response.status_code == 400 and "is paused: nothing sent" in response.content.decode()
    assert client.post(reverse("newsletters:send-now", args=["not-a-token"])).status_code == 404
    assert client.get(send_now_url(ann)).status_code == 405, "only a POST sends"
    assert SendJob.objects.count() == 0 and sent_to(outbox) == []


def test_pages_show_the_button_to_an_active_subscriber(client, ann):
    prefs = reverse("subscriptions:preferences", args=[tokens.make_token(tokens.PREFERENCES, ann.pk)])
    page = client.get(prefs).content.decode()
    assert "Send me the latest issue now" in page and send_now_url(ann) in page


def test_send_newsletter_goes_through_the_job_path(ann, outbox, trading_day, capsys):
    call_command("send_newsletter", "--email", "ann@example.com", "--date", trading_day.isoformat())
    job = SendJob.objects.get()
    assert job.source == "command" and job.status == SendJob.Status.SENT
    with pytest.raises(CommandError, match="already received"):
        call_command("send_newsletter", "--email", "ann@example.com", "--date", trading_day.isoformat())
    call_command("send_newsletter", "--email", "ann@example.com", "--date", trading_day.isoformat(), "--again")
    assert sent_to(outbox) == ["ann@example.com", "ann@example.com"]


def test_staff_send_now_in_the_admin_goes_through_the_job_path(client, ann, trading_day, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@walter.example", "pw-tests-only"))
    add = reverse("admin:newsletters_sendjob_add")
    response = client.post(add, {"subscriber": ann.pk, "day": trading_day.isoformat()}, follow=True)
    assert response.status_code == 200
    job = SendJob.objects.get()
    assert job.source == "admin" and job.status == SendJob.Status.SENT
    assert sent_to(None) == ["ann@example.com"]

    ann.status = Subscriber.Status.PAUSED
    ann.save()
    response = client.post(add, {"subscriber": ann.pk, "day": trading_day.isoformat(), "again": "on"}, follow=True)
    assert "is paused: nothing sent" in response.content.decode()
    assert SendJob.objects.count() == 1 and sent_to(None) == ["ann@example.com"]


def test_a_click_before_the_days_data_is_fetched_fails_with_a_reason_and_fetches_nothing(client, trading_day):
    bob = subscriber_create(email="bob@example.com", symbols=["KO"], status=Subscriber.Status.ACTIVE)
    client.post(send_now_url(bob))
    job = SendJob.objects.get()
    assert job.status == SendJob.Status.FAILED and "not ready yet" in job.reason
    assert sent_to(None) == []
    from markets.models import DailyBar

    assert not DailyBar.objects.exists(), "the web spent no provider request"
