"""The back office on a 1280-px laptop screen, in Chromium: the runs dashboard and the deliveries list fit the
window (no sideways scrolling). Screenshots go to test-artifacts/browser/staff/."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.urls import reverse

from newsletters.models import DailyRun, Delivery
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create
from tests.test_subscriber_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, sync_api
from tests.test_subscriber_browser import pytestmark as browser_marks

pytestmark = [*browser_marks]

# The page, and the admin's result list (which would otherwise scroll sideways inside its own box).
FITS = """() => {
  const list = document.querySelector('#result_list');
  const box = list ? list.parentElement : null;
  return [Math.max(document.documentElement.scrollWidth, list ? list.scrollWidth + (box.scrollWidth - box.clientWidth) : 0),
          document.documentElement.clientWidth];
}"""


def test_dashboard_and_deliveries_fit_a_laptop_screen(transactional_db, live_server, trading_day, outbox):
    get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-for-tests-only")
    for n in range(3):
        subscriber_create(
            email=f"reader{n}@a-rather-long-domain-name.example.com",
            symbols=["AAPL", "MSFT", "NVDA"],
            status=Subscriber.Status.ACTIVE,
        )
    call_command("run_daily", "--date", trading_day.isoformat())
    Delivery.objects.filter(pk=Delivery.objects.first().pk).update(
        status=Delivery.Status.FAILED, error="send: " + "MessageRejected: Email address is not verified. " * 4
    )
    for back in range(1, 31):
        DailyRun.objects.create(
            date=trading_day - dt.timedelta(days=back), status="succeeded", emails_sent=1000 + back, emails_failed=back
        )
    shots = SHOTS / "staff"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(live_server.url + reverse("admin:login"))
                page.fill("#id_username", "boss")
                page.fill("#id_password", "pw-for-tests-only")
                page.click("input[type=submit]")
                widths = {}
                for name, url in [
                    ("dashboard", reverse("admin:newsletters_dailyrun_dashboard")),
                    ("deliveries", reverse("admin:newsletters_delivery_changelist")),
                    ("runs", reverse("admin:newsletters_dailyrun_changelist")),
                    ("subscribers", reverse("admin:subscriptions_subscriber_changelist")),
                ]:
                    page.goto(live_server.url + url)
                    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                    widths[name] = page.evaluate(FITS)
            finally:
                browser.close()
    finally:
        connections.close_all()
    for name, (scroll, client) in widths.items():
        assert scroll <= client, f"the {name} page is {scroll}px wide in a {client}px window"
