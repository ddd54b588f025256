"""Market data "right or nothing", through the real Polygon adapter against the fake server and `run_daily`.

A session whose data cannot be had sends nobody anything and fails (so the scheduler retries); a rerun after
recovery sends everyone the real issue. A single ticker that fails while the market answers is "data unavailable
today". A closure the provider announces is skipped. The shared tables failing never stops email, and what was
not published goes out with the next run. A dry run writes no shared table and never calls the model.
"""

from __future__ import annotations

import datetime as dt
import email
import math
from email import policy
from pathlib import Path

import boto3
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from moto import mock_aws

from markets import calendar
from markets.models import SharedTickerAnalysis, SharedTickerData, Ticker
from newsletters.models import Analysis, DailyRun, Delivery, Issue
from subscriptions.models import Subscriber
from subscriptions.selectors import followed_symbols
from subscriptions.services import subscriber_create
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.polygon_server import FakePolygon

pytestmark = pytest.mark.django_db

PREVIOUS = dt.date(2026, 11, 19)
DAY = dt.date(2026, 11, 20)  # a Friday
NEXT = dt.date(2026, 11, 23)
ACTIVE = 5  # seed_demo's active subscribers


@pytest.fixture
def polygon(settings):
    server = FakePolygon().start()
    cache.clear()
    settings.POLYGON_API_KEY = "test-key"
    settings.POLYGON_BASE_URL = server.url
    settings.POLYGON_REQUESTS_PER_MINUTE = 600_000
    settings.POLYGON_RETRIES = 1
    settings.POLYGON_CONNECT_TIMEOUT = 0.5
    settings.POLYGON_READ_TIMEOUT = 0.5
    settings.MARKET_DATA_PROVIDER = "markets.providers.polygon.PolygonProvider"
    yield server
    server.stop()
    cache.clear()


def emails(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]


def text_of(message: email.message.EmailMessage) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def yesterday_sent(server: FakePolygon, outbox: Path) -> None:
    """Demo subscribers, a market on the fake server, and the issue of the session before DAY sent."""
    call_command("seed_demo", "--quiet")
    server.add_random_walks(followed_symbols(), calendar.trading_days_ending(NEXT, 430))
    call_command("run_daily", "--date", PREVIOUS.isoformat())
    assert DailyRun.objects.get(date=PREVIOUS).status == DailyRun.Status.SUCCEEDED
    assert len(emails(outbox)) == ACTIVE


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("down", "could not be had"),
        ("500", "HTTP 500"),
        ("garbage", "malformed JSON"),
        ("hang", "could not be had"),
        ("unpublished", f"no data published yet for {DAY.isoformat()}"),
    ],
)
def test_no_market_data_sends_nothing_fails_and_a_rerun_after_recovery_sends_everyone(polygon, outbox, fault, reason):
    yesterday_sent(polygon, outbox)
    if fault == "down":
        polygon.down()
    else:
        polygon.fault("/v2/aggs/grouped/", fault, hang=3.0)

    with pytest.raises(CommandError) as failure:
        call_command("run_daily", "--date", DAY.isoformat())
    message = str(failure.value)
    assert "\n" not in message and message.startswith(f"run for {DAY.isoformat()} failed: nothing sent")
    assert reason in message
    run = DailyRun.objects.get(date=DAY)
    assert run.status == DailyRun.Status.FAILED and reason in run.errors["run"]
    # Nothing planned, nothing sent: the failure never reaches a reader as "no new data".
    assert not Delivery.objects.filter(issue__date=DAY).exists()
    assert len(emails(outbox)) == ACTIVE

    if fault == "down":
        polygon.up()
    polygon.heal()
    call_command("run_daily", "--date", DAY.isoformat())
    rerun = DailyRun.objects.filter(date=DAY).latest("started_at")
    assert rerun.status == DailyRun.Status.SUCCEEDED, rerun.errors
    assert rerun.emails_sent == ACTIVE
    today = [m for m in emails(outbox) if f"{DAY:%b} {DAY.day}:" in m["Subject"]]
    assert len(today) == ACTIVE
    for message in today:
        assert "No new market data" not in message["Subject"]
        assert "No new data" not in text_of(message) and "unavailable" not in text_of(message)


def test_a_ticker_failing_while_the_market_answers_is_data_unavailable_not_stale(polygon, outbox):
    yesterday_sent(polygon, outbox)
    polygon.add_random_walks(["NEWCO"], calendar.trading_days_ending(NEXT, 430), seed=11)
    subscriber_create(email="newco@example.com", symbols=["AAPL", "NEWCO", "KO"], status=Subscriber.Status.ACTIVE)
    # Off the calendar of the grouped answer for KO: no trade that day, "no new data" (stale).
    del polygon.bars["KO"][DAY]
    polygon.fault("/v2/aggs/ticker/NEWCO/", "500")  # its first history cannot be had

    call_command("run_daily", "--date", DAY.isoformat())
    run = DailyRun.objects.get(date=DAY)
    assert run.status == DailyRun.Status.PARTIAL and "HTTP 500" in run.errors["data"]["NEWCO"]
    assert run.emails_sent == ACTIVE + 1
    (mail,) = [m for m in emails(outbox) if m["To"] == "newco@example.com"]
    text = text_of(mail)
    cards = {card.split(" ", 1)[0]: card for card in text.split("\n\n")}
    newco = cards["NEWCO"]
    assert "Data unavailable today" in newco and "No new data" not in newco
    assert "$" not in newco and "RSI" not in newco  # no number is shown for it
    ko = cards["KO"]
    assert "No new data" in ko and "unavailable" not in ko
    assert "1 with data unavailable today" in text and "1 without new data" in text
    html = mail.get_body(("html",)).get_content()
    assert "Data unavailable today: we could not get NEWCO" in html
    assert "chart-newco@walter" not in html


@pytest.mark.parametrize("extra", [0, 1])
def test_more_than_the_allowed_share_of_tickers_failing_sends_nothing(polygon, outbox, settings, extra):
    yesterday_sent(polygon, outbox)
    symbols = followed_symbols()
    allowed = math.floor(settings.DATA_MAX_FAILED_SHARE * len(symbols))
    for symbol in symbols[: allowed + extra]:
        polygon.set_bar(symbol, DAY, 10.0, 9.0, 11.0, 10.0, 1000)  # high below low: rejected

    if extra:
        with pytest.raises(CommandError, match=f"{allowed + 1} of {len(symbols)} followed tickers"):
            call_command("run_daily", "--date", DAY.isoformat())
        assert DailyRun.objects.get(date=DAY).status == DailyRun.Status.FAILED
        assert not Issue.objects.filter(date=DAY).exists()
    else:
        call_command("run_daily", "--date", DAY.isoformat())
        run = DailyRun.objects.get(date=DAY)
        assert run.status == DailyRun.Status.PARTIAL and run.emails_sent == ACTIVE


def test_a_closure_the_provider_announces_sends_nothing_and_says_why(polygon, outbox, capsys):
    yesterday_sent(polygon, outbox)
    # Announced after the list was last fetched (it is cached for a day), and the market has no data for it.
    polygon.holidays = [{"exchange": "NYSE", "name": "Day of Mourning", "date": DAY.isoformat(), "status": "closed"}]
    polygon.fault("/v2/aggs/grouped/", "unpublished")
    capsys.readouterr()

    call_command("run_daily", "--date", DAY.isoformat())  # exit 0: nothing to retry
    out = capsys.readouterr().out
    assert f"market closed on {DAY.isoformat()} (Day of Mourning)" in out and "Nothing sent" in out
    assert "every subscriber already has" not in out
    run = DailyRun.objects.get(date=DAY)
    assert run.status == DailyRun.Status.SKIPPED
    assert not Issue.objects.filter(date=DAY).exists() and len(emails(outbox)) == ACTIVE

    # Once known, the closure is remembered: the next run skips before asking for market data.
    before = polygon.count("/v2/aggs/")
    call_command("run_daily", "--date", DAY.isoformat())
    assert polygon.count("/v2/aggs/") == before
    assert DailyRun.objects.filter(date=DAY, status=DailyRun.Status.SKIPPED).count() == 2


@pytest.fixture
def dynamodb(polygon, settings, aws_env):
    settings.SHARED_TABLES_BACKEND = "markets.shared_tables.dynamodb.DynamoDBSharedTables"
    settings.SHARED_TABLES_STAGE = "faults"
    settings.DYNAMODB_ENDPOINT_URL = ""
    settings.DYNAMODB_MAX_ATTEMPTS = 2
    with mock_aws():
        call_command("create_shared_tables")
        yield boto3.resource("dynamodb", region_name="us-east-1")


def test_the_shared_table_failing_never_stops_email_and_is_caught_up_next_run(polygon, dynamodb, outbox):
    yesterday_sent(polygon, outbox)
    table = dynamodb.Table("ticker-data-faults")
    table.delete()
    table.wait_until_not_exists()

    call_command("run_daily", "--date", DAY.isoformat())
    run = DailyRun.objects.get(date=DAY)
    assert run.status == DailyRun.Status.PARTIAL and run.emails_sent == ACTIVE
    assert "ResourceNotFoundException" in run.errors["shared_tables"]
    assert set(Ticker.objects.filter(symbol__in=followed_symbols()).values_list("published_through", flat=True)) == {
        PREVIOUS
    }

    call_command("create_shared_tables")  # the table is back
    call_command("run_daily", "--date", NEXT.isoformat())
    assert DailyRun.objects.get(date=NEXT).status == DailyRun.Status.SUCCEEDED
    for symbol in followed_symbols():
        dates = [
            i["date"]
            for i in table.query(KeyConditionExpression="ticker = :t", ExpressionAttributeValues={":t": symbol})[
                "Items"
            ]
        ]
        assert dates == [DAY.isoformat(), NEXT.isoformat()], symbol  # the missed session went out too


def test_dry_run_writes_no_shared_table_and_never_calls_the_model(polygon, outbox, archive_dir, settings):
    llm = FakeOpenAI().start()
    try:
        settings.NEWSLETTER_ANALYST = "newsletters.analysts.llm.LLMAnalyst"
        settings.LLM_BASE_URL = llm.url
        settings.LLM_API_KEY = "test"
        settings.LLM_MODEL = "fake-model"
        settings.LLM_REQUESTS_PER_MINUTE = 600_000
        call_command("seed_demo", "--quiet")
        polygon.add_random_walks(followed_symbols(), calendar.trading_days_ending(NEXT, 430))

        call_command("run_daily", "--date", DAY.isoformat(), "--dry-run")
        run = DailyRun.objects.get(date=DAY)
        assert run.status == DailyRun.Status.SUCCEEDED, run.errors
        assert (
            run.emails_would_send == ACTIVE
            and run.emails_skipped == 0
            and run.analyses_fallback == len(followed_symbols())
        )
        assert llm.count() == 0
        assert not SharedTickerData.objects.exists() and not SharedTickerAnalysis.objects.exists()
        assert not Analysis.objects.exists() and not Issue.objects.exists()
        assert not list(outbox.glob("*")) and not list(archive_dir.rglob("*.*"))
    finally:
        llm.stop()


def test_the_delivery_stage_alone_sends_nothing_without_the_session_data(polygon, outbox):
    yesterday_sent(polygon, outbox)
    polygon.fault("/v2/aggs/grouped/", "unpublished")
    with pytest.raises(CommandError, match="no data published yet"):
        call_command("run_daily", "--date", DAY.isoformat(), "--stage", "data")

    with pytest.raises(CommandError) as failure:
        call_command("run_daily", "--date", DAY.isoformat(), "--stage", "delivery")
    followed = len(followed_symbols())
    assert f"{followed} of {followed} followed tickers have no data for {DAY.isoformat()}" in str(failure.value)
    assert not Delivery.objects.filter(issue__date=DAY).exists() and len(emails(outbox)) == ACTIVE

    polygon.heal()
    call_command("run_daily", "--date", DAY.isoformat(), "--stage", "data")
    call_command("run_daily", "--date", DAY.isoformat(), "--stage", "delivery")
    assert Delivery.objects.filter(issue__date=DAY, status=Delivery.Status.SENT).count() == ACTIVE


def test_the_delivery_stage_alone_still_says_data_unavailable(polygon, outbox):
    yesterday_sent(polygon, outbox)
    polygon.set_bar("AAPL", DAY, 10.0, 9.0, 11.0, 10.0, 1000)  # high below low: rejected
    call_command("run_daily", "--date", DAY.isoformat(), "--stage", "data")
    call_command("run_daily", "--date", DAY.isoformat(), "--stage", "delivery")
    (mail,) = [m for m in emails(outbox) if m["To"] == "ada@example.com" and f"{DAY:%b} {DAY.day}:" in m["Subject"]]
    cards = {card.split(" ", 1)[0]: card for card in text_of(mail).split("\n\n")}
    assert "Data unavailable today" in cards["AAPL"] and "$" not in cards["AAPL"]


def test_the_subject_tells_unavailable_from_no_new_data():
    from dataclasses import replace

    from markets.snapshots import TickerSnapshot
    from newsletters.compose import subject_line

    failed = TickerSnapshot(
        symbol="AAPL",
        name="Apple Inc.",
        date=DAY,
        as_of=PREVIOUS,
        close=120.0,
        previous_close=118.0,
        change_pct=1.7,
        rsi14=None,
        sma50=None,
        drawdown180=None,
        high52=None,
        low52=None,
        unavailable="daily bars of AAPL: HTTP 500",
    )
    assert subject_line(DAY, [failed], False).endswith("Market data unavailable for your tickers today")
    assert subject_line(DAY, [replace(failed, unavailable="")], False).endswith(
        "No new market data for your tickers today"
    )
