"""Staff remove bad bars from the admin; the shared table and its indicators follow."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from markets.models import DailyBar
from markets.providers.demo import DemoProvider
from markets.services import market_data_update
from markets.shared_tables.database import DatabaseSharedTables

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 11, 20)


def test_delete_selected_bars_recomputes_the_series(admin_client):
    tables = DatabaseSharedTables()
    market_data_update(day=DAY, symbols=["AAPL"], provider=DemoProvider(), shared_tables=tables)
    bars = list(DailyBar.objects.filter(ticker__symbol="AAPL").order_by("-date")[:3])
    bad = bars[1]  # the day before the latest
    response = admin_client.post(
        reverse("admin:markets_dailybar_changelist"),
        {"action": "delete_and_recompute", "_selected_action": [bad.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Deleted 1 bars of 1 tickers" in response.content.decode()
    assert not DailyBar.objects.filter(pk=bad.pk).exists()
    shared = {i["date"]: i for i in tables.get_series("AAPL")}
    assert bad.date.isoformat() not in shared
    latest = shared[bars[0].date.isoformat()]
    assert latest["change_pct"] == pytest.approx((bars[0].close / bars[2].close - 1) * 100, abs=1e-6)


def test_plain_delete_is_not_offered_and_flags_can_be_cleared(admin_client):
    market_data_update(day=DAY, symbols=["MSFT"], provider=DemoProvider(), shared_tables=DatabaseSharedTables())
    bar = DailyBar.objects.filter(ticker__symbol="MSFT").latest("date")
    DailyBar.objects.filter(pk=bar.pk).update(flagged="unusual move")
    url = reverse("admin:markets_dailybar_changelist")
    page = admin_client.get(url + "?flagged=yes").content.decode()
    assert "delete_selected" not in page and "delete_and_recompute" in page and "unusual move" in page
    admin_client.post(url, {"action": "clear_flag", "_selected_action": [bar.pk]})
    bar.refresh_from_db()
    assert bar.flagged == ""


def test_refetch_history_action(admin_client):
    from markets.models import Ticker

    ticker = Ticker.objects.create(symbol="NVDA")
    unknown = Ticker.objects.create(symbol="ZZZZ")
    response = admin_client.post(
        reverse("admin:markets_ticker_changelist"),
        {"action": "refetch_history", "_selected_action": [ticker.pk, unknown.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "NVDA: history fetched again and republished." in page
    assert "ZZZZ: the provider returned no history" in page
    assert DailyBar.objects.filter(ticker=ticker).count() == 400
