"""The latest session's indicators equal the full series' last column, and TA-Lib's RSI, whatever the history."""

from __future__ import annotations

import numpy as np
import pytest

from markets import indicators

talib = pytest.importorskip("talib")

NAMES = ("rsi14", "sma50", "drawdown180", "change_pct", "high52", "low52")


def prices(rng: np.random.Generator, tickers: int, sessions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    returns = rng.normal(0.0002, rng.uniform(0.005, 0.04, (tickers, 1)), (tickers, sessions))
    closes = rng.uniform(5, 500, (tickers, 1)) * np.exp(np.cumsum(returns, axis=1))
    highs = closes * (1 + rng.uniform(0, 0.02, closes.shape))
    lows = closes * (1 - rng.uniform(0, 0.02, closes.shape))
    return closes, highs, lows


def assert_same(expected: np.ndarray, actual: np.ndarray) -> None:
    """Equal to 1e-9 and NaN at the same places (an undefined value never comes back as a number)."""
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-9)


def assert_latest_equals_compute(closes, highs=None, lows=None, series_sessions: int = 0):
    full = indicators.compute(closes, highs, lows)
    latest = indicators.compute_latest(closes, highs, lows, series_sessions=series_sessions)
    for name in NAMES:
        assert_same(getattr(full, name)[:, -1], getattr(latest, name))
    assert_same(full.sma50[:, full.sma50.shape[1] - min(series_sessions, closes.shape[1]) :], latest.sma50_series)
    return latest


def test_equals_compute_with_nan_prefixes_of_every_length():
    rng = np.random.default_rng(11)
    sessions = 400
    closes, highs, lows = prices(rng, 700, sessions)  # more rows than one chunk, so threads share the work
    starts = rng.integers(0, sessions + 1, closes.shape[0])
    starts[:12] = [0, 1, 13, 14, 15, 49, 50, 51, 179, 180, 251, sessions - 1]
    for row, start in enumerate(starts):
        closes[row, :start] = highs[row, :start] = lows[row, :start] = np.nan
    latest = assert_latest_equals_compute(closes, highs, lows, series_sessions=126)
    own = sessions - starts  # sessions of history per ticker
    assert np.isnan(latest.rsi14[own <= 14]).all() and not np.isnan(latest.rsi14[own > 14]).any()
    assert np.isnan(latest.sma50[own < 50]).all() and not np.isnan(latest.sma50[own >= 50]).any()
    assert np.isnan(latest.drawdown180[own < 180]).all() and not np.isnan(latest.drawdown180[own >= 180]).any()
    assert np.isnan(latest.high52[own < 252]).all() and not np.isnan(latest.low52[own >= 252]).any()
    # The chart's SMA50 starts at the 50th session of each history.
    assert np.isnan(latest.sma50_series[1, :]).sum() == 0
    assert np.isnan(latest.sma50_series[starts == sessions - 126][:, :49]).all()


@pytest.mark.parametrize("sessions", [1, 2, 14, 15, 16, 49, 50, 51, 179, 180, 251, 252, 253])
def test_short_matrices_give_nan_where_compute_does(sessions):
    closes, highs, lows = prices(np.random.default_rng(sessions), 5, sessions)
    closes[1, : sessions // 2] = np.nan
    latest = assert_latest_equals_compute(closes, highs, lows, series_sessions=126)
    assert latest.sma50_series.shape == (5, min(126, sessions))
    assert not np.isnan(latest.rsi14[0]) if sessions > 14 else np.isnan(latest.rsi14).all()


def test_no_sessions_at_all_is_nan_everywhere():
    latest = indicators.compute_latest(np.empty((3, 0)), series_sessions=126)
    for name in NAMES:
        assert np.isnan(getattr(latest, name)).all() and getattr(latest, name).shape == (3,)
    assert latest.sma50_series.shape == (3, 0)


def test_flat_prices_are_rsi_zero_like_talib_and_never_nan_or_50():
    closes = np.full((3, 300), 20.0)
    closes[1, :200] = np.nan  # flat since its listing
    closes[2, :150] = 10 + np.arange(150.0)
    closes[2, 150:] = closes[2, 149]  # rose, then flat for 150 sessions: Wilder's average gain is tiny, not zero
    latest = assert_latest_equals_compute(closes, series_sessions=10)
    assert talib.RSI(closes[0], timeperiod=14)[-1] == 0.0
    assert latest.rsi14[0] == 0.0 and latest.rsi14[1] == 0.0
    assert latest.rsi14[2] == pytest.approx(talib.RSI(closes[2], timeperiod=14)[-1], abs=1e-9)
    assert latest.rsi14[2] == pytest.approx(100.0)
    assert latest.change_pct.tolist() == [0.0, 0.0, 0.0] and latest.drawdown180[0] == 0.0


def test_only_losses_is_zero_and_only_gains_is_100():
    falling = np.linspace(100, 50, 60)[None, :]
    rising = np.linspace(50, 100, 60)[None, :]
    assert indicators.compute_latest(falling).rsi14[0] == pytest.approx(0.0, abs=1e-9)
    assert indicators.compute_latest(rising).rsi14[0] == pytest.approx(100.0, abs=1e-9)


def test_rsi_equals_talib_over_thousands_of_sessions():
    closes, _, _ = prices(np.random.default_rng(5), 8, 4000)
    closes[3, 1000:1300] = closes[3, 999]  # a long stretch with no move at all
    closes[5, :2500] = np.nan  # listed later
    latest = indicators.compute_latest(closes)
    for row in range(closes.shape[0]):
        own = closes[row][~np.isnan(closes[row])]
        assert latest.rsi14[row] == pytest.approx(talib.RSI(own, timeperiod=14)[-1], abs=1e-9)
        assert latest.sma50[row] == pytest.approx(talib.SMA(own, timeperiod=50)[-1], abs=1e-9)
    # Ending on the flat stretch, RSI is what the decayed averages say, not 0 or 50.
    ended_flat = indicators.compute_latest(closes[3:4, :1300]).rsi14[0]
    assert ended_flat == pytest.approx(talib.RSI(closes[3, :1300], timeperiod=14)[-1], abs=1e-9)
    assert 0 < ended_flat < 100


def test_a_gap_or_a_missing_last_bar_gives_what_compute_gives():
    closes, highs, lows = prices(np.random.default_rng(8), 6, 300)
    closes[0, 120] = np.nan  # a gap deep in the history: no RSI after it, as compute says; SMA50 and drawdown fine
    closes[1, 280] = np.nan  # a gap inside the last 50 sessions
    closes[2, -1] = np.nan  # no bar for the latest session
    highs[3, 100] = np.nan  # a missing high inside the 52-week window
    latest = assert_latest_equals_compute(closes, highs, lows, series_sessions=126)
    assert np.isnan(latest.rsi14[:3]).all() and not np.isnan(latest.rsi14[3:]).any()
    assert not np.isnan(latest.sma50[0]) and np.isnan(latest.sma50[1]) and np.isnan(latest.high52[3])


def test_one_ticker_as_a_vector_and_no_chart_series():
    closes, _, _ = prices(np.random.default_rng(9), 1, 100)
    latest = indicators.compute_latest(closes[0])
    assert latest.rsi14.shape == (1,) and latest.sma50_series.shape == (1, 0)
    assert latest.rsi14[0] == pytest.approx(talib.RSI(closes[0], timeperiod=14)[-1], abs=1e-9)


def test_chunked_and_threaded_runs_give_the_same_numbers(monkeypatch):
    closes, highs, lows = prices(np.random.default_rng(10), 600, 300)
    closes[::7, :100] = np.nan
    threaded = indicators.compute_latest(closes, highs, lows, series_sessions=126)
    monkeypatch.setattr(indicators, "WORKERS", 1)
    monkeypatch.setattr(indicators, "CHUNK_ROWS", 10_000)
    single = indicators.compute_latest(closes, highs, lows, series_sessions=126)
    for name in (*NAMES, "sma50_series"):
        np.testing.assert_array_equal(getattr(threaded, name), getattr(single, name))
