"""On demand and from the back office: send_newsletter, and the Issue and Delivery admin with its actions."""

from __future__ import annotations

import email
from email import policy

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from newsletters.models import Delivery
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create
from tests.fakes.email_backends import ScriptedSESBackend

pytestmark = pytest.mark.django_db


def messages_in(outbox) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]


@pytest.fixture
def ann():
    return subscriber_create(email="ann@example.com", symbols=["AAPL", "MSFT"], status=Subscriber.Status.ACTIVE)


def test_send_newsletter_sends_one_subscribers_issue_and_records_it(ann, outbox, trading_day, capsys):
    subscriber_create(email="bob@example.com", symbols=["NVDA"], status=Subscriber.Status.ACTIVE)
    call_command("send_newsletter", "--email", "ANN@example.com", "--date", trading_day.isoformat())

    (message,) = messages_in(outbox)
    assert message["To"] == "ann@example.com"
    assert "AAPL" in message.get_body(("plain",)).get_content()
    delivery = Delivery.objects.get(subscriber=ann, issue__date=trading_day)
    assert delivery.status == Delivery.Status.SENT and delivery.symbols == ["AAPL", "MSFT"]
    assert "Sent the issue of 2026-11-20 to ann@example.com" in capsys.readouterr().out

    # The daily run then sends the others, and not Ann's again.
    call_command("run_daily", "--date", trading_day.isoformat())
    assert sorted(m["To"] for m in messages_in(outbox)) == ["ann@example.com", "bob@example.com"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--email", "nobody@example.com"], "no subscriber with the address 'nobody@example.com'"),
        (["--email", "ann@example.com", "--date", "2026-11-21"], "no market session on 2026-11-21"),
        (["--email", "ann@example.com", "--date", "21/11/2026"], "is not a valid date"),
    ],
)
def test_send_newsletter_bad_input_is_one_readable_line(ann, args, error):
    with pytest.raises(CommandError) as failure:
        call_command("send_newsletter", *args)
    assert error in str(failure.value) and "\n" not in str(failure.value)


def test_send_newsletter_refuses_a_second_copy_and_an_inactive_subscriber(ann, outbox, trading_day):
    call_command("send_newsletter", "--email", "ann@example.com", "--date", trading_day.isoformat())
    with pytest.raises(CommandError, match="already received the issue of 2026-11-20"):
        call_command("send_newsletter", "--email", "ann@example.com", "--date", trading_day.isoformat())
    ann.status = Subscriber.Status.UNSUBSCRIBED
    ann.save()
    with pytest.raises(CommandError, match=r"ann@example\.com is unsubscribed: nothing sent"):
        call_command("send_newsletter", "--email", "ann@example.com", "--date", "2026-11-19")
    assert len(messages_in(outbox)) == 1


def test_send_newsletter_reports_a_refused_message(ann, settings, trading_day):
    settings.EMAIL_BACKEND = "tests.fakes.email_backends.ScriptedSESBackend"
    ScriptedSESBackend.reset({"ann@example.com": [("MessageRejected", "Address is on the suppression list.")]})
    with pytest.raises(CommandError, match="was not sent: rejected: MessageRejected"):
        call_command("send_newsletter", "--email", "ann@example.com", "--date", trading_day.isoformat())


# -- admin -------------------------------------------------------------------------------------------------


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("boss", "boss@walter.example", "pw-for-tests-only")
    client.force_login(user)
    return client


@pytest.fixture
def sent_issue(ann, trading_day, settings):
    settings.EMAIL_BACKEND = "tests.fakes.email_backends.ScriptedSESBackend"
    subscriber_create(email="bob@example.com", symbols=["NVDA"], status=Subscriber.Status.ACTIVE)
    subscriber_create(email="cy@example.com", symbols=["KO"], status=Subscriber.Status.ACTIVE)
    ScriptedSESBackend.reset({"bob@example.com": [("MessageRejected", "Address blacklisted.")]})
    call_command("run_daily", "--date", trading_day.isoformat())
    return trading_day


def test_issue_list_counts_deliveries_per_status(staff, sent_issue):
    Delivery.objects.filter(email="cy@example.com").update(status=Delivery.Status.SENDING)
    response = staff.get(reverse("admin:newsletters_issue_changelist"))
    assert "In flight (ambiguous)" in response.content.decode()
    (issue,) = response.context["cl"].result_list
    counts = (issue.n_sent, issue.n_failed, issue.n_pending, issue.n_in_flight, issue.n_skipped)
    assert counts == (1, 1, 0, 1, 0)


def test_delivery_list_shows_counts_reasons_and_archive_links(staff, sent_issue):
    url = reverse("admin:newsletters_delivery_changelist") + f"?issue__date={sent_issue.isoformat()}"
    page = staff.get(url).content.decode()
    assert "<strong>2</strong> sent" in page and "<strong>1</strong> failed" in page
    assert "Address blacklisted" in page
    assert page.count("archived copy") == 3
    failed = staff.get(url + "&status__exact=failed").content.decode()
    assert "bob@example.com" in failed and "ann@example.com" not in failed


def test_resend_action_sends_the_selected_again(staff, sent_issue):
    bob = Delivery.objects.get(email="bob@example.com")
    response = staff.post(
        reverse("admin:newsletters_delivery_changelist"),
        {"action": "resend", "_selected_action": [bob.pk]},
        follow=True,
    )
    assert "1 sent, 0 failed" in response.content.decode()
    bob.refresh_from_db()
    assert bob.status == Delivery.Status.SENT
    assert [m.to[0] for m in ScriptedSESBackend.sent].count("bob@example.com") == 1


def test_test_copy_goes_to_the_staff_member_and_is_not_recorded(staff, sent_issue):
    ann = Delivery.objects.get(email="ann@example.com")
    before = list(Delivery.objects.values_list("id", "status"))
    response = staff.post(
        reverse("admin:newsletters_delivery_changelist"),
        {"action": "send_test_copy_to_me", "_selected_action": [ann.pk]},
        follow=True,
    )
    assert "Sent 1 test copies to boss@walter.example" in response.content.decode()
    copy = ScriptedSESBackend.sent[-1]
    assert copy.to == ["boss@walter.example"] and copy.subject.startswith("[TEST COPY]")
    assert "AAPL" in copy.body
    assert list(Delivery.objects.values_list("id", "status")) == before


def test_preview_action_opens_the_preview_page(staff, sent_issue):
    ann = Delivery.objects.get(email="ann@example.com")
    response = staff.post(
        reverse("admin:newsletters_delivery_changelist"), {"action": "preview", "_selected_action": [ann.pk]}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("newsletters:preview", args=[ann.subscriber_id, "2026-11-20"])
