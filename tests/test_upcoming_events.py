"""Upcoming events (issue 13): dividends, splits and earnings of the next 10 sessions, fetched in bulk by date
window, stored per run, shown on the card and given to the analyst."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from markets import calendar
from markets.models import TickerEvent
from markets.providers.base import EVENT_KINDS, EventListing, MarketEvent
from markets.providers.demo import DEMO_FUNDS, DEMO_UNIVERSE, DemoProvider
from markets.providers.polygon import PolygonProvider
from markets.selectors import events_window, ticker_snapshots, upcoming_events
from markets.services import ticker_events_refresh
from markets.snapshots import UpcomingEvent
from newsletters.analysts.grounding import ungrounded_numbers
from newsletters.analysts.llm import prompt_facts
from newsletters.compose import email_compose, issue_content_build
from newsletters.models import DailyRun
from newsletters.templatetags.newsletter_format import coming_up
from tests.fakes.polygon_server import Reply, polygon_configured
from tests.test_delivery_email import LINKS
from tests.test_llm_analyst import snapshot

DAY = dt.date(2026, 11, 20)  # a Friday; Thanksgiving (November 26) falls in the next 10 sessions
WINDOW_END = dt.date(2026, 12, 7)  # Nov 23, 24, 25, 27, 30, Dec 1, 2, 3, 4, 7
RECORDED = Path(__file__).resolve().parent / "fixtures" / "polygon" / "v3_reference_dividends.json"
LISTINGS = ("/v3/reference/dividends", "/v3/reference/splits", "/benzinga/v1/earnings")


@pytest.fixture
def server(settings):
    with polygon_configured(settings, retries=1, as_provider=False) as fake:
        yield fake


@pytest.fixture
def polygon(server) -> PolygonProvider:
    return PolygonProvider(sleep=lambda s: None)


def stored() -> set[tuple]:
    return set(TickerEvent.objects.values_list("symbol", "kind", "date", "amount", "ratio"))


# -- the window ---------------------------------------------------------------------------------------------------


def test_the_window_is_the_next_10_sessions_across_the_weekend_and_the_holiday():
    assert calendar.holiday_name(dt.date(2026, 11, 26))
    start, end = events_window(DAY)
    assert start == dt.date(2026, 11, 21) and end == WINDOW_END
    assert len(calendar.trading_days_between(start, end)) == 10
    # From a Monday: no weekend or holiday in between, the 10th session is the next week's Friday.
    assert events_window(dt.date(2026, 12, 7)) == (dt.date(2026, 12, 8), dt.date(2026, 12, 21))


@pytest.mark.django_db
def test_snapshots_carry_the_window_s_events_soonest_first_from_one_query(django_assert_num_queries):
    now = dt.datetime(2026, 11, 20, 22, tzinfo=dt.UTC)
    rows = [
        ("AAPL", "earnings", DAY),  # the reported session itself: not coming
        ("AAPL", "dividend_pay", dt.date(2026, 12, 4)),
        ("AAPL", "ex_dividend", dt.date(2026, 12, 4)),
        ("AAPL", "split", dt.date(2026, 11, 27)),
        ("AAPL", "earnings", WINDOW_END),  # the 10th session: in
        ("AAPL", "earnings", WINDOW_END + dt.timedelta(days=1)),  # the 11th: out
        ("MSFT", "ex_dividend", dt.date(2026, 11, 23)),
    ]
    TickerEvent.objects.bulk_create(
        TickerEvent(symbol=s, kind=k, date=d, amount=0.26 if "div" in k else None, source="demo", refreshed_at=now)
        for s, k, d in rows
    )
    with django_assert_num_queries(1):
        events = upcoming_events(["AAPL", "MSFT", "NVDA"], DAY)
    assert [(e.kind, e.date) for e in events["AAPL"]] == [
        ("split", dt.date(2026, 11, 27)),
        ("ex_dividend", dt.date(2026, 12, 4)),
        ("dividend_pay", dt.date(2026, 12, 4)),
        ("earnings", WINDOW_END),
    ]
    assert "NVDA" not in events
    snapshots = ticker_snapshots(["AAPL", "MSFT", "NVDA"], DAY)
    assert snapshots["AAPL"].events == events["AAPL"]
    assert snapshots["MSFT"].events == (UpcomingEvent("ex_dividend", dt.date(2026, 11, 23), 0.26),)
    assert snapshots["NVDA"].events == ()


# -- Polygon: parsing, pagination, requests ---------------------------------------------------------------------------


def test_polygon_parses_the_recorded_dividend_shape_splits_and_earnings(server, polygon):
    server.dividends = json.loads(RECORDED.read_text())["results"]
    server.splits += [
        {"ticker": "NVDA", "execution_date": "2025-06-10", "split_from": 1, "split_to": 4},
        {"ticker": "XYZ", "execution_date": "2025-06-11", "split_from": 10, "split_to": 1},
        {"ticker": "OLD", "execution_date": "2025-05-01", "split_from": 1, "split_to": 2},
    ]
    server.add_earnings("AAPL", dt.date(2025, 6, 26))
    listing = polygon.upcoming_events(dt.date(2025, 6, 9), dt.date(2025, 6, 30))
    assert listing.listed == set(EVENT_KINDS) and not listing.skipped and not listing.failed
    assert listing.events == [
        MarketEvent("NVDA", "split", dt.date(2025, 6, 10), ratio="4-for-1"),
        MarketEvent("XYZ", "split", dt.date(2025, 6, 11), ratio="1-for-10"),
        MarketEvent("CSSEN", "ex_dividend", dt.date(2025, 6, 12), amount=0.59375),
        MarketEvent("AAPL", "earnings", dt.date(2025, 6, 26)),
        MarketEvent("CSSEN", "dividend_pay", dt.date(2025, 6, 30), amount=0.59375),
    ]
    assert listing.requests == 4
    (ex,) = [r.query for r in server.requests if r.query.get("ex_dividend_date.gte")]
    assert ex["ex_dividend_date.gte"] == ["2025-06-09"] and ex["ex_dividend_date.lte"] == ["2025-06-30"]
    assert ex["limit"] == ["1000"] and "ticker" not in ex  # by date window, never by ticker


def test_two_dividends_on_one_date_add_up_and_another_currency_shows_no_dollar_amount(server, polygon):
    server.add_dividend("KO", dt.date(2026, 11, 24), dt.date(2026, 12, 15), 0.51)
    server.add_dividend("KO", dt.date(2026, 11, 24), dt.date(2026, 12, 15), 1.0)  # a special dividend
    server.add_dividend("SHOP", dt.date(2026, 11, 25), dt.date(2026, 11, 30), 0.2, currency="CAD")
    events = {(e.symbol, e.kind): e for e in polygon.upcoming_events(dt.date(2026, 11, 21), WINDOW_END).events}
    assert events["KO", "ex_dividend"].amount == pytest.approx(1.51)
    assert ("KO", "dividend_pay") not in events  # paid after the window
    assert events["SHOP", "ex_dividend"].amount is None and events["SHOP", "dividend_pay"].amount is None


def test_polygon_follows_next_url_and_lists_each_dividend_once(server, polygon):
    server.event_page_cap = 2
    for i in range(5):
        # Both dates in the window: each dividend is in both listings.
        server.add_dividend(f"D{i}", dt.date(2026, 11, 23), dt.date(2026, 12, 1), 0.1 * (i + 1))
    listing = polygon.upcoming_events(dt.date(2026, 11, 21), WINDOW_END)
    assert server.count("/v3/reference/dividends") == 3 + 3  # three pages by ex-date, three by pay date
    assert sorted((e.symbol, e.kind) for e in listing.events) == sorted(
        (f"D{i}", kind) for i in range(5) for kind in ("ex_dividend", "dividend_pay")
    )
    follow_ups = [r.query for r in server.requests if r.query.get("cursor")]
    assert len(follow_ups) == 4 and all(set(q) == {"cursor"} for q in follow_ups)  # nothing of the first page's


@pytest.mark.django_db
def test_requests_do_not_grow_with_the_followed_tickers(server, polygon):
    everyone = [f"S{i:04d}" for i in range(2500)]
    for i, symbol in enumerate(everyone):
        server.add_dividend(symbol, dt.date(2026, 11, 23) + dt.timedelta(days=i % 12), dt.date(2026, 12, 30), 0.25)
    counts = {}
    for followed in (everyone[:20], everyone[:2000]):
        before = server.count()
        refresh = ticker_events_refresh(day=DAY, symbols=followed, provider=polygon)
        counts[len(followed)] = server.count() - before
        assert refresh.requests == counts[len(followed)] and not refresh.error
        assert refresh.stored == TickerEvent.objects.filter(symbol__in=followed).count() > 0
    # Three pages of 1,000 by ex-date, one by pay date, one of splits, one (refused) of earnings.
    assert counts[20] == counts[2000] == 6
    assert not TickerEvent.objects.filter(symbol=everyone[2400]).exists()  # only followed tickers are kept


# -- what the plan or the budget does not allow ------------------------------------------------------------------


@pytest.mark.django_db
def test_earnings_refused_by_the_plan_are_a_note_and_the_rest_is_stored(server, polygon):
    server.add_dividend("AAPL", dt.date(2026, 12, 4), dt.date(2026, 12, 11), 0.26)
    refresh = ticker_events_refresh(day=DAY, symbols=["AAPL"], provider=polygon)
    assert server.count("/benzinga/v1/earnings") == 1
    assert refresh.notes == ["earnings skipped: the plan does not include them (HTTP 403)"] and refresh.error == ""
    assert stored() == {("AAPL", "ex_dividend", dt.date(2026, 12, 4), 0.26, "")}


@pytest.mark.django_db
def test_a_spent_budget_skips_a_listing_with_a_note_and_a_failure_keeps_what_was_stored(server, polygon):
    server.add_dividend("AAPL", dt.date(2026, 12, 4), dt.date(2026, 12, 11), 0.26)
    server.add_earnings("AAPL", dt.date(2026, 12, 3))
    ticker_events_refresh(day=DAY, symbols=["AAPL"], provider=polygon)
    before = stored()
    assert {k for _, k, *_ in before} == {"ex_dividend", "earnings"}

    server.dividends.clear()
    server.earnings.clear()
    # Polygon asks to wait longer than any request may (the free plan's limit), then answers 500 to the pay dates.
    server.script("/v3/reference/dividends", Reply(429, {"status": "ERROR"}, headers={"Retry-After": "3600"}))
    server.script("/benzinga/v1/earnings", *[Reply(500, {"status": "ERROR", "request_id": "fake"})] * 2)
    refresh = ticker_events_refresh(day=DAY, symbols=["AAPL"], provider=polygon)
    assert refresh.notes == ["dividends by ex-date skipped: the request budget is spent (rate limited for 3600s "
                             "(Retry-After), more than allowed)"]  # fmt: skip
    assert refresh.error.startswith("earnings: HTTP 500")
    assert stored() == before  # neither the skipped nor the failed kind lost what it had


@pytest.mark.django_db
def test_a_provider_that_fails_outright_is_recorded_not_raised():
    class Broken(DemoProvider):
        def upcoming_events(self, start, end):
            raise ConnectionError("down")

    refresh = ticker_events_refresh(day=DAY, symbols=["AAPL"], provider=Broken())
    assert refresh.error == "upcoming events not refreshed: ConnectionError: down" and refresh.stored == 0


# -- storage: refresh, dedupe -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_refresh_replaces_the_window_so_a_cancelled_dividend_disappears(server, polygon):
    server.add_dividend("AAPL", dt.date(2026, 12, 4), dt.date(2026, 12, 11), 0.26)
    cancelled = server.add_dividend("MSFT", dt.date(2026, 11, 24), dt.date(2026, 12, 3), 0.91)
    server.splits.append({"ticker": "AAPL", "execution_date": "2026-11-30", "split_from": 1, "split_to": 4})
    server.splits.append({"ticker": "AAPL", "execution_date": "2026-11-30", "split_from": 1, "split_to": 4})  # twice
    first = ticker_events_refresh(day=DAY, symbols=["AAPL", "MSFT"], provider=polygon)
    assert first.stored == 4 and TickerEvent.objects.count() == 4
    kept = stored()
    assert ("AAPL", "split", dt.date(2026, 11, 30), None, "4-for-1") in kept

    again = ticker_events_refresh(day=DAY, symbols=["AAPL", "MSFT"], provider=polygon)
    assert again.stored == 4 and again.removed == 0 and stored() == kept  # idempotent

    server.dividends.remove(cancelled)
    later = ticker_events_refresh(day=DAY, symbols=["AAPL", "MSFT"], provider=polygon)
    assert later.removed == 2
    assert stored() == kept - {
        ("MSFT", "ex_dividend", dt.date(2026, 11, 24), 0.91, ""),
        ("MSFT", "dividend_pay", dt.date(2026, 12, 3), 0.91, ""),
    }


# -- the demo provider ----------------------------------------------------------------------------------------------


def test_demo_events_are_deterministic_and_agree_across_overlapping_windows():
    demo = DemoProvider()
    start, end = events_window(DAY)
    first = demo.upcoming_events(start, end)
    assert first == DemoProvider().upcoming_events(start, end) and first.listed == set(EVENT_KINDS)
    assert all(start <= e.date <= end and e.symbol in DEMO_UNIVERSE for e in first.events)
    assert first.events == sorted(first.events, key=lambda e: (e.date, EVENT_KINDS.index(e.kind), e.symbol))
    kinds = {e.kind for e in first.events}
    assert {"ex_dividend", "dividend_pay", "earnings"} <= kinds
    assert all(e.amount and e.amount > 0 for e in first.events if "dividend" in e.kind)
    assert not any(e.kind == "earnings" and e.symbol in DEMO_FUNDS for e in first.events)
    # Some tickers have events, not all of them.
    assert 0 < len({e.symbol for e in first.events}) < len(DEMO_UNIVERSE)
    wider = demo.upcoming_events(start - dt.timedelta(days=20), end + dt.timedelta(days=20))
    assert set(first.events) == {e for e in wider.events if start <= e.date <= end}
    # Every ex-date is a session; each dividend is paid two weeks later.
    year = demo.upcoming_events(dt.date(2026, 1, 1), dt.date(2026, 12, 31)).events
    assert all(calendar.is_trading_day(e.date) for e in year)
    earnings = [e.date for e in year if e.symbol == "AAPL" and e.kind == "earnings"]
    assert len(earnings) >= 4 and all(88 <= (b - a).days <= 94 for a, b in itertools.pairwise(earnings))  # quarterly


# -- the card -----------------------------------------------------------------------------------------------------


EVENTS = (
    UpcomingEvent("ex_dividend", dt.date(2026, 12, 4), amount=0.26),
    UpcomingEvent("split", dt.date(2026, 12, 7), ratio="4-for-1"),
    UpcomingEvent("earnings", dt.date(2026, 12, 10)),
    UpcomingEvent("dividend_pay", dt.date(2026, 12, 12), amount=0.26),
)


def test_the_coming_up_line_reads_like_the_issue_says():
    assert coming_up(EVENTS) == "Ex-dividend Dec 4, $0.26 · Split 4-for-1 Dec 7 · Earnings Dec 10 · Pays Dec 12"
    # The ex-date is past: the pay date carries the amount; odd amounts keep their decimals.
    assert coming_up([UpcomingEvent("dividend_pay", dt.date(2026, 12, 1), amount=0.59375)]) == "Pays Dec 1, $0.5938"
    assert coming_up([]) == ""


@pytest.mark.django_db
def test_events_are_on_the_card_in_html_and_text_and_nothing_shows_without_them():
    with_events = snapshot("AAPL", events=EVENTS)
    without = snapshot("MSFT")
    content = issue_content_build(day=DAY, snapshots={"AAPL": with_events, "MSFT": without}, analyses={})
    line = "Ex-dividend Dec 4, $0.26 · Split 4-for-1 Dec 7 · Earnings Dec 10 · Pays Dec 12"
    assert f"Coming up: {line}" in content.cards["AAPL"].text
    assert f"<b>Coming up:</b> {line}</p>" in content.cards["AAPL"].html
    assert "Coming up" not in content.cards["MSFT"].text and "Coming up" not in content.cards["MSFT"].html
    composed = email_compose(content=content, symbols=["AAPL", "MSFT"], email="x@example.com", links=LINKS)
    assert composed.html.count("Coming up") == composed.text.count("Coming up") == 1


# -- the analyst ----------------------------------------------------------------------------------------------------


def test_the_prompt_gets_the_events_and_grounding_accepts_their_numbers():
    plain = snapshot("AAPL")
    with_events = snapshot("AAPL", events=EVENTS)
    assert "upcoming_events" not in prompt_facts(plain)
    assert prompt_facts(with_events)["upcoming_events"] == [
        {"kind": "ex_dividend", "date": "2026-12-04", "cash_per_share": 0.26},
        {"kind": "split", "date": "2026-12-07", "ratio": "4-for-1"},
        {"kind": "earnings", "date": "2026-12-10"},
        {"kind": "dividend_pay", "date": "2026-12-12", "cash_per_share": 0.26},
    ]
    text = (
        "AAPL goes ex-dividend on December 4 ($0.26 a share), splits 4-for-1 on 2026-12-07 and reports "
        "earnings on December 10."
    )
    assert ungrounded_numbers(text, with_events) == []
    problems = " | ".join(ungrounded_numbers(text, plain))
    for written in ("December 4", "$0.26", "2026-12-07", "December 10", "4 is not"):
        assert written in problems
    assert ungrounded_numbers("It pays $0.31 on December 12.", with_events) == ["$0.31 is not a price in the data"]


# -- the daily job ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_daily_job_stores_events_a_dry_run_stores_none_and_a_failure_does_not_stop_email(
    monkeypatch, outbox, trading_day
):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat(), "--dry-run")
    assert not TickerEvent.objects.exists()

    def broken(self, start: dt.date, end: dt.date) -> EventListing:
        raise ConnectionError("the events service is down")

    monkeypatch.setattr(DemoProvider, "upcoming_events", broken)
    call_command("run_daily", "--date", trading_day.isoformat())
    run = DailyRun.objects.filter(dry_run=False).latest("started_at")
    assert run.status == DailyRun.Status.PARTIAL and set(run.errors) == {"events"}
    assert "the events service is down" in run.errors["events"]
    assert run.emails_sent > 0 and run.emails_failed == 0 and not TickerEvent.objects.exists()

    monkeypatch.undo()
    call_command("run_daily", "--date", trading_day.isoformat())
    run = DailyRun.objects.filter(dry_run=False).latest("started_at")
    assert run.status == DailyRun.Status.SUCCEEDED, run.errors
    assert TickerEvent.objects.exists() and set(TickerEvent.objects.values_list("source", flat=True)) == {"demo"}
    start, end = events_window(trading_day)
    assert not TickerEvent.objects.exclude(date__gte=start, date__lte=end).exists()


@pytest.mark.django_db
def test_staff_see_the_stored_events_and_cannot_edit_them(admin_client):
    now = dt.datetime(2026, 11, 20, 22, tzinfo=dt.UTC)
    event = TickerEvent.objects.create(
        symbol="KO", kind="ex_dividend", date=dt.date(2026, 11, 24), amount=0.51, source="polygon", refreshed_at=now
    )
    page = admin_client.get(reverse("admin:markets_tickerevent_changelist") + "?q=KO").content.decode()
    assert "ex dividend" in page and "0.51" in page
    assert admin_client.get(reverse("admin:markets_tickerevent_add")).status_code == 403
    change = admin_client.get(reverse("admin:markets_tickerevent_change", args=[event.pk])).content.decode()
    assert 'name="_save"' not in change
