"""The shared tables kept in the Django database: the embedded default, with the same contract as DynamoDB."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction

from markets.models import SharedTickerAnalysis, SharedTickerData

from .base import Item, analysis_sort_key, without_missing

KEY_FIELDS = ("ticker", "date")


class DatabaseSharedTables:
    batch_size = 500

    def put_bars(self, items: Iterable[Item]) -> int:
        rows = {}
        for item in items:
            item = without_missing(item)
            rows[(item["ticker"], item["date"])] = SharedTickerData(
                ticker=item["ticker"],
                date=item["date"],
                attributes={k: v for k, v in item.items() if k not in KEY_FIELDS},
            )
        SharedTickerData.objects.bulk_create(
            rows.values(),
            batch_size=self.batch_size,
            update_conflicts=True,
            unique_fields=["ticker", "date"],
            update_fields=["attributes"],
        )
        return len(rows)

    def get_series(self, ticker: str, start: str | None = None, end: str | None = None) -> list[Item]:
        rows = SharedTickerData.objects.filter(ticker=ticker)
        if start:
            rows = rows.filter(date__gte=start)
        if end:
            rows = rows.filter(date__lte=end)
        return [
            {"ticker": t, "date": d, **attributes}
            for t, d, attributes in rows.order_by("date").values_list("ticker", "date", "attributes")
        ]

    def delete_bars(self, ticker: str, start: str, end: str) -> int:
        deleted, _ = SharedTickerData.objects.filter(ticker=ticker, date__gte=start, date__lte=end).delete()
        return deleted

    def put_analysis(self, item: Item) -> bool:
        item = without_missing(item)
        sort_key = analysis_sort_key(item["date"], item["model"], item["promptVersion"])
        attributes = {k: v for k, v in item.items() if k != "ticker"}
        try:
            with transaction.atomic():
                SharedTickerAnalysis.objects.create(ticker=item["ticker"], sort_key=sort_key, attributes=attributes)
        except IntegrityError:
            return False
        return True

    def get_analysis(self, ticker: str, date: str, model: str, prompt_version: str) -> Item | None:
        row = SharedTickerAnalysis.objects.filter(
            ticker=ticker, sort_key=analysis_sort_key(date, model, prompt_version)
        ).first()
        return {"ticker": row.ticker, **row.attributes} if row else None

    def create_tables(self) -> list[str]:
        # The tables are Django models: migrations create them.
        return []
