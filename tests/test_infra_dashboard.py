"""The daily-runs dashboard in the admin."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from newsletters.admin_dashboard import chart_bars, dashboard_context, per_day
from newsletters.models import DailyRun

pytestmark = pytest.mark.django_db

URL = "/admin/newsletters/dailyrun/dashboard/"


def make_run(day: dt.date, status: str = "succeeded", **fields) -> DailyRun:
    return DailyRun.objects.create(date=day, status=status, **fields)


@pytest.fixture
def runs():
    monday = dt.date(2026, 11, 16)
    make_run(
        monday,
        emails_sent=100,
        emails_failed=0,
        input_tokens=1000,
        output_tokens=200,
        estimated_cost_usd=Decimal("0.0123"),
        durations={"data": 1.5, "analysis": 2.0, "delivery": 4.25},
    )
    make_run(monday + dt.timedelta(days=1), "partial", emails_sent=90, emails_failed=10, analyses_fallback=2)
    make_run(monday + dt.timedelta(days=1), emails_sent=10)  # the rerun that retried the failures
    make_run(monday + dt.timedelta(days=2), "failed", errors={"run": "ConnectionError: down"})
    make_run(monday + dt.timedelta(days=3), dry_run=True, emails_skipped=100)
    make_run(dt.date(2026, 11, 21), "skipped", stages="", summary="No session: weekend")


def test_staff_sees_runs_totals_and_chart(admin_client, runs):
    response = admin_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'id="total-sent">200<', html)
    assert re.search(r'id="total-failed">10<', html)
    assert 'id="total-cost">$0.0123<' in html
    assert html.count('<tr class="run-') == 6
    assert 'class="run-failed"' in html and 'class="run-partial"' in html
    assert ">7.8<" in html  # total seconds of the first run (1.5 + 2.0 + 4.25)
    # One sent and one failed bar per day with sends: Mon, Tue (two runs summed), Wed (failed, nothing sent).
    assert html.count('class="bar-sent"') == 3
    assert html.count('class="bar-failed"') == 3
    assert "<title>2026-11-17: 100 sent</title>" in html
    assert "<title>2026-11-17: 10 failed</title>" in html
    assert "<script" not in html.split('id="sent-failed-chart"')[1].split("</svg>")[0]


def test_the_busiest_day_fills_the_chart_and_small_failures_still_show():
    days = per_day(
        [
            DailyRun(date=dt.date(2026, 11, 16), status="succeeded", emails_sent=500, emails_failed=1),
            DailyRun(date=dt.date(2026, 11, 17), status="succeeded", emails_sent=250, emails_failed=0),
        ]
    )
    bars, top = chart_bars(days, height=100)
    assert top == 500
    heights = {(b.title): b.height for b in bars}
    assert heights["2026-11-16: 500 sent"] == 100
    assert heights["2026-11-17: 250 sent"] == 50
    assert heights["2026-11-16: 1 failed"] == 1  # 0.2 px would vanish; a failure is never invisible
    assert heights["2026-11-17: 0 failed"] == 0
    assert all(b.y + b.height == 100 for b in bars)


def test_only_the_last_30_runs(runs):
    for i in range(40):
        make_run(dt.date(2026, 10, 1) + dt.timedelta(days=i % 28), emails_sent=1)
    assert len(dashboard_context()["rows"]) == 30


def test_empty_dashboard(admin_client):
    response = admin_client.get(URL)
    assert response.status_code == 200
    assert b"No runs yet." in response.content


def test_not_for_anonymous_or_non_staff(client):
    assert client.get(URL).status_code == 302
    user = get_user_model().objects.create_user("reader", "r@example.com", "pw-for-tests-only")
    client.force_login(user)
    assert client.get(URL)["Location"].startswith(reverse("admin:login"))


def test_staff_without_view_permission_is_refused(client):
    user = get_user_model().objects.create_user("clerk", "c@example.com", "pw-for-tests-only", is_staff=True)
    client.force_login(user)
    assert client.get(URL).status_code == 403


def test_linked_from_the_runs_list_and_never_cached(admin_client, runs):
    assert URL.encode() in admin_client.get("/admin/newsletters/dailyrun/").content
    cache_control = admin_client.get(URL)["Cache-Control"]
    assert "private" in cache_control and "no-store" in cache_control
