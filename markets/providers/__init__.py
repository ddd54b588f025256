"""Market-data providers, chosen by the MARKET_DATA_PROVIDER setting."""

from walter_site.backends import load_backend

from .base import (
    Article,
    ArticleInsight,
    Bar,
    EventListing,
    MarketDataProvider,
    MarketEvent,
    NewsPlan,
    ProviderError,
    TickerInfo,
)

__all__ = [
    "Article",
    "ArticleInsight",
    "Bar",
    "EventListing",
    "MarketDataProvider",
    "MarketEvent",
    "NewsPlan",
    "ProviderError",
    "TickerInfo",
    "get_provider",
]


def get_provider() -> MarketDataProvider:
    return load_backend("MARKET_DATA_PROVIDER")
