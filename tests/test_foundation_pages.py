"""The staff preview page of a subscriber's email."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from subscriptions.models import Subscriber

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user("staff", "staff@example.com", "pw-for-tests-only", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def ada():
    call_command("seed_demo", "--quiet")
    return Subscriber.objects.get(email="ada@example.com")


def preview_url(subscriber_id: int, day: str) -> str:
    return reverse("newsletters:preview", args=[subscriber_id, day])


def test_staff_sees_the_email_that_would_be_sent(staff_client, ada, trading_day, outbox):
    response = staff_client.get(preview_url(ada.pk, trading_day.isoformat()))
    assert response.status_code == 200
    html = response.content.decode()
    for symbol in ("NVDA", "MSFT", "AAPL"):
        assert f">{symbol}<" in html
    assert "Not investment advice" in html
    assert not outbox.exists() or not list(outbox.glob("*.eml")), "a preview sends nothing"
    text = staff_client.get(preview_url(ada.pk, trading_day.isoformat()) + "?format=text")
    assert text["Content-Type"].startswith("text/plain") and "NVDA" in text.content.decode()


def test_preview_of_a_sent_issue_is_the_archived_copy_with_working_charts(staff_client, ada, trading_day, archive_dir):
    call_command("run_daily", "--date", trading_day.isoformat())
    delivery = ada.deliveries.get()
    archived = (archive_dir / delivery.archive_key).read_text()
    assert 'src="charts/' in archived and 'src="cid:' not in archived  # the charts beside the copy, on disk

    html = staff_client.get(preview_url(ada.pk, trading_day.isoformat())).content.decode()
    assert 'src="cid:' not in html
    charts = re.findall(r'src="(/email/[^"]+/images/[^"]+)"', html)
    assert charts and len(charts) == archived.count('src="charts/')
    for chart in charts:
        image = staff_client.get(unquote(chart))
        assert image.status_code == 200 and image["Content-Type"] == "image/png"
    banner = re.search(r'<div id="staff-preview-banner"[^>]*>([^<]+)</div>', html).group(1)
    assert f"subscriber #{ada.pk}" in banner and "session 2026-11-20" in banner and "archived copy" in banner
    # Apart from the banner and the chart links, the page is the archived copy.
    assert re.sub(r'<div id="staff-preview-banner".*?</div>', "", html).count("NVDA") == archived.count("NVDA")

    text = staff_client.get(preview_url(ada.pk, trading_day.isoformat()) + "?format=text")
    body = text.content.decode()
    assert text["Content-Type"].startswith("text/plain")
    assert body.startswith("[Staff preview") and "archived copy" in body.splitlines()[0]
    assert "NVDA" in body and "<" not in body.split("\n", 1)[1][:200]


def test_preview_of_an_unsent_issue_says_it_is_a_fresh_render(staff_client, ada, trading_day):
    html = staff_client.get(preview_url(ada.pk, trading_day.isoformat())).content.decode()
    assert "fresh render, not sent" in html


def test_anonymous_is_sent_to_login(client, ada, trading_day):
    response = client.get(preview_url(ada.pk, trading_day.isoformat()))
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_non_staff_user_is_sent_to_login(client, ada, trading_day):
    user = get_user_model().objects.create_user("reader", "r@example.com", "pw-for-tests-only")
    client.force_login(user)
    assert client.get(preview_url(ada.pk, trading_day.isoformat())).status_code == 302


def test_unknown_subscriber_and_bad_date_are_404(staff_client, ada, trading_day):
    assert staff_client.get(preview_url(999_999, trading_day.isoformat())).status_code == 404
    assert staff_client.get(preview_url(ada.pk, "2026-13-45")).status_code == 404
