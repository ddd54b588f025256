"""The ticker directory: loaded in bulk from the provider, and the only thing ticker search and the forms read.

Refreshes run against the fake Polygon server through the real `massive` client; requests are counted at the
server, so "the web makes no Polygon call" is what the server saw, not what a mock agreed to.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client

from markets import calendar
from markets.models import ListedTicker, Ticker
from markets.providers import ProviderError
from markets.providers.demo import DEMO_UNIVERSE
from markets.providers.polygon import PolygonProvider
from markets.services import ticker_directory_refresh
from newsletters.models import DailyRun
from newsletters.pipeline import daily_run
from subscriptions import tokens
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create
from tests.fakes.polygon_server import FakePolygon, Reply
from walter_site.ratelimit import Pacer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]

LISTING = "/v3/reference/tickers"
# Enough listed stocks for three pages of 1,000, like (a quarter of) the real US market.
MANY = {f"Z{i:04d}": f"Zeta Company {i}" for i in range(2500)}
NOT_LOADED = "The ticker list is not loaded yet. Please try again later."


@pytest.fixture
def server():
    fake = FakePolygon().start()
    fake.names.update(MANY)
    fake.names["MSFT"] = "Microsoft Corporation"
    yield fake
    fake.stop()


@pytest.fixture
def polygon(server, settings):
    """Polygon is the configured provider; retries off so a fault shows at once."""
    settings.POLYGON_API_KEY = "test-key"
    settings.POLYGON_BASE_URL = server.url
    settings.POLYGON_REQUESTS_PER_MINUTE = 600_000
    settings.POLYGON_RETRIES = 0
    settings.POLYGON_CONNECT_TIMEOUT = 1.0
    settings.POLYGON_READ_TIMEOUT = 2.0
    settings.MARKET_DATA_PROVIDER = "markets.providers.polygon.PolygonProvider"
    return server


def first_page(server: FakePolygon) -> dict:
    return server._search({"limit": ["1000"]}).body


# -- refresh ----------------------------------------------------------------------------------------------------


def test_a_refresh_follows_next_url_page_by_page_and_stores_every_name(polygon):
    result = ticker_directory_refresh()
    total = len(polygon._universe())
    pages = -(-total // 1000)
    assert pages == 3 and result.requests == pages == polygon.count(LISTING)
    assert result.listed == total == ListedTicker.objects.count()
    assert ListedTicker.objects.get(symbol="Z2499").name == "Zeta Company 2499"
    assert ListedTicker.objects.get(symbol="MSFT").name == "Microsoft Corporation"
    # The demo list loaded with the tables is replaced, not mixed in.
    assert set(ListedTicker.objects.values_list("source", flat=True)) == {"polygon"}
    first = polygon.requests[0].query
    assert first["market"] == ["stocks"] and first["active"] == ["true"] and first["limit"] == ["1000"]
    # The pages after the first send what next_url holds (the cursor), nothing else.
    assert "market" not in polygon.requests[1].query and polygon.requests[1].query["cursor"] == ["1000"]


def test_a_refresh_names_the_followed_tickers_that_have_no_name(polygon):
    subscriber_create(email="ada@example.com", symbols=["MSFT", "NOPE"], status=Subscriber.Status.ACTIVE)
    ticker_directory_refresh()
    names = dict(Ticker.objects.values_list("symbol", "name"))
    assert names == {"MSFT": "Microsoft Corporation", "NOPE": ""}


def test_a_second_refresh_the_same_day_makes_no_request_unless_forced(polygon):
    ticker_directory_refresh()
    before = polygon.count()
    again = ticker_directory_refresh()
    assert again.skipped and polygon.count() == before
    forced = ticker_directory_refresh(force=True)
    assert not forced.skipped and polygon.count() == before + 3


def test_a_ticker_no_longer_listed_leaves_the_directory(polygon):
    ticker_directory_refresh()
    del polygon.names["Z0007"]
    result = ticker_directory_refresh(force=True)
    assert result.removed == 1 and not ListedTicker.objects.filter(symbol="Z0007").exists()


@pytest.mark.parametrize(
    "second_page",
    [
        Reply(500, {"status": "ERROR"}),
        Reply(body=b"{not json"),
        Reply(body={"status": "OK", "results": "oops"}),
    ],
    ids=["server-error", "malformed-json", "no-results-list"],
)
def test_a_list_cut_short_fails_and_keeps_the_previous_directory(polygon, second_page):
    # The first Polygon list, over the demo one: no earlier list of Polygon's to compare its length with.
    before = set(ListedTicker.objects.values_list("symbol", "refreshed_at"))
    polygon.script(LISTING, Reply(body=first_page(polygon)), second_page)
    with pytest.raises(ProviderError, match="ticker list"):
        ticker_directory_refresh(force=True)
    assert set(ListedTicker.objects.values_list("symbol", "refreshed_at")) == before


def test_a_list_much_shorter_than_yesterdays_is_refused(polygon):
    ticker_directory_refresh()
    short = {"results": [{"ticker": "AAPL", "name": "Apple Inc.", "active": True}], "status": "OK"}
    polygon.script(LISTING, Reply(body=short))
    with pytest.raises(ProviderError, match="directory was kept"):
        ticker_directory_refresh(force=True)
    assert ListedTicker.objects.count() == len(polygon._universe())


def test_the_command_refreshes_and_fails_with_one_line(polygon, capsys):
    call_command("refresh_tickers")
    assert f"{len(polygon._universe())} tickers listed" in capsys.readouterr().out
    call_command("refresh_tickers", "--if-stale")
    assert "already refreshed today" in capsys.readouterr().out
    polygon.script(LISTING, Reply(503, {"status": "ERROR"}))
    with pytest.raises(CommandError, match="previous list is kept") as failure:
        call_command("refresh_tickers")
    assert "\n" not in str(failure.value)


def test_the_command_without_a_key_is_one_readable_line(polygon, settings):
    settings.POLYGON_API_KEY = ""
    with pytest.raises(CommandError, match=r"^the ticker directory was not refreshed .*: POLYGON_API_KEY is not set$"):
        call_command("refresh_tickers")


def test_the_demo_list_is_loaded_with_the_tables():
    assert dict(ListedTicker.objects.values_list("symbol", "name")) == DEMO_UNIVERSE


# -- the daily job refreshes it as a side output --------------------------------------------------------------


def test_the_data_stage_refreshes_the_directory_once_a_day(trading_day):
    ListedTicker.objects.all().delete()
    run = daily_run(day=trading_day, stages=("data",))
    assert ListedTicker.objects.count() == len(DEMO_UNIVERSE) and "ticker_directory" not in run.errors


def test_a_failed_directory_refresh_is_recorded_and_the_run_goes_on(polygon, trading_day):
    subscriber_create(email="ada@example.com", symbols=["AAPL"], status=Subscriber.Status.ACTIVE)
    polygon.add_random_walks(["AAPL"], calendar.trading_days_ending(trading_day, 430))
    before = set(ListedTicker.objects.values_list("symbol", "refreshed_at"))
    polygon.script(LISTING, Reply(503, {"status": "ERROR"}))
    run = daily_run(day=trading_day, stages=("data",))
    assert run.errors["ticker_directory"].startswith("ProviderError: ticker list: HTTP 503")
    assert run.status == DailyRun.Status.PARTIAL and run.tickers_updated == 1 and run.tickers_failed == 0
    assert set(ListedTicker.objects.values_list("symbol", "refreshed_at")) == before
    # The market's data went first: the directory never delays it.
    market = [r.path for r in polygon.requests if not r.path.startswith("/v1/marketstatus/")]
    assert market[0].startswith("/v2/aggs/") and market[-1] == LISTING


# -- the web reads only the directory ---------------------------------------------------------------------------


def subscribe(client: Client, tickers: str, django_capture_on_commit_callbacks, address: str = "ada@example.com"):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post("/", {"email": address, "tickers": tickers})


def test_search_and_validation_work_with_the_provider_down(polygon, client, django_capture_on_commit_callbacks):
    ticker_directory_refresh()
    polygon.stop()
    cache.clear()  # nothing remembered from the refresh: every answer must come from the directory

    found = client.get("/api/tickers/search", {"q": "micro"})
    assert found.status_code == 200 and found.json()["results"] == [{"symbol": "MSFT", "name": "Microsoft Corporation"}]
    by_symbol = client.get("/api/tickers/search", {"q": "z00"}).json()["results"]
    assert [r["symbol"] for r in by_symbol] == ["Z0000", "Z0001", "Z0002", "Z0003", "Z0004", "Z0005", "Z0006", "Z0007"]

    response = subscribe(client, "msft, Z1234", django_capture_on_commit_callbacks)
    assert response.status_code == 302
    assert sorted(Subscriber.objects.get().tickers.values_list("symbol", flat=True)) == ["MSFT", "Z1234"]
    unknown = subscribe(client, "MSFT, QQQQZ", django_capture_on_commit_callbacks, address="bob@example.com")
    assert unknown.status_code == 400 and "&quot;QQQQZ&quot; is not a listed US ticker." in unknown.content.decode()

    subscriber = Subscriber.objects.get()
    url = f"/preferences/{tokens.make_token(tokens.PREFERENCES, subscriber.pk)}/"
    assert client.post(url, {"action": "tickers", "tickers": "Z0001, MSFT"}).status_code == 200
    assert sorted(subscriber.tickers.values_list("symbol", flat=True)) == ["MSFT", "Z0001"]


def test_no_request_reaches_the_provider_from_search_or_the_forms(polygon, client, django_capture_on_commit_callbacks):
    ticker_directory_refresh()
    before = polygon.count()
    # Twelve distinct searches and a subscribe with five tickers took minutes when each one asked Polygon.
    for query in ["a", "ap", "app", "appl", "micro", "z1", "z12", "z123", "zeta", "zeta company 9", "m", "ms"]:
        assert client.get("/api/tickers/search", {"q": query}).status_code == 200
    assert subscribe(client, "MSFT, Z0001, Z0002, Z0003, Z0004", django_capture_on_commit_callbacks).status_code == 302
    assert polygon.count() == before


def test_a_slow_provider_does_not_slow_search_or_subscribe(polygon, client, django_capture_on_commit_callbacks):
    ticker_directory_refresh()
    before = polygon.count()
    polygon.script("/", *[Reply(body={}, delay=10) for _ in range(50)])
    started = time.monotonic()
    assert client.get("/api/tickers/search", {"q": "zeta"}).status_code == 200
    assert subscribe(client, "MSFT, Z0042", django_capture_on_commit_callbacks).status_code == 302
    # Generous: the old code waited on the provider for each (here 10 s a request).
    assert time.monotonic() - started < 2.0
    assert polygon.count() == before


def test_an_empty_directory_says_so_next_to_the_field_and_calls_nobody(
    polygon, client, django_capture_on_commit_callbacks
):
    ListedTicker.objects.all().delete()
    response = subscribe(client, "AAPL", django_capture_on_commit_callbacks)
    html = response.content.decode()
    assert response.status_code == 400 and 'id="tickers-error"' in html and NOT_LOADED in html
    assert not Subscriber.objects.exists()
    search = client.get("/api/tickers/search", {"q": "app"})
    assert search.status_code == 503 and search.json() == {"error": NOT_LOADED} and search["Retry-After"]
    assert polygon.count() == 0


def test_a_search_that_matches_nothing_is_an_empty_answer_not_an_error(client):
    assert client.get("/api/tickers/search", {"q": "no such company at all"}).json() == {"results": []}


def test_search_ranks_the_symbol_then_prefixes_then_names(client):
    ListedTicker.objects.all().delete()
    now = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    for symbol, name in {
        "APPX": "Appx Corp",
        "AP": "Ap Holdings",
        "APP": "AppLovin Corporation",
        "AAPL": "Apple Inc.",
        "PAPP": "Pineapple Energy",
    }.items():
        ListedTicker.objects.create(symbol=symbol, name=name, source="test", refreshed_at=now)
    results = [r["symbol"] for r in client.get("/api/tickers/search", {"q": "app"}).json()["results"]]
    assert results == ["APP", "APPX", "AAPL", "PAPP"]


# -- the shared Polygon budget: a bounded wait ------------------------------------------------------------------


def test_a_polygon_request_whose_slot_is_too_far_fails_at_once_and_sends_nothing(server):
    """At the free plan's 5 requests a minute, with another process holding the next slots, a caller allowed 2 s
    fails now instead of sleeping until its turn."""
    other_process = Pacer.per_minute("polygon", 5, sleep=lambda seconds: None)
    other_process.acquire()
    other_process.acquire()
    provider = PolygonProvider(api_key="k", base_url=server.url, requests_per_minute=5, retries=0, max_wait=2)
    started = time.monotonic()
    with pytest.raises(ProviderError, match="more than the 2s allowed"):
        provider.grouped_daily(dt.date(2026, 11, 20))
    assert time.monotonic() - started < 1.0  # generous: without the bound it sleeps 12 s or more
    assert server.count() == 0


# -- a real gunicorn under a search flood ------------------------------------------------------------------------


def _bench():
    spec = importlib.util.spec_from_file_location("web_latency", Path(__file__).parents[1] / "bench" / "web_latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_healthz_and_pages_answer_while_a_search_flood_runs_on_gunicorn(tmp_path):
    """Before the directory, each search held one of gunicorn's threads for minutes behind the 5-a-minute budget
    (here the fake Polygon also takes 5 s an answer): /healthz went unanswered for over a minute."""
    bench = _bench()
    polygon = FakePolygon().start()
    polygon.names.update(MANY)
    site, port, _env = bench.start_site(tmp_path, polygon.url)
    try:
        loaded = polygon.count()
        polygon.script("/", *[Reply(body={}, delay=5) for _ in range(1000)])
        results = bench.flood(port, seconds=3, clients=12, timeout=10)
    finally:
        bench.stop_site(site)
        polygon.stop()
    assert loaded == 3 and polygon.count() == loaded  # the web sent Polygon nothing
    assert results["search"] and all(status == 200 for status, _ in results["search"])
    for probe in ("healthz", "home"):
        assert results[probe] and all(status == 200 for status, _ in results[probe])
        # Generous for a shared 2-core machine (bench/web_latency.py measures it); the old code took over 60 s.
        assert max(seconds for _, seconds in results[probe]) < 2.0


def _listing(database: Path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(database) as connection:
        return set(connection.execute("SELECT symbol, name, refreshed_at FROM markets_listedticker"))


@pytest.mark.slow
def test_a_refresh_killed_while_it_lists_leaves_the_directory_as_it_was(tmp_path):
    bench = _bench()
    polygon = FakePolygon().start()
    polygon.names.update(MANY)
    env = {**bench.site_env(tmp_path, polygon.url), "POLYGON_REQUESTS_PER_MINUTE": "600000", "POLYGON_RETRIES": "0"}
    database = tmp_path / "web.sqlite3"
    try:
        assert bench.manage(env, "migrate", "-v0").wait() == 0
        assert bench.manage(env, "refresh_tickers", stdout=subprocess.DEVNULL).wait() == 0
        before = _listing(database)
        assert len(before) == len(polygon._universe())
        requests = polygon.count(LISTING)
        # Page 1 answers, page 2 hangs: the process is killed with a page of the list in hand.
        polygon.script(LISTING, Reply(body=first_page(polygon)), Reply(body={}, delay=60))
        refresh = bench.manage(env, "refresh_tickers", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while polygon.count(LISTING) < requests + 2:
            assert time.monotonic() < deadline and refresh.poll() is None
            time.sleep(0.05)
        refresh.send_signal(signal.SIGKILL)
        refresh.wait(timeout=10)
        assert _listing(database) == before
        # The next refresh starts over and completes.
        assert bench.manage(env, "refresh_tickers", stdout=subprocess.DEVNULL).wait() == 0
        after = _listing(database)
        assert {s for s, _, _ in after} == {s for s, _, _ in before} and after != before
    finally:
        polygon.stop()
