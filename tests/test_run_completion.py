"""When the workers' day counts as done: never while a worker still holds a claimed batch it is composing."""

from __future__ import annotations

import pytest

from newsletters.delivery import deliveries_plan, issue_ensure
from newsletters.dispatch import QUEUED, deliveries_wait, run_complete_if_done
from newsletters.models import DailyRun, Delivery
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def day_with_two_batches(trading_day):
    """Four deliveries: a worker has sent one batch of two, and another worker has claimed the other two."""
    for i in range(4):
        subscriber_create(email=f"w{i}@example.com", symbols=["AAPL"], status=Subscriber.Status.ACTIVE)
    run = DailyRun.objects.create(
        date=trading_day, status=DailyRun.Status.RUNNING, summary=f"{trading_day} {QUEUED}: 4 emails"
    )
    issue = issue_ensure(day=trading_day, demo=True)
    deliveries_plan(issue=issue)
    ids = list(Delivery.objects.filter(issue=issue).order_by("id").values_list("id", flat=True))
    Delivery.objects.filter(id__in=ids[:2]).update(status=Delivery.Status.SENT)
    Delivery.objects.filter(id__in=ids[2:]).update(status=Delivery.Status.CLAIMED)
    return run, issue


def test_the_last_batch_finished_records_the_run_only_once_no_batch_is_still_claimed(day_with_two_batches):
    run, issue = day_with_two_batches

    assert run_complete_if_done(run_id=run.id) is False, "the claimed batch is still being composed"
    run.refresh_from_db()
    assert run.status == DailyRun.Status.RUNNING and run.finished_at is None

    Delivery.objects.filter(issue=issue, status=Delivery.Status.CLAIMED).update(status=Delivery.Status.SENT)
    assert run_complete_if_done(run_id=run.id) is True
    run.refresh_from_db()
    assert run.status == DailyRun.Status.SUCCEEDED and run.emails_sent == 4


def test_a_waiting_run_does_not_take_a_claimed_batch_for_finished(day_with_two_batches):
    run, issue = day_with_two_batches
    ids = list(Delivery.objects.filter(issue=issue).values_list("id", flat=True))

    tally = deliveries_wait(issue=issue, ids=ids, since=run.started_at, poll=0.01, stall_seconds=0.05)

    assert tally.unfinished == 2, "it stopped waiting on the stall, with the claimed batch still to come"
    assert tally.sent == 2


@pytest.mark.parametrize(
    "pick",
    [
        pytest.param(lambda ids: ids, id="a day planned in one go"),
        pytest.param(lambda ids: ids[3:9] + ids[12:], id="a rerun with holes"),
        pytest.param(lambda ids: ids[::2], id="scattered, listed one by one"),
        pytest.param(lambda ids: [], id="none"),
    ],
)
def test_the_queued_ids_are_matched_exactly_whatever_their_runs(trading_day, pick, monkeypatch):
    import newsletters.dispatch as dispatch

    monkeypatch.setattr(dispatch, "ID_RUNS_MAX", 4)
    for i in range(20):
        subscriber_create(email=f"q{i}@example.com", symbols=["AAPL"], status=Subscriber.Status.ACTIVE)
    issue = issue_ensure(day=trading_day, demo=True)
    deliveries_plan(issue=issue)
    queued = pick(list(Delivery.objects.order_by("id").values_list("id", flat=True)))

    rows = Delivery.objects.filter(dispatch.ids_matching(queued))

    assert sorted(rows.values_list("id", flat=True)) == sorted(queued)


def test_a_day_planned_in_one_go_is_counted_by_range_not_by_listing_every_id(trading_day):
    from newsletters.dispatch import ids_matching

    sql, params = Delivery.objects.filter(ids_matching(list(range(1000, 101_000)))).query.sql_with_params()
    assert "BETWEEN" in sql and len(params) == 2
