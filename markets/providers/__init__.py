"""Market-data providers, chosen by the MARKET_DATA_PROVIDER setting."""

from walter_site.backends import load_backend

from .base import Bar, EventListing, MarketDataProvider, MarketEvent, ProviderError, TickerInfo

__all__ = [
    "Bar",
    "EventListing",
    "MarketDataProvider",
    "MarketEvent",
    "ProviderError",
    "TickerInfo",
    "get_provider",
]


def get_provider() -> MarketDataProvider:
    return load_backend("MARKET_DATA_PROVIDER")
