"""Indicators against values worked out by hand on small series."""

from __future__ import annotations

import numpy as np
import pytest

from markets import indicators


def row(*values: float) -> np.ndarray:
    return np.array([values], dtype=float)


def test_rsi_wilder_by_hand():
    # Period 2 keeps the arithmetic checkable. Changes: +1, -1, +2, +1.
    closes = row(10, 11, 10, 12, 13)
    rsi = indicators.rsi_wilder(closes, period=2)[0]
    assert np.isnan(rsi[:2]).all()
    # Seed at the 2nd change: gains (1+0)/2 = 0.5, losses (0+1)/2 = 0.5 → 50.
    assert rsi[2] == pytest.approx(50.0)
    # Wilder: gain (0.5*1+2)/2 = 1.25, loss (0.5*1+0)/2 = 0.25 → 100*1.25/1.5.
    assert rsi[3] == pytest.approx(100 * 1.25 / 1.5)
    # gain (1.25+1)/2 = 1.125, loss 0.25/2 = 0.125 → 90.
    assert rsi[4] == pytest.approx(90.0)


def test_rsi_only_rises_is_100_and_flat_is_0():
    rising = row(*range(1, 20))
    assert indicators.rsi_wilder(rising)[0, -1] == pytest.approx(100.0)
    flat = row(*[5.0] * 20)
    assert indicators.rsi_wilder(flat)[0, -1] == 0.0


def test_rsi_of_a_short_history_starts_later_not_at_zero():
    closes = np.full((2, 20), np.nan)
    closes[0] = np.arange(20) + 10.0
    closes[1, 10:] = np.arange(10) + 10.0  # only 10 sessions: fewer than 14 changes
    rsi = indicators.rsi_wilder(closes)
    assert not np.isnan(rsi[0, 14]) and np.isnan(rsi[0, 13])
    assert np.isnan(rsi[1]).all()


def test_sma_by_hand_and_absent_before_the_window_fills():
    closes = row(1, 2, 3, 4, 5, 6)
    sma = indicators.sma(closes, 3)[0]
    assert np.isnan(sma[:2]).all()
    assert sma[2:].tolist() == pytest.approx([2, 3, 4, 5])


def test_drawdown_from_the_window_high():
    closes = row(100, 120, 90, 110, 60)
    dd = indicators.drawdown(closes, window=3)[0]
    assert np.isnan(dd[:2]).all()
    assert dd[2] == pytest.approx((90 / 120 - 1) * 100)  # -25%
    assert dd[3] == pytest.approx((110 / 120 - 1) * 100)
    assert dd[4] == pytest.approx((60 / 110 - 1) * 100)  # 120 has left the window


def test_rolling_extremes_and_52_week_range():
    values = row(3, 1, 4, 1, 5, 9, 2, 6)
    assert indicators.rolling_max(values, 3)[0, 2:].tolist() == [4, 4, 5, 9, 9, 9]
    assert indicators.rolling_min(values, 3)[0, 2:].tolist() == [1, 1, 1, 1, 2, 2]


def test_change_pct_and_rank_by_drawdown():
    assert indicators.change_pct(row(100, 110, 99))[0, 1:].tolist() == pytest.approx([10.0, -10.0])
    ranks = indicators.rank_by_drawdown(np.array([-5.0, np.nan, -30.0, 0.0]))
    assert ranks[0] == 2 and np.isnan(ranks[1]) and ranks[2] == 1 and ranks[3] == 3


def test_compute_works_on_many_tickers_at_once():
    rng = np.random.default_rng(7)
    closes = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (30, 300)), axis=1))
    result = indicators.compute(closes)
    for i in (0, 17, 29):
        single = indicators.compute(closes[i : i + 1])
        assert np.allclose(result.rsi14[i], single.rsi14[0], equal_nan=True)
        assert np.allclose(result.sma50[i], single.sma50[0], equal_nan=True)
    assert result.high52.shape == closes.shape
    assert np.isnan(result.high52[:, :251]).all() and not np.isnan(result.high52[:, 251:]).any()
