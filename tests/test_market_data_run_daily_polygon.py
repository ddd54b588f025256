"""The whole daily job on production adapters: Polygon (the fake server on loopback) and DynamoDB (moto)."""

from __future__ import annotations

import datetime as dt
import email
from email import policy

import boto3
import pytest
from django.core.cache import cache
from django.core.management import call_command
from moto import mock_aws

from markets import calendar
from newsletters.models import DailyRun
from subscriptions.models import Subscriber
from subscriptions.selectors import followed_symbols
from tests.fakes.polygon_server import FakePolygon

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 11, 20)
NEXT = dt.date(2026, 11, 23)


@pytest.fixture
def production_adapters(settings, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }.items():
        monkeypatch.setenv(name, value)
    server = FakePolygon().start()
    cache.clear()
    settings.POLYGON_API_KEY = "test-key"
    settings.POLYGON_BASE_URL = server.url
    settings.POLYGON_REQUESTS_PER_MINUTE = 600_000
    settings.MARKET_DATA_PROVIDER = "markets.providers.polygon.PolygonProvider"
    settings.SHARED_TABLES_BACKEND = "markets.shared_tables.dynamodb.DynamoDBSharedTables"
    settings.SHARED_TABLES_STAGE = "e2e"
    settings.DYNAMODB_ENDPOINT_URL = ""
    with mock_aws():
        yield server
    server.stop()
    cache.clear()


def test_run_daily_with_polygon_and_dynamodb(production_adapters, outbox, capsys):
    server = production_adapters
    call_command("seed_demo", "--quiet")
    symbols = followed_symbols()
    server.add_random_walks(symbols, calendar.trading_days_ending(NEXT, 430))
    call_command("create_shared_tables")
    assert "Created ticker-data-e2e, ticker-analyses-e2e" in capsys.readouterr().out

    call_command("run_daily", "--date", DAY.isoformat())
    run = DailyRun.objects.get(date=DAY)
    assert run.status == DailyRun.Status.SUCCEEDED, run.errors
    active = Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count()
    assert run.emails_sent == active and run.tickers_updated == len(symbols)
    # First start: every followed ticker is new, and one range request each beats 400 grouped ones.
    assert server.count("/v2/aggs/ticker/") == len(symbols) and server.count("/v2/aggs/grouped/") == 0

    messages = [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in outbox.glob("*.eml")]
    assert len(messages) == active
    for message in messages:
        assert "DEMO DATA" not in message["Subject"]
        assert "DEMO DATA" not in message.get_body(("html",)).get_content()

    dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
    series = dynamodb.Table("ticker-data-e2e").query(
        KeyConditionExpression="ticker = :t", ExpressionAttributeValues={":t": "AAPL"}
    )["Items"]
    assert len(series) == 400 and series[-1]["date"] == DAY.isoformat() and series[-1]["source"] == "polygon"
    analyses = dynamodb.Table("ticker-analyses-e2e").scan()["Items"]
    assert {a["ticker"] for a in analyses} == set(symbols)

    # The fake's plan has no Benzinga earnings: a note on the run, not an error.
    assert run.notes["events"] == ["earnings skipped: the plan does not include them (HTTP 403)"]

    # The next session: one request for the whole market's prices, one page of its news (a quiet day), and the
    # coming events by date window (dividends by ex-date and by pay date, splits, earnings).
    before, prices_before = server.count(), server.count("/v2/aggs/")
    news_before = server.count("/v2/reference/news")
    call_command("run_daily", "--date", NEXT.isoformat())
    assert server.count("/v2/aggs/") - prices_before == 1
    assert server.count("/v2/reference/news") - news_before == 1
    assert server.count() - before == 1 + 1 + 4
    assert DailyRun.objects.get(date=NEXT).status == DailyRun.Status.SUCCEEDED
    latest = dynamodb.Table("ticker-data-e2e").get_item(Key={"ticker": "AAPL", "date": NEXT.isoformat()})["Item"]
    assert latest["adjusted"] is True and "rsi14" in latest and "sma50" in latest
