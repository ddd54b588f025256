"""Indicators for 5,000 tickers x 1,260 sessions (five years), all at once; TA-Lib's RSI+SMA on the same data.

    .venv/bin/python bench/indicators.py [--tickers 5000] [--days 1260] [--repeat 3]

Prints the best of ``--repeat`` runs of each, after one warm-up run (the first touch of fresh memory is the
machine's, not the algorithm's). Target: all of Walter's indicators no slower than TA-Lib's RSI and SMA. Walter's
lines: whole series of every indicator (``compute``, what the shared tables get for a new ticker), RSI and SMA alone,
and what the daily job computes (``compute_latest``: every indicator at the latest session and the chart's SMA50).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import best_of

from markets import indicators
from markets.snapshots import CHART_SESSIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=5000)
    parser.add_argument("--days", type=int, default=1260)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(42)
    returns = rng.normal(0.0003, 0.02, (args.tickers, args.days))
    closes = rng.uniform(5, 500, (args.tickers, 1)) * np.exp(np.cumsum(returns, axis=1))
    highs = closes * (1 + rng.uniform(0, 0.02, closes.shape))
    lows = closes * (1 - rng.uniform(0, 0.02, closes.shape))

    print(f"{args.tickers} tickers x {args.days} sessions, best of {args.repeat} after a warm-up")
    all_seconds = best_of(args.repeat, lambda: indicators.compute(closes, highs, lows))
    print(f"walter, all indicators (RSI14, SMA50, drawdown180, change %, 52-week high/low): {all_seconds:.3f} s")
    rsi_sma = best_of(args.repeat, lambda: (indicators.rsi_wilder(closes), indicators.sma(closes, 50)))
    print(f"walter, RSI14 + SMA50 only:                                                   {rsi_sma:.3f} s")
    daily = best_of(
        args.repeat,
        lambda: indicators.compute_latest(closes, highs, lows, series_sessions=CHART_SESSIONS),
    )
    print(
        "walter, the daily job's indicators (all indicators at the latest session + the chart's SMA50 series): "
        f"{daily:.3f} s"
    )
    try:
        import talib
    except ImportError:
        print("TA-Lib is not installed: no comparison")
        return

    def with_talib() -> None:
        for row in closes:
            talib.RSI(row, timeperiod=14)
            talib.SMA(row, timeperiod=50)

    talib_seconds = best_of(args.repeat, with_talib)
    print(
        f"TA-Lib {talib.__version__}, RSI14 + SMA50, one call per ticker:                          {talib_seconds:.3f} s"
    )
    ours = indicators.compute(closes[:50])
    worst = max(float(np.nanmax(np.abs(ours.rsi14[i] - talib.RSI(closes[i], timeperiod=14)))) for i in range(50))
    print(f"largest |RSI difference| from TA-Lib over 50 tickers: {worst:.2e}")
    latest = indicators.compute_latest(closes[:50])
    worst_latest = max(abs(float(latest.rsi14[i]) - talib.RSI(closes[i], timeperiod=14)[-1]) for i in range(50))
    print(f"largest |latest RSI difference| from TA-Lib over 50 tickers: {worst_latest:.2e}")
    ratio = rsi_sma / talib_seconds
    verdict = "meets" if ratio <= 1 else "misses"
    print(f"RSI+SMA: walter/TA-Lib = {ratio:.2f} ({verdict} the target of 1.00)")
    ratio = all_seconds / talib_seconds
    verdict = "meets" if ratio <= 1 else "misses"
    print(f"all indicators, full series: walter/TA-Lib = {ratio:.2f} ({verdict} the target of 1.00)")
    ratio = daily / talib_seconds
    verdict = "meets" if ratio <= 1 else "misses"
    print(
        f"daily job, all indicators at the latest session: walter/TA-Lib = {ratio:.2f} ({verdict} the target of 1.00)"
    )


if __name__ == "__main__":
    main()
