"""Workers share the issue's content: the first one to need it builds it, the others take its copy from the cache."""

from __future__ import annotations

import pytest

from newsletters import dispatch
from newsletters.delivery import issue_ensure
from newsletters.services import issue_content_for
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def issue(trading_day, fresh_cache):
    for i, symbols in enumerate((["AAPL"], ["MSFT", "AAPL"])):
        subscriber_create(email=f"s{i}@example.com", symbols=symbols, status=Subscriber.Status.ACTIVE)
    issue_content_for(day=trading_day, symbols=["AAPL", "MSFT"], refresh=True)  # the day's bars and analyses
    dispatch._content.clear()
    yield issue_ensure(day=trading_day, demo=True)
    dispatch._content.clear()


@pytest.fixture
def builds(monkeypatch) -> list[list[str]]:
    """The symbols of every build of the content from the database (a spy around the real build)."""
    seen: list[list[str]] = []
    real = dispatch.issue_content_stored

    def spy(*, day, symbols):
        seen.append(list(symbols))
        return real(day=day, symbols=symbols)

    monkeypatch.setattr(dispatch, "issue_content_stored", spy)
    return seen


def test_a_second_worker_takes_the_content_the_first_one_built(issue, builds):
    first = dispatch.issue_content_cached(issue=issue, symbols=["AAPL"], run_id=7)
    dispatch._content.clear()  # another worker process: nothing of its own yet
    second = dispatch.issue_content_cached(issue=issue, symbols=["MSFT"], run_id=7)

    assert builds == [["AAPL", "MSFT"]], "built once, for every followed ticker"
    assert second.cards == first.cards and second.charts == first.charts
    assert second is not first, "a copy, as another process gets it"


def test_a_new_run_builds_the_content_afresh(issue, builds):
    dispatch.issue_content_cached(issue=issue, symbols=["AAPL"], run_id=7)
    dispatch._content.clear()
    dispatch.issue_content_cached(issue=issue, symbols=["AAPL"], run_id=8)
    assert len(builds) == 2, "a rerun after a fix (new bars, new analyses) never reuses the earlier run's cards"


def test_without_the_cache_each_worker_builds_its_own(issue, builds, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("the cache is down")

    monkeypatch.setattr(dispatch.cache, "get", down)
    monkeypatch.setattr(dispatch.cache, "set", down)
    content = dispatch.issue_content_cached(issue=issue, symbols=["AAPL"], run_id=7)
    assert "AAPL" in content.cards and len(builds) == 1


def test_a_worker_archives_each_chart_of_the_issue_once_across_its_batches(issue, monkeypatch, archive_dir):
    from newsletters import archive
    from newsletters.delivery import deliveries_plan
    from newsletters.models import Delivery

    saved: list[str] = []
    real_save = archive._save

    def spy(storage, key, data):
        saved.append(key)
        return real_save(storage, key, data)

    monkeypatch.setattr(archive, "_save", spy)
    dispatch._charts.clear()
    deliveries_plan(issue=issue)
    ids = list(Delivery.objects.filter(issue=issue).order_by("id").values_list("id", flat=True))

    for batch in ([ids[0]], [ids[1]]):  # two batches, one task each, in the same worker process
        stage = dispatch.batch_deliver(issue_id=issue.pk, delivery_ids=batch, run_id=7)
        assert stage.sent == 1

    charts = [key for key in saved if "/charts/" in key]
    assert charts, "the emails show charts"
    assert len(charts) == len(set(charts)), f"a chart archived again by the second batch: {sorted(charts)}"
    assert len([key for key in saved if key.endswith(".eml")]) == 2
