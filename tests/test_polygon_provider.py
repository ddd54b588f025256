"""The Polygon provider through the real `massive` client, against the fake Polygon server on loopback."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.core.cache import cache

from markets.providers import ProviderError, get_provider
from markets.providers.base import MarketDataProvider
from markets.providers.polygon import PolygonProvider
from tests.fakes.polygon_server import FakePolygon, Reply
from walter_site.ratelimit import Pacer


@pytest.fixture
def server():
    fake = FakePolygon().start()
    cache.clear()
    yield fake
    fake.stop()
    cache.clear()


def make_provider(server: FakePolygon, **kwargs) -> PolygonProvider:
    options = {
        "api_key": "test-key",
        "base_url": server.url,
        "requests_per_minute": 600_000,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "retries": 2,
        "sleep": lambda seconds: None,
    }
    options.update(kwargs)
    return PolygonProvider(**options)


@pytest.fixture
def provider(server):
    return make_provider(server)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_it_is_a_market_data_provider_and_is_chosen_by_setting(server, settings):
    settings.MARKET_DATA_PROVIDER = "markets.providers.polygon.PolygonProvider"
    settings.POLYGON_API_KEY = "from-settings"
    settings.POLYGON_BASE_URL = server.url
    provider = get_provider()
    assert isinstance(provider, PolygonProvider) and isinstance(provider, MarketDataProvider)
    assert provider.source == "polygon" and provider.is_demo is False
    assert provider.base_url == server.url


def test_a_missing_key_is_a_readable_error(settings):
    settings.POLYGON_API_KEY = ""
    with pytest.raises(ProviderError, match="POLYGON_API_KEY"):
        PolygonProvider()


def test_grouped_daily_parses_the_recorded_answer_in_one_request(server, provider):
    bars = provider.grouped_daily(dt.date(2005, 4, 4))
    (bar,) = bars.values()
    assert bar.symbol == "GIK" and bar.date == dt.date(2005, 4, 4)  # the requested session, not the odd timestamp
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.vwap) == (9.99, 10.02, 9.9, 10.02, 895345, 9.9979)
    assert server.count() == 1
    request = server.requests[0]
    assert request.path == "/v2/aggs/grouped/locale/us/market/stocks/2005-04-04"
    assert request.query["adjusted"] == ["true"]
    assert request.authorization == "Bearer test-key"


def test_grouped_daily_with_no_results_is_no_data(server, provider):
    day = dt.date(2026, 11, 20)
    server.add_random_walks(["AAPL"], [day])
    server.unpublished.add(day)
    assert provider.grouped_daily(day) == {}


def test_grouped_daily_skips_rows_without_prices(server, provider):
    server.script(
        "/v2/aggs/grouped",
        Reply(body={"status": "OK", "results": [{"T": "OK", "o": 1, "h": 2, "l": 1, "c": 2}, {"T": "BAD", "o": 1}]}),
    )
    bars = provider.grouped_daily(dt.date(2026, 11, 20))
    assert list(bars) == ["OK"] and bars["OK"].vwap is None and bars["OK"].volume == 0.0


def test_daily_bars_parse_the_recorded_range_with_session_dates(server, provider):
    bars = provider.daily_bars("AAPL", dt.date(2005, 4, 1), dt.date(2005, 4, 4))
    assert [b.date for b in bars] == [dt.date(2005, 4, 1), dt.date(2005, 4, 4)]
    assert bars[0].close == 1.4604 and bars[0].vwap == 1.469
    (request,) = server.requests
    assert request.query["adjusted"] == ["true"] and request.query["sort"] == ["asc"]
    assert request.query["limit"] == ["50000"]  # 400 sessions always fit one page


def test_429_waits_retry_after_for_every_process(server):
    clock = FakeClock()

    def pacer() -> Pacer:
        return Pacer.per_minute("polygon-test", 600_000, clock=clock, sleep=clock.sleep)

    provider = make_provider(server, pacer=pacer())
    server.script("/v2/aggs/grouped", Reply(429, {"status": "ERROR"}, headers={"Retry-After": "7"}))
    assert provider.grouped_daily(dt.date(2005, 4, 4))
    assert server.count() == 2
    assert sum(clock.slept) == pytest.approx(7, abs=0.01)
    # Another process with its own client shares the budget through the cache: it waits too.
    clock.slept.clear()
    clock.now -= 5
    other = make_provider(server, pacer=pacer())
    other.grouped_daily(dt.date(2005, 4, 4))
    assert sum(clock.slept) == pytest.approx(5, abs=0.01)


def test_a_retry_after_beyond_the_cap_fails_instead_of_stalling(server, provider, settings):
    server.script("/v2/aggs/grouped", Reply(429, {}, headers={"Retry-After": "3600"}))
    with pytest.raises(ProviderError, match="rate limited"):
        provider.grouped_daily(dt.date(2005, 4, 4))


def test_server_errors_are_retried_then_reported(server, provider):
    server.script("/v2/aggs/grouped", Reply(500, {"status": "ERROR"}))
    assert provider.grouped_daily(dt.date(2005, 4, 4))
    assert server.count() == 2
    server.script("/v2/aggs/grouped", Reply(500, {}), Reply(502, {}), Reply(503, {}))
    with pytest.raises(ProviderError, match="HTTP 503"):
        provider.grouped_daily(dt.date(2005, 4, 4))
    assert server.count() == 5  # first try and two retries


def test_a_stalled_server_hits_the_read_timeout(server):
    provider = make_provider(server, read_timeout=0.3, retries=1)
    server.script("/v2/aggs/grouped", Reply(delay=5), Reply(delay=5))
    started = time.monotonic()
    with pytest.raises(ProviderError, match="Timeout"):
        provider.grouped_daily(dt.date(2005, 4, 4))
    # Two attempts of 0.3 s, not the 10 s the stalled answers would take.
    assert time.monotonic() - started < 4
    assert server.count() == 2


def test_malformed_json_is_an_error_not_an_empty_market(server, provider):
    server.script("/v2/aggs/grouped", Reply(body=b'{"results": [{"T": "AAPL", '))
    with pytest.raises(ProviderError, match="malformed JSON"):
        provider.grouped_daily(dt.date(2005, 4, 4))


def test_market_holidays_from_the_recorded_answer(server, provider):
    holidays = provider.market_holidays()
    assert holidays[dt.date(2022, 11, 24)] == "Thanksgiving"
    assert dt.date(2022, 11, 25) not in holidays  # an early close is still a session


def test_splits_since_a_date(server, provider):
    day = dt.date(2026, 11, 20)
    server.add_random_walks(["NVDA"], [dt.date(2026, 11, 19), day])
    server.apply_split("NVDA", day, 10)
    assert provider.splits("NVDA", dt.date(2026, 11, 1)) == [day]
    assert provider.splits("NVDA", dt.date(2026, 11, 21)) == []
