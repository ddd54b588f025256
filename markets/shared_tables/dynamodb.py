"""The shared tables in Amazon DynamoDB (boto3), exactly as other services read them.

`ticker-data-{stage}`: partition key `ticker` (S), sort key `date` (S). `ticker-analyses-{stage}`: partition key
`ticker` (S), sort key `date#model#promptVersion` (S). The gateway hides what DynamoDB makes callers care about:
25-item batch writes with unprocessed items retried with backoff, 1 MB query pages, numbers as `Decimal`
(floats in, floats out), conditional writes (the first analysis for a key wins), and table creation.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings

from .base import TICKER_ANALYSES, TICKER_DATA, Item, analysis_sort_key, table_name, without_missing

BATCH_SIZE = 25  # DynamoDB's limit for BatchWriteItem
ANALYSIS_SORT_KEY = "date#model#promptVersion"
# Attributes that hold counts: returned as int, every other number as float.
INTEGER_ATTRIBUTES = frozenset({"score", "inputTokens", "outputTokens"})

KEY_SCHEMAS = {
    TICKER_DATA: ("ticker", "date"),
    TICKER_ANALYSES: ("ticker", ANALYSIS_SORT_KEY),
}


class SharedTablesError(Exception):
    """DynamoDB kept some writes unprocessed after every retry."""


def to_dynamo(value: Any) -> Any:
    """Floats become Decimal (boto3 refuses floats); NaN and infinities cannot be stored and are dropped."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int | Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: v for k, v in ((k, to_dynamo(v)) for k, v in value.items()) if v is not None}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any, key: str = "") -> Any:
    if isinstance(value, Decimal):
        return int(value) if key in INTEGER_ATTRIBUTES else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v, key) for v in value]
    return value


class DynamoDBSharedTables:
    def __init__(
        self,
        *,
        stage: str | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        resource: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.stage = stage or settings.SHARED_TABLES_STAGE
        self.resource = resource or boto3.resource(
            "dynamodb",
            endpoint_url=(endpoint_url if endpoint_url is not None else settings.DYNAMODB_ENDPOINT_URL) or None,
            region_name=region_name or settings.AWS_REGION,
            config=Config(retries={"mode": "standard", "max_attempts": settings.DYNAMODB_MAX_ATTEMPTS}),
        )
        self.client = self.resource.meta.client
        self.sleep = sleep
        self.data_table = table_name(TICKER_DATA, self.stage)
        self.analyses_table = table_name(TICKER_ANALYSES, self.stage)

    # -- writes ---------------------------------------------------------------------------------------------

    def _batch_write(self, table: str, requests: list[dict[str, Any]]) -> None:
        """BatchWriteItem 25 at a time; what DynamoDB leaves unprocessed is sent again with backoff and jitter."""
        for start in range(0, len(requests), BATCH_SIZE):
            pending = {table: requests[start : start + BATCH_SIZE]}
            for attempt in range(settings.DYNAMODB_UNPROCESSED_RETRIES + 1):
                answer = self.client.batch_write_item(RequestItems=pending)
                pending = answer.get("UnprocessedItems") or {}
                if not pending:
                    break
                self.sleep(min(0.05 * 2**attempt, 5.0) * (0.5 + random.random() / 2))
            else:
                left = sum(len(v) for v in pending.values())
                raise SharedTablesError(f"{left} writes to {table} stayed unprocessed after every retry")

    def put_bars(self, items: Iterable[Item]) -> int:
        # Keys must be unique within one BatchWriteItem: the last item for a key wins, as with the database.
        unique: dict[tuple[str, str], Item] = {}
        for item in items:
            item = without_missing(item)
            unique[(item["ticker"], item["date"])] = to_dynamo(item)
        self._batch_write(self.data_table, [{"PutRequest": {"Item": item}} for item in unique.values()])
        return len(unique)

    def delete_bars(self, ticker: str, start: str, end: str) -> int:
        keys = [{"ticker": item["ticker"], "date": item["date"]} for item in self._query(ticker, start, end, keys=True)]
        self._batch_write(self.data_table, [{"DeleteRequest": {"Key": key}} for key in keys])
        return len(keys)

    def put_analysis(self, item: Item) -> bool:
        item = without_missing(item)
        stored = {**item, ANALYSIS_SORT_KEY: analysis_sort_key(item["date"], item["model"], item["promptVersion"])}
        try:
            self.resource.Table(self.analyses_table).put_item(
                Item=to_dynamo(stored),
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": "ticker"},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- reads ----------------------------------------------------------------------------------------------

    def _query(self, ticker: str, start: str | None, end: str | None, *, keys: bool = False) -> Iterator[Item]:
        """Every page of one ticker's items, oldest first."""
        condition = "#t = :t"
        values: dict[str, Any] = {":t": ticker}
        names = {"#t": "ticker", "#d": "date"}
        if start and end:
            condition += " AND #d BETWEEN :start AND :end"
            values.update({":start": start, ":end": end})
        elif start:
            condition += " AND #d >= :start"
            values[":start"] = start
        elif end:
            condition += " AND #d <= :end"
            values[":end"] = end
        else:
            del names["#d"]
        arguments: dict[str, Any] = {
            "TableName": self.data_table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ExpressionAttributeNames": names,
            "ScanIndexForward": True,
        }
        if keys:
            arguments["ProjectionExpression"] = "#t, #d"
            arguments["ExpressionAttributeNames"] = {"#t": "ticker", "#d": "date"}
        for page in self.client.get_paginator("query").paginate(**arguments):
            yield from page.get("Items", [])

    def get_series(self, ticker: str, start: str | None = None, end: str | None = None) -> list[Item]:
        return [from_dynamo(item) for item in self._query(ticker, start, end)]

    def get_analysis(self, ticker: str, date: str, model: str, prompt_version: str) -> Item | None:
        answer = self.resource.Table(self.analyses_table).get_item(
            Key={"ticker": ticker, ANALYSIS_SORT_KEY: analysis_sort_key(date, model, prompt_version)},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if item is None:
            return None
        item = from_dynamo(item)
        item.pop(ANALYSIS_SORT_KEY, None)
        return item

    # -- tables ---------------------------------------------------------------------------------------------

    def create_tables(self) -> list[str]:
        """Create the missing tables, on-demand billing, and wait until they are active."""
        existing = {
            name for page in self.client.get_paginator("list_tables").paginate() for name in page.get("TableNames", [])
        }
        created = []
        for base, (partition, sort) in KEY_SCHEMAS.items():
            name = table_name(base, self.stage)
            if name in existing:
                continue
            try:
                self.client.create_table(
                    TableName=name,
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[
                        {"AttributeName": partition, "AttributeType": "S"},
                        {"AttributeName": sort, "AttributeType": "S"},
                    ],
                    KeySchema=[
                        {"AttributeName": partition, "KeyType": "HASH"},
                        {"AttributeName": sort, "KeyType": "RANGE"},
                    ],
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                    raise
                continue  # another process created it meanwhile
            self.client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            created.append(name)
        return created
