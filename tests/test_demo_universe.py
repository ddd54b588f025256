"""The demo's prices look like the market's: plausible levels, a volatility that fits each business, and every
large US name listed, so a newcomer who types a real symbol finds it.

The numbers the tests compare against come from the demo's own table (anchor and volatility class per symbol);
the bands around them are derived from the volatility, never typed in.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math

import numpy as np
import pytest
from django.core.management import call_command

from markets import calendar
from markets.models import Ticker
from markets.providers import demo
from markets.providers.demo import (
    ANCHOR_DATE,
    DEFAULT_ANCHOR_RANGE,
    DEFAULT_VOLATILITY_CLASS,
    DEMO_EPOCH,
    DEMO_UNIVERSE,
    SESSIONS_PER_YEAR,
    VOLATILITY_BY_CLASS,
    DemoProvider,
    price_profile,
)
from newsletters.demo import DEMO_SUBSCRIBERS

YEAR_TO_ANCHOR = (calendar.trading_days_ending(ANCHOR_DATE, SESSIONS_PER_YEAR + 1)[0], ANCHOR_DATE)
# Names every newcomer may type: S&P 100, the rest of the Nasdaq-100, and the much-followed others.
SAMPLE = {
    "PLTR": "Palantir",
    "JPM": "JPMorgan",
    "LLY": "Lilly",
    "ASML": "ASML",
    "MELI": "MercadoLibre",
    "COIN": "Coinbase",
    "HOOD": "Robinhood",
    "SHOP": "Shopify",
    "UBER": "Uber",
    "ABNB": "Airbnb",
    "SNOW": "Snowflake",
}


def closes(symbol: str, start: dt.date, end: dt.date, provider: DemoProvider | None = None) -> np.ndarray:
    return np.array([bar.close for bar in (provider or DemoProvider()).daily_bars(symbol, start, end)])


def realised_volatility(symbol: str) -> float:
    """Annualised standard deviation of the daily log returns over the year to the anchor date."""
    return float(np.diff(np.log(closes(symbol, *YEAR_TO_ANCHOR))).std() * math.sqrt(SESSIONS_PER_YEAR))


def whole_history(symbol: str, through: dt.date) -> np.ndarray:
    """Open, high, low, close rows from the epoch to ``through``: the arrays the bars are cut from (the whole
    universe over twenty years as Bar objects would take most of a minute)."""
    span = demo._span(DEMO_EPOCH, through)
    sessions = bisect.bisect_right(demo._sessions(*span)[0], through)
    return demo._series(symbol, *span)[:sessions, :4]


@pytest.fixture
def cold_cache():
    """Every series computed afresh: a bar must not depend on what was asked for before it."""
    demo._series.cache_clear()
    yield
    demo._series.cache_clear()


# -- the directory --------------------------------------------------------------------------------------------


def test_large_us_names_are_listed_in_the_demo_directory():
    listed = {t.symbol: t.name for t in DemoProvider().list_tickers()}
    assert len(listed) >= 200
    for symbol, name in SAMPLE.items():
        assert name.lower() in listed[symbol].lower()


@pytest.mark.django_db
@pytest.mark.parametrize("symbol", sorted(SAMPLE))
def test_each_large_name_is_found_on_the_subscribe_pages_search_by_symbol_and_by_company(client, symbol):
    by_symbol = client.get("/api/tickers/search", {"q": symbol.lower()}).json()["results"]
    assert by_symbol[0] == {"symbol": symbol, "name": DEMO_UNIVERSE[symbol]}
    by_company = client.get("/api/tickers/search", {"q": SAMPLE[symbol]}).json()["results"]
    assert symbol in [result["symbol"] for result in by_company]


@pytest.mark.django_db
def test_a_newcomer_who_types_real_symbols_is_subscribed(client, outbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/", {"email": "newcomer@example.com", "tickers": "pltr, COIN, HOOD, SNOW"})
    assert response.status_code == 302
    assert sorted(
        Ticker.objects.filter(subscribers__email="newcomer@example.com").values_list("symbol", flat=True)
    ) == [
        "COIN",
        "HOOD",
        "PLTR",
        "SNOW",
    ]


@pytest.mark.django_db
def test_seed_demo_names_the_followed_tickers_and_leaves_the_rest_to_the_directory(capsys):
    call_command("seed_demo")
    followed = {symbol for _, _, symbols in DEMO_SUBSCRIBERS for symbol in symbols}
    assert dict(Ticker.objects.values_list("symbol", "name")) == {s: DEMO_UNIVERSE[s] for s in followed}
    assert f"{len(followed)} tickers for the demo subscribers ({len(DEMO_UNIVERSE)} listed" in capsys.readouterr().out


# -- the prices -----------------------------------------------------------------------------------------------


def test_a_new_name_has_a_history():
    bars = DemoProvider().daily_bars("PLTR", dt.date(2026, 10, 1), dt.date(2026, 11, 20))
    assert bars and all(b.close > 0 for b in bars)


def test_bars_are_the_same_whatever_was_asked_before_and_whatever_the_range(cold_cache):
    day, earlier = dt.date(2026, 11, 20), dt.date(2025, 6, 2)
    alone = DemoProvider().daily_bars("NVDA", day, day)
    demo._series.cache_clear()
    grouped = DemoProvider().grouped_daily(day)["NVDA"]
    # Ranges that reach into other years are computed as other, longer series.
    since_epoch = {bar.date: bar for bar in DemoProvider().daily_bars("NVDA", DEMO_EPOCH, day)}
    into_2028 = DemoProvider().daily_bars("NVDA", earlier, dt.date(2028, 3, 1))
    assert alone == [grouped] == [since_epoch[day]] == [bar for bar in into_2028 if bar.date == day]
    assert into_2028[0] == since_epoch[earlier] == DemoProvider().grouped_daily(earlier)["NVDA"]
    demo._series.cache_clear()
    assert DemoProvider().grouped_daily(dt.date(2028, 3, 1))["NVDA"] == into_2028[-1]


def test_every_name_trades_near_its_anchor_in_the_weeks_around_the_anchor_date():
    """Five standard deviations of the walk over the sessions between the day and the anchor date: a wider miss
    would mean the walk does not start from the anchor, a narrower band would only test the random draws."""
    sessions = calendar.trading_days_ending(ANCHOR_DATE, 16)
    day, between = sessions[0], len(sessions) - 1
    bars = DemoProvider().grouped_daily(day)
    assert set(bars) == set(DEMO_UNIVERSE)
    for symbol, bar in bars.items():
        profile = price_profile(symbol)
        band = 5 * profile.volatility * math.sqrt(between / SESSIONS_PER_YEAR)
        assert abs(math.log(bar.close / profile.anchor)) < band, (symbol, bar.close, profile.anchor)


def test_a_staple_moves_clearly_less_than_a_chip_maker_over_a_year():
    staples = max(realised_volatility(s) for s in ("KO", "PG"))
    chips = min(realised_volatility(s) for s in ("NVDA", "AMD"))
    assert staples < 0.6 * chips


def test_each_names_daily_moves_match_the_volatility_of_its_class():
    """Within 30% of the class's figure over one year: the sampling error of a year of fat-tailed returns."""
    year = len(calendar.trading_days_between(*YEAR_TO_ANCHOR))
    assert DemoProvider().daily_bars("KO", *YEAR_TO_ANCHOR)[-1].close == whole_history("KO", ANCHOR_DATE)[-1, 3]
    for symbol in DEMO_UNIVERSE:
        close = whole_history(symbol, ANCHOR_DATE)[-year:, 3]
        realised = np.diff(np.log(close)).std() * math.sqrt(SESSIONS_PER_YEAR)
        assert 0.7 < realised / price_profile(symbol).volatility < 1.3, symbol


def test_twenty_years_of_history_stay_plausible():
    """From the epoch to 2035 every bar is a bar (low <= open, close <= high, all positive), no session moves by
    more than 40%, and every close stays within eight annual standard deviations of the anchor: the trend over the
    years plus a wander the pull back towards it keeps to about three."""
    for symbol in DEMO_UNIVERSE:
        open_, high, low, close = whole_history(symbol, dt.date(2035, 12, 31)).T
        profile = price_profile(symbol)
        assert (low > 0).all() and (low <= np.minimum(open_, close)).all() and (high >= np.maximum(open_, close)).all()
        assert np.abs(np.diff(np.log(close))).max() < math.log(1.4), symbol
        assert np.abs(np.log(close / profile.anchor)).max() < 8 * profile.volatility, symbol


def test_an_unknown_symbol_gets_a_deterministic_default_walk():
    provider = DemoProvider(universe={"QQZZ": "Made-up Holdings"})
    profile = price_profile("QQZZ")
    assert profile == price_profile("QQZZ") and profile.volatility == VOLATILITY_BY_CLASS[DEFAULT_VOLATILITY_CLASS]
    assert DEFAULT_ANCHOR_RANGE[0] <= profile.anchor <= DEFAULT_ANCHOR_RANGE[1]
    assert price_profile("QQZY").anchor != profile.anchor
    (at_anchor,) = provider.daily_bars("QQZZ", ANCHOR_DATE, ANCHOR_DATE)
    assert at_anchor.close == pytest.approx(profile.anchor, abs=1e-4)
    assert len(provider.daily_bars("QQZZ", *YEAR_TO_ANCHOR)) == SESSIONS_PER_YEAR + 1
    assert provider.grouped_daily(ANCHOR_DATE) == {"QQZZ": at_anchor}
    assert provider.daily_bars("PLTR", *YEAR_TO_ANCHOR) == []  # not in this provider's universe: not listed
