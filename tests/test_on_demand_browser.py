""" "Send me the latest issue now" in a real browser (Debian's Chromium, headless): the button on the preferences
page, the job page polling its status while a worker is busy, then "in your inbox"; screenshots in
test-artifacts/browser/send-now-*.png."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from newsletters.jobs import send_job_run
from newsletters.models import SendJob
from subscriptions import links
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create
from tests.test_subscriber_browser import SHOTS, browser, local  # noqa: F401 - the fixture, shared
from tests.test_subscriber_browser import pytestmark as browser_marks

pytestmark = browser_marks


@pytest.fixture
def queued(settings, monkeypatch):
    """A broker that takes the job and holds it until the test plays the worker."""
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/1"
    taken: list[int] = []
    monkeypatch.setattr("newsletters.tasks.send_job.delay", taken.append)
    return taken


def test_the_button_shows_the_job_progress_until_sent(
    transactional_db,
    live_server,
    browser,  # noqa: F811
    outbox,
    queued,
    trading_day,
    monkeypatch,
):
    monkeypatch.setattr("markets.calendar.latest_completed_session", lambda *a, **k: trading_day)
    ann = subscriber_create(email="ann@example.com", symbols=["AAPL", "MSFT"], status=Subscriber.Status.ACTIVE)
    call_command("run_daily", "--date", trading_day.isoformat(), "--stage", "data")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    page.goto(local(links.preferences_url(ann.pk), live_server))
    page.get_by_role("button", name="Send me the latest issue now").click()
    status = page.locator("[data-job-status]")
    assert status.inner_text() == "Queued"
    page.screenshot(path=str(SHOTS / "send-now-queued.png"), full_page=True)

    (job_id,) = queued
    send_job_run(job_id=job_id)  # the worker
    page.locator("[data-job-status]", has_text="Sent").wait_for(timeout=15_000)
    assert "in your inbox" in page.locator("[data-job-message]").inner_text()
    page.screenshot(path=str(SHOTS / "send-now-sent.png"), full_page=True)
    assert SendJob.objects.get().status == SendJob.Status.SENT
    assert len(list(outbox.glob("*.eml"))) == 1
