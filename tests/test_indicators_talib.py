"""Indicators for many tickers at once, against TA-Lib on each ticker alone, over a few thousand days."""

from __future__ import annotations

import numpy as np
import pytest

from markets import indicators

talib = pytest.importorskip("talib")

DAYS = 3000


@pytest.fixture(scope="module")
def market() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2026)
    tickers = 12
    returns = rng.normal(0.0002, rng.uniform(0.005, 0.04, (tickers, 1)), (tickers, DAYS))
    closes = rng.uniform(5, 500, (tickers, 1)) * np.exp(np.cumsum(returns, axis=1))
    closes[3, 100:140] = closes[3, 99]  # a stretch with no move at all
    highs = closes * (1 + rng.uniform(0, 0.02, closes.shape))
    lows = closes * (1 - rng.uniform(0, 0.02, closes.shape))
    # Right-aligned shorter histories: listed later, one too short for RSI, one with no data at all.
    for row, start in ((5, 1000), (6, DAYS - 200), (7, DAYS - 10), (8, DAYS)):
        closes[row, :start] = highs[row, :start] = lows[row, :start] = np.nan
    return closes, highs, lows


def own_history(values: np.ndarray) -> tuple[np.ndarray, int]:
    start = int(np.argmax(~np.isnan(values))) if (~np.isnan(values)).any() else len(values)
    return values[start:], start


def test_rsi_equals_talib_after_the_warm_up(market):
    closes, _, _ = market
    ours = indicators.compute(closes).rsi14
    for i, row in enumerate(closes):
        data, start = own_history(row)
        assert np.isnan(ours[i, : start + 14]).all()  # absent during the warm-up, never zero
        if len(data) <= 14:
            assert np.isnan(ours[i]).all()
            continue
        expected = talib.RSI(data, timeperiod=14)
        np.testing.assert_allclose(ours[i, start + 14 :], expected[14:], rtol=0, atol=1e-9)


def test_sma50_equals_talib(market):
    closes, _, _ = market
    ours = indicators.compute(closes).sma50
    for i, row in enumerate(closes):
        data, start = own_history(row)
        assert np.isnan(ours[i, : start + 49]).all()
        if len(data) >= 50:
            np.testing.assert_allclose(ours[i, start:], talib.SMA(data, timeperiod=50), rtol=1e-12, atol=1e-9)


def test_drawdown_and_52_week_range_equal_talib_rolling_extremes(market):
    closes, highs, lows = market
    result = indicators.compute(closes, highs, lows)
    for i, row in enumerate(closes):
        data, start = own_history(row)
        if len(data) < 252:
            assert np.isnan(result.high52[i]).all() and np.isnan(result.low52[i]).all()
        if len(data) < 180:
            assert np.isnan(result.drawdown180[i]).all()
            continue
        expected = (data / talib.MAX(data, timeperiod=180) - 1) * 100
        np.testing.assert_allclose(result.drawdown180[i, start:], expected, rtol=0, atol=1e-9)
        if len(data) >= 252:
            np.testing.assert_allclose(result.high52[i, start:], talib.MAX(highs[i, start:], 252), atol=1e-12)
            np.testing.assert_allclose(result.low52[i, start:], talib.MIN(lows[i, start:], 252), atol=1e-12)
    assert (result.drawdown180[~np.isnan(result.drawdown180)] <= 1e-12).all()


def test_change_pct_equals_talib_rate_of_change(market):
    closes, _, _ = market
    ours = indicators.compute(closes).change_pct
    for i, row in enumerate(closes):
        data, start = own_history(row)
        if len(data) > 1:
            np.testing.assert_allclose(ours[i, start:], talib.ROCP(data, timeperiod=1) * 100, atol=1e-9)


def test_rank_by_drawdown_covers_every_ticker_with_a_drawdown(market):
    closes, _, _ = market
    latest = indicators.compute(closes).drawdown180[:, -1]
    ranks = indicators.rank_by_drawdown(latest)
    defined = ~np.isnan(latest)
    assert sorted(ranks[defined]) == list(range(1, defined.sum() + 1))
    assert latest[ranks == 1][0] == np.nanmin(latest)


def test_chunked_and_threaded_runs_give_the_same_numbers(market, monkeypatch):
    closes, highs, lows = market
    many = np.repeat(closes, 60, axis=0)  # more rows than one chunk
    whole = indicators.compute(many, np.repeat(highs, 60, axis=0), np.repeat(lows, 60, axis=0))
    monkeypatch.setattr(indicators, "WORKERS", 1)
    monkeypatch.setattr(indicators, "CHUNK_ROWS", 10_000)
    single = indicators.compute(many, np.repeat(highs, 60, axis=0), np.repeat(lows, 60, axis=0))
    for name in ("rsi14", "sma50", "drawdown180", "change_pct", "high52", "low52"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(single, name))


def test_a_gap_inside_a_history_makes_rsi_absent_after_it_not_wrong():
    rng = np.random.default_rng(3)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (1, 200)), axis=1))
    closes[0, 120] = np.nan
    rsi = indicators.rsi_wilder(closes)[0]
    np.testing.assert_allclose(rsi[14:120], talib.RSI(closes[0, :120], 14)[14:], atol=1e-9)
    assert np.isnan(rsi[120:]).all()
