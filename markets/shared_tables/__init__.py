"""The shared-tables gateway, chosen by the SHARED_TABLES_BACKEND setting."""

from walter_site.backends import load_backend

from .base import TICKER_ANALYSES, TICKER_DATA, Item, SharedTables, analysis_sort_key, table_name

__all__ = [
    "TICKER_ANALYSES",
    "TICKER_DATA",
    "Item",
    "SharedTables",
    "analysis_sort_key",
    "get_shared_tables",
    "table_name",
]


def get_shared_tables() -> SharedTables:
    return load_backend("SHARED_TABLES_BACKEND")
