"""The shared tables other services read: their shape is a contract (see the design's table).

`ticker-data-{stage}`: partition key `ticker`, sort key `date` (YYYY-MM-DD); attributes open, high, low, close,
volume, vwap, adjusted, rsi14, sma50, drawdown180, change_pct, source, asOf.
`ticker-analyses-{stage}`: partition key `ticker`, sort key `date#model#promptVersion`; attributes headline,
phrase (may be empty), summary, stance, score, points, risks, model, promptVersion, dataAsOf, usage tokens,
createdAt.

Items cross this interface as plain dicts holding those keys; numbers are floats (None for a value that cannot
be computed yet, which is then left out of the stored item).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

Item = dict[str, Any]

TICKER_DATA = "ticker-data"
TICKER_ANALYSES = "ticker-analyses"


def analysis_sort_key(date: str, model: str, prompt_version: str) -> str:
    return f"{date}#{model}#{prompt_version}"


def table_name(base: str, stage: str) -> str:
    return f"{base}-{stage}"


def without_missing(item: Item) -> Item:
    """Absent, never zero or null: values that cannot be computed are left out of the stored item."""
    return {k: v for k, v in item.items() if v is not None}


@runtime_checkable
class SharedTables(Protocol):
    def put_bars(self, items: Iterable[Item]) -> int:
        """Write ticker-data items (insert or replace); returns how many were written."""
        ...

    def get_series(self, ticker: str, start: str | None = None, end: str | None = None) -> list[Item]:
        """One ticker's items, oldest first, optionally limited to dates from ``start`` to ``end``."""
        ...

    def delete_bars(self, ticker: str, start: str, end: str) -> int:
        """Delete one ticker's items from ``start`` to ``end`` (both included); returns how many."""
        ...

    def put_analysis(self, item: Item) -> bool:
        """Store an analysis unless one exists for its key (first writer wins); True when this one was stored."""
        ...

    def get_analysis(self, ticker: str, date: str, model: str, prompt_version: str) -> Item | None: ...

    def create_tables(self) -> list[str]:
        """Create the tables that are missing; returns the names created."""
        ...
