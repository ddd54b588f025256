"""One contract for every shared-tables implementation: the database tables, DynamoDB through moto in-process,
and DynamoDB over the wire to a `moto_server` on loopback."""

from __future__ import annotations

from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from markets.shared_tables.database import DatabaseSharedTables
from markets.shared_tables.dynamodb import DynamoDBSharedTables

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["database", "dynamodb-moto"])
def tables(request, aws_env):
    if request.param == "database":
        yield DatabaseSharedTables()
        return
    with mock_aws():
        gateway = DynamoDBSharedTables(stage="test", sleep=lambda s: None)
        gateway.create_tables()
        yield gateway


def bar(ticker: str, date: str, close: float, **extra) -> dict:
    return {
        "ticker": ticker,
        "date": date,
        "open": close - 1,
        "high": close + 1.25,
        "low": close - 1.5,
        "close": close,
        "volume": 1_234_567.0,
        "adjusted": True,
        "rsi14": 55.123456,
        "sma50": None,  # not computable yet: absent, never zero
        "drawdown180": -3.5,
        "change_pct": 0.1,
        "source": "polygon",
        "asOf": "2026-11-20T22:00:00+00:00",
        **extra,
    }


def days(n: int) -> list[str]:
    return [f"2026-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(n)]


def analysis(ticker: str, headline: str) -> dict:
    return {
        "ticker": ticker,
        "date": "2026-11-20",
        "model": "gpt-x",
        "promptVersion": "v3",
        "headline": headline,
        "summary": "Two sentences. About the numbers.",
        "stance": "neutral",
        "score": 55,
        "points": ["one", "two"],
        "risks": ["three"],
        "dataAsOf": "2026-11-20",
        "inputTokens": 812,
        "outputTokens": 140,
        "createdAt": "2026-11-21T08:00:00+00:00",
    }


def test_series_round_trip_oldest_first_with_floats_and_absent_values(tables):
    dates = days(60)  # more than two 25-item batches
    written = tables.put_bars([bar("AAPL", d, 100.0 + i / 7) for i, d in reversed(list(enumerate(dates)))])
    tables.put_bars([bar("MSFT", dates[0], 300.0)])
    assert written == 60
    series = tables.get_series("AAPL")
    assert [item["date"] for item in series] == dates
    first = series[0]
    assert first["ticker"] == "AAPL"
    assert first["close"] == pytest.approx(100.0) and isinstance(first["close"], float)
    assert series[5]["close"] == 100.0 + 5 / 7  # floats survive exactly (no Decimal rounding)
    assert isinstance(first["rsi14"], float) and first["rsi14"] == 55.123456
    assert first["adjusted"] is True and first["source"] == "polygon"
    assert "sma50" not in first
    assert [item["ticker"] for item in tables.get_series("MSFT")] == ["MSFT"]
    assert tables.get_series("NOPE") == []


def test_writing_a_key_again_replaces_it(tables):
    tables.put_bars([bar("AAPL", "2026-11-20", 100.0)])
    tables.put_bars([bar("AAPL", "2026-11-20", 101.5, sma50=99.0)])
    (item,) = tables.get_series("AAPL")
    assert item["close"] == 101.5 and item["sma50"] == 99.0


def test_duplicate_keys_in_one_write_keep_the_last(tables):
    assert tables.put_bars([bar("AAPL", "2026-11-20", 1.0), bar("AAPL", "2026-11-20", 2.0)]) == 1
    assert [i["close"] for i in tables.get_series("AAPL")] == [2.0]


def test_series_by_date_range(tables):
    dates = days(10)
    tables.put_bars([bar("AAPL", d, 100.0 + i) for i, d in enumerate(dates)])
    assert [i["date"] for i in tables.get_series("AAPL", dates[2], dates[4])] == dates[2:5]
    assert [i["date"] for i in tables.get_series("AAPL", start=dates[8])] == dates[8:]
    assert [i["date"] for i in tables.get_series("AAPL", end=dates[1])] == dates[:2]


def test_delete_a_date_range(tables):
    dates = days(40)
    tables.put_bars([bar("AAPL", d, 100.0 + i) for i, d in enumerate(dates)])
    tables.put_bars([bar("MSFT", d, 10.0) for d in dates])
    assert tables.delete_bars("AAPL", dates[3], dates[32]) == 30
    assert [i["date"] for i in tables.get_series("AAPL")] == dates[:3] + dates[33:]
    assert len(tables.get_series("MSFT")) == 40
    assert tables.delete_bars("AAPL", "1999-01-01", "1999-12-31") == 0


def test_first_analysis_for_a_key_wins(tables):
    assert tables.put_analysis(analysis("AAPL", "First")) is True
    assert tables.put_analysis(analysis("AAPL", "Second")) is False
    stored = tables.get_analysis("AAPL", "2026-11-20", "gpt-x", "v3")
    assert stored["headline"] == "First"
    assert stored["ticker"] == "AAPL" and stored["model"] == "gpt-x" and stored["promptVersion"] == "v3"
    assert stored["score"] == 55 and stored["inputTokens"] == 812
    assert stored["points"] == ["one", "two"]
    assert tables.get_analysis("AAPL", "2026-11-20", "gpt-x", "v4") is None
    other_model = {**analysis("AAPL", "Other"), "model": "llama"}
    assert tables.put_analysis(other_model) is True


def test_create_tables_is_idempotent(tables):
    assert tables.create_tables() == []


# -- DynamoDB only ---------------------------------------------------------------------------------------------


@pytest.fixture
def dynamo(aws_env):
    with mock_aws():
        gateway = DynamoDBSharedTables(stage="unit", sleep=lambda s: None)
        yield gateway


def test_create_tables_makes_both_tables_with_the_contract_keys_on_demand(dynamo):
    assert sorted(dynamo.create_tables()) == ["ticker-analyses-unit", "ticker-data-unit"]
    client = boto3.client("dynamodb", region_name="us-east-1")
    data = client.describe_table(TableName="ticker-data-unit")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in data["KeySchema"]} == {"ticker": "HASH", "date": "RANGE"}
    assert data["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    analyses = client.describe_table(TableName="ticker-analyses-unit")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in analyses["KeySchema"]} == {
        "ticker": "HASH",
        "date#model#promptVersion": "RANGE",
    }


def test_numbers_are_stored_as_decimal(dynamo):
    dynamo.create_tables()
    dynamo.put_bars([bar("AAPL", "2026-11-20", 101.25)])
    raw = boto3.resource("dynamodb", region_name="us-east-1").Table("ticker-data-unit")
    item = raw.get_item(Key={"ticker": "AAPL", "date": "2026-11-20"})["Item"]
    assert item["close"] == Decimal("101.25") and isinstance(item["volume"], Decimal)


def test_reads_follow_every_page(dynamo, monkeypatch):
    dynamo.create_tables()
    dynamo.put_bars([bar("AAPL", d, 1.0 + i) for i, d in enumerate(days(50))])
    calls = []
    real = dynamo.client.query
    monkeypatch.setattr(dynamo.client, "query", lambda **kw: calls.append(1) or real(**{**kw, "Limit": 7}))
    series = dynamo.get_series("AAPL")
    assert len(series) == 50 and len(calls) >= 8


def test_unprocessed_items_are_retried_with_backoff(aws_env):
    with mock_aws():
        sleeps = []
        gateway = DynamoDBSharedTables(stage="unit", sleep=sleeps.append)
        gateway.create_tables()
        real = gateway.client.batch_write_item
        answers = {"n": 0}

        def flaky(RequestItems):
            # DynamoDB under load: the first two answers leave part of the batch unprocessed.
            answers["n"] += 1
            (table, requests), *_ = RequestItems.items()
            if answers["n"] <= 2 and len(requests) > 3:
                real(RequestItems={table: requests[:3]})
                return {"UnprocessedItems": {table: requests[3:]}}
            return real(RequestItems=RequestItems)

        gateway.client.batch_write_item = flaky
        assert gateway.put_bars([bar("AAPL", d, 1.0) for d in days(30)]) == 30
        assert len(gateway.get_series("AAPL")) == 30
        assert len(sleeps) == 2 and sleeps[1] > sleeps[0] / 2  # backed off, with jitter


# -- over the wire ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_contract_over_the_wire_with_moto_server(moto_server, settings):
    settings.DYNAMODB_ENDPOINT_URL = moto_server
    gateway = DynamoDBSharedTables(stage="wire", sleep=lambda s: None)
    assert sorted(gateway.create_tables()) == ["ticker-analyses-wire", "ticker-data-wire"]
    assert gateway.create_tables() == []
    dates = days(60)
    assert gateway.put_bars([bar("AAPL", d, 100.0 + i / 3) for i, d in enumerate(dates)]) == 60
    series = gateway.get_series("AAPL")
    assert [i["date"] for i in series] == dates and series[4]["close"] == 100.0 + 4 / 3
    assert "sma50" not in series[0]
    assert gateway.delete_bars("AAPL", dates[10], dates[19]) == 10
    assert len(gateway.get_series("AAPL")) == 50
    assert gateway.put_analysis(analysis("AAPL", "First")) is True
    assert gateway.put_analysis(analysis("AAPL", "Second")) is False
    assert gateway.get_analysis("AAPL", "2026-11-20", "gpt-x", "v3")["headline"] == "First"
