"""The stop mechanism as a Celery worker would use it, and the erase that finds copies no row points at yet."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command
from django.core.management.base import CommandError

from newsletters.archive import archive_prefix, archive_write
from newsletters.delivery import deliveries_plan, deliveries_send, issue_ensure
from newsletters.models import DailyRun, Delivery
from newsletters.services import issue_content_for
from newsletters.stopping import StopFlag
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create, subscriber_erase

pytestmark = pytest.mark.django_db

STOP = StopFlag()


class StopsAfterThree(BaseEmailBackend):
    """Accepts messages; the third one asks the process to stop, as a worker's warm shutdown would, from
    another thread than the one running deliveries_send."""

    accepted: list[str] = []
    lock = threading.Lock()

    def send_messages(self, messages) -> int:
        for message in messages:
            with self.lock:
                self.accepted.append(message.to[0])
                if len(self.accepted) == 3:
                    STOP.request("worker shutting down")
        return len(messages)


def test_a_stop_requested_mid_send_finishes_what_is_in_flight_and_leaves_the_rest_pending(settings, trading_day):
    settings.EMAIL_BACKEND = "tests.test_delivery_stop.StopsAfterThree"
    settings.SES_SEND_CONCURRENCY = 2
    StopsAfterThree.accepted = []
    STOP.clear()
    for i in range(12):
        subscriber_create(email=f"s{i:02d}@example.com", symbols=["AAPL"], status=Subscriber.Status.ACTIVE)
    issue = issue_ensure(day=trading_day, demo=True)
    deliveries_plan(issue=issue)
    content = issue_content_for(day=trading_day, symbols=["AAPL"], refresh=True)

    stage = deliveries_send(issue=issue, content=content, stop=STOP)

    assert stage.interrupted == "worker shutting down"
    statuses = dict(Delivery.objects.filter(issue=issue).values_list("subscriber__email", "status"))
    sent = {email for email, status in statuses.items() if status == "sent"}
    assert sent == set(StopsAfterThree.accepted), "each message the backend took is recorded as sent, no other"
    assert 3 <= len(sent) <= 3 + 2 * 2, "at most the two windows already handed out finish after the stop"
    assert set(statuses.values()) == {"sent", "pending"}, "nothing left claimed or in flight"

    STOP.clear()
    stage = deliveries_send(issue=issue, content=content, stop=STOP)
    assert sorted(StopsAfterThree.accepted) == sorted(statuses), "the rest goes later, nobody twice"


def test_an_erase_removes_archived_copies_no_row_points_at_yet(
    trading_day, archive_dir, django_capture_on_commit_callbacks
):
    """A run killed between archiving a message and recording it leaves a copy the row does not name."""
    subscriber = subscriber_create(email="gone@example.com", symbols=["KO"], status=Subscriber.Status.ACTIVE)
    issue = issue_ensure(day=trading_day, demo=True)
    deliveries_plan(issue=issue)
    delivery = Delivery.objects.get(subscriber=subscriber)
    key = archive_write(day=trading_day, token=str(delivery.token), html="<p>hi gone@example.com</p>", mime=b"x")
    assert key == f"{archive_prefix(trading_day, str(delivery.token))}.html" and delivery.archive_key == ""

    with django_capture_on_commit_callbacks(execute=True):
        subscriber_erase(subscriber=subscriber)

    assert list(archive_dir.rglob(f"{delivery.token}*")) == []


def test_a_signal_outside_sending_unwinds_at_once_and_inside_only_asks_to_stop():
    from newsletters.stopping import Stopped, stop, stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        with pytest.raises(Stopped, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs here and raises
        stop.clear()
        with stop.graceful():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert stop and stop.reason == "received SIGINT", "in a graceful section a signal only sets the flag"
    stop.clear()
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is back"


def test_sigterm_during_analysis_ends_the_run_interrupted_with_nothing_sent(trading_day, monkeypatch, outbox):
    import newsletters.pipeline

    real = newsletters.pipeline.analyses_ensure

    def analyses_then_sigterm(**kwargs):
        result = real(**kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # ECS stopping the task while the analysis stage ends
        time.sleep(5)
        return result

    monkeypatch.setattr(newsletters.pipeline, "analyses_ensure", analyses_then_sigterm)
    subscriber_create(email="reader@example.com", symbols=["AAPL"], status=Subscriber.Status.ACTIVE)
    with pytest.raises(CommandError, match="interrupted") as stopped:
        call_command("run_daily", "--date", trading_day.isoformat())

    assert "\n" not in str(stopped.value)
    assert DailyRun.objects.get().status == DailyRun.Status.INTERRUPTED
    assert not outbox.exists() or not list(outbox.glob("*.eml")), "nothing sent"
    assert not Delivery.objects.exists(), "nothing planned"


def test_a_large_batch_skipped_whole_is_recorded(trading_day):
    """A whole batch of subscribers who paused after planning: every one recorded as skipped, nothing sent."""
    from markets.services import ticker_ensure

    Subscriber.objects.bulk_create(
        [Subscriber(email=f"p{i:05d}@example.com", status=Subscriber.Status.ACTIVE) for i in range(2100)]
    )
    aapl = ticker_ensure(symbol="AAPL")
    Follows = Subscriber.tickers.through
    Follows.objects.bulk_create(
        [Follows(subscriber_id=sid, ticker_id=aapl.id) for sid in Subscriber.objects.values_list("id", flat=True)]
    )
    issue = issue_ensure(day=trading_day, demo=True)
    deliveries_plan(issue=issue)
    Subscriber.objects.update(status=Subscriber.Status.PAUSED)  # paused after planning
    content = issue_content_for(day=trading_day, symbols=["AAPL"], refresh=True)

    stage = deliveries_send(issue=issue, content=content, batch_size=2100, stop=StopFlag())

    assert stage.skipped == 2100
    assert Delivery.objects.filter(issue=issue, status=Delivery.Status.SKIPPED).count() == 2100


def test_a_run_left_running_is_marked_killed_but_a_run_the_workers_finish_is_not(trading_day):
    from newsletters.dispatch import QUEUED
    from newsletters.models import DailyRun
    from newsletters.pipeline import runs_mark_killed

    killed = DailyRun.objects.create(date=trading_day, status=DailyRun.Status.RUNNING)
    queued = DailyRun.objects.create(
        date=trading_day, status=DailyRun.Status.RUNNING, summary=f"{trading_day} {QUEUED}: 40 emails"
    )
    assert runs_mark_killed(day=trading_day) == [killed]
    killed.refresh_from_db()
    queued.refresh_from_db()
    assert killed.status == DailyRun.Status.INTERRUPTED and queued.status == DailyRun.Status.RUNNING
