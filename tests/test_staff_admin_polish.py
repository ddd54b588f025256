"""The back office reads as Walter's, shows records as records, and fits a laptop screen."""

from __future__ import annotations

import datetime as dt
import email
import re
from email import policy

import pytest
from django.core.management import call_command
from django.urls import reverse

from markets.models import Ticker
from newsletters.models import Analysis, DailyRun, Delivery
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_day(trading_day, outbox):
    subscriber_create(email="ann@example.com", symbols=["AAPL", "MSFT"], status=Subscriber.Status.ACTIVE)
    call_command("run_daily", "--date", trading_day.isoformat())
    return trading_day


def test_the_site_header_says_walter(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "Walter administration" in page and "Django administration" not in page


@pytest.mark.parametrize(
    "model",
    [
        "newsletters_dailyrun",
        "newsletters_delivery",
        "newsletters_issue",
        "markets_sharedtickerdata",
        "markets_sharedtickeranalysis",
    ],
)
def test_records_cannot_be_added_by_hand(admin_client, model):
    assert admin_client.get(reverse(f"admin:{model}_add")).status_code == 403
    changelist = admin_client.get(reverse(f"admin:{model}_changelist")).content.decode()
    assert reverse(f"admin:{model}_add") not in changelist


def test_a_run_page_is_read_only_with_durations_as_a_table(admin_client):
    run = DailyRun.objects.create(
        date=dt.date(2026, 11, 20), status="succeeded", durations={"data": 1.5, "analysis": 2.0, "delivery": 4.25}
    )
    page = admin_client.get(reverse("admin:newsletters_dailyrun_change", args=[run.pk])).content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert '<table class="walter-durations">' in page
    assert re.search(r"<th scope=\"row\">delivery</th><td[^>]*>4\.2 s</td>", page)
    assert "7.8 s" in page  # the total
    assert '{"data": 1.5' not in page


def test_deliveries_and_issues_cannot_be_deleted(admin_client, sent_day):
    delivery = Delivery.objects.get()
    assert admin_client.get(reverse("admin:newsletters_delivery_delete", args=[delivery.pk])).status_code == 403
    assert admin_client.get(reverse("admin:newsletters_issue_delete", args=[delivery.issue_id])).status_code == 403


def test_fell_back_is_blank_on_normal_rows(admin_client, sent_day):
    analysis = Analysis.objects.first()
    page = admin_client.get(reverse("admin:newsletters_analysis_changelist")).content.decode()
    assert "icon-no" not in page and "fell back</td>" not in page
    Analysis.objects.filter(pk=analysis.pk).update(fallback_reason="TimeoutError: the model took too long")
    page = admin_client.get(reverse("admin:newsletters_analysis_changelist")).content.decode()
    assert page.count("⚠ fell back") == 1


def test_delivery_columns_are_distinct_and_links_follow_the_host(admin_client, sent_day, settings):
    settings.SITE_URL = "https://walter.example.org"
    page = admin_client.get(reverse("admin:newsletters_delivery_changelist")).content.decode()
    headers = re.findall(r'<th scope="col"[^>]*>.*?<(?:a|span)[^>]*>([^<]+)<', page, re.S)
    labels = [h.strip().lower() for h in headers]
    assert labels.count("email") == 1, labels
    assert "localhost:8000" not in page and "walter.example.org" not in page
    link = re.search(r'href="(/email/[^"]+)"[^>]*>archived copy', page).group(1)
    assert admin_client.get(link).status_code == 200


def test_a_long_failure_reason_is_cut_with_the_whole_text_in_a_tooltip(admin_client, sent_day):
    reason = "send: " + "ServiceUnavailable: try later " * 10
    Delivery.objects.update(status=Delivery.Status.FAILED, error=reason)
    page = admin_client.get(reverse("admin:newsletters_delivery_changelist")).content.decode()
    assert f'title="{reason}"' in page
    assert reason not in page.replace(f'title="{reason}"', "")


def test_subscriber_tickers_stay_on_one_line_and_the_filter_has_no_empty_entry(admin_client):
    symbols = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM"]
    subscriber_create(email="ann@example.com", symbols=symbols, status=Subscriber.Status.ACTIVE)
    page = admin_client.get(reverse("admin:subscriptions_subscriber_changelist")).content.decode()
    shown = re.search(r"white-space:nowrap\" title=\"([^\"]+)\">([^<]+)<", page)
    assert shown, page
    assert sorted(shown.group(1).split(", ")) == sorted(symbols)
    assert shown.group(2).endswith(" +2") and len(shown.group(2).split(", ")) == 6
    assert "white-space:nowrap" in page
    assert "tickers__isnull" not in page
    assert Ticker.objects.filter(symbol="JPM").exists()


def test_favicon_and_head_requests(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("favicon.ico")
    assert client.head("/").status_code == 200
    assert client.head("/favicon.ico").status_code == 301


def test_the_date_header_names_its_zone(sent_day, outbox):
    (path,) = outbox.glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["Date"].endswith("+0000"), message["Date"]
