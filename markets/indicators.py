"""Technical indicators for many tickers at once.

Every function takes a 2-D array, one row per ticker and one column per session, oldest first. Rows are
right-aligned: a ticker with a short history has NaN in its first columns. A value that cannot be computed yet
(too little history) is NaN, never zero.

Nothing loops over tickers or days in Python. Wilder's smoothing is recursive, so RSI runs it as one matrix product
per block of 32 sessions for a whole chunk of tickers; the per-ticker seeding (a simple mean of the first 14
changes, as TA-Lib seeds it) is folded into the input beforehand so the recursion is the same for every row.
Large matrices are cut into chunks of rows that fit the processor's cache and run on all cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

RSI_PERIOD = 14
SMA_PERIOD = 50
DRAWDOWN_WINDOW = 180
YEAR_WINDOW = 252


# Rows per chunk: a chunk's temporaries stay in the processor's cache, and numpy releases the GIL inside each
# operation, so chunks run on every core at once.
CHUNK_ROWS = 256
WORKERS = max(1, min(4, os.cpu_count() or 1))


def _run_chunks(run: Callable[[int], None], rows: int) -> None:
    starts = range(0, rows, CHUNK_ROWS)
    if WORKERS > 1 and rows > CHUNK_ROWS:
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="indicators") as pool:
            list(pool.map(run, starts))
    else:
        for start in starts:
            run(start)


def _by_chunks(fn: Callable[[np.ndarray], np.ndarray], values: np.ndarray) -> np.ndarray:
    out = np.empty(values.shape)

    def run(start: int) -> None:
        out[start : start + CHUNK_ROWS] = fn(values[start : start + CHUNK_ROWS])

    _run_chunks(run, values.shape[0])
    return out


def _as_matrix(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values.reshape(1, -1) if values.ndim == 1 else values


def first_valid(values: np.ndarray) -> np.ndarray:
    """Column of each row's first value; the row's length when it has none."""
    valid = ~np.isnan(values)
    first = np.argmax(valid, axis=1)
    first[~valid.any(axis=1)] = values.shape[1]
    return first


def _has_gaps(values: np.ndarray, first: np.ndarray) -> bool:
    """True when a NaN sits after a row's first value (histories are normally contiguous)."""
    leading = np.minimum(first, values.shape[1]).sum()
    return int(np.isnan(values).sum()) != int(leading)


def rolling_max(values: np.ndarray, window: int) -> np.ndarray:
    """Maximum over the last ``window`` columns; NaN where the window reaches before a ticker's history."""
    return _rolling_extreme(values, window, np.maximum)


def rolling_min(values: np.ndarray, window: int) -> np.ndarray:
    return _rolling_extreme(values, window, np.minimum)


def _rolling_extreme(values: np.ndarray, window: int, op: np.ufunc) -> np.ndarray:
    """By doubling: after k steps ``span[:, j]`` is the extreme of the 2**k columns from j, whole rows at a time.

    Any window is then the union of two such spans (one from its start, one ending at its end), so a window of
    252 takes 8 passes over the matrix. NaN propagates, so a window that reaches before a history is absent.
    """
    values = _as_matrix(values)
    rows, cols = values.shape
    out = np.full((rows, cols), np.nan)
    if cols < window:
        return out
    span, width = values, 1
    while width * 2 <= window:
        span = op(span[:, : span.shape[1] - width], span[:, width:])
        width *= 2
    count = cols - window + 1
    op(span[:, :count], span[:, window - width : window - width + count], out=out[:, window - 1 :])
    return out


def _blank_before(values: np.ndarray, ends: np.ndarray) -> None:
    """Set ``values[i, :ends[i]]`` to NaN, one slice per distinct end (tickers mostly share their start)."""
    ends = np.clip(ends, 0, values.shape[1])
    for end in np.unique(ends):
        if end > 0:
            values[ends == end, :end] = np.nan


def _sma_rows(values: np.ndarray, window: int) -> np.ndarray:
    rows, cols = values.shape
    out = np.empty((rows, cols))
    out[:, : window - 1] = np.nan
    first = first_valid(values)
    gaps = _has_gaps(values, first)
    has_nan = bool(first.any()) or gaps
    sums = np.cumsum(np.nan_to_num(values, nan=0.0) if has_nan else values, axis=1)
    target = out[:, window - 1 :]
    target[:, 0] = sums[:, window - 1]
    np.subtract(sums[:, window:], sums[:, : cols - window], out=target[:, 1:])
    target /= window
    _blank_before(out, first + window - 1)
    if gaps:
        missing = np.cumsum(np.isnan(values), axis=1)
        in_window = missing[:, window - 1 :].copy()
        in_window[:, 1:] -= missing[:, : cols - window]
        target[in_window > 0] = np.nan
    return out


def sma(values: np.ndarray, window: int) -> np.ndarray:
    """Simple moving average; NaN until ``window`` valid values are in the window."""
    values = _as_matrix(values)
    if values.shape[1] < window:
        return np.full(values.shape, np.nan)
    if values.shape[0] <= CHUNK_ROWS:
        return _sma_rows(values, window)
    return _by_chunks(lambda block: _sma_rows(block, window), values)


def _wilder_operator(period: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Wilder's smoothing over ``block`` sessions as one matrix product.

    With ``d = (period - 1) / period``, ``avg[j] = d**(j + 1) * avg_before + sum_k<=j d**(j - k) * x[k]``:
    the first term's factors are returned as ``carry``, the second is ``x @ weights`` (``x`` already divided by
    ``period``, which the weights do). Blocks stay short so the
    powers of ``d`` stay far from underflow and the rounding stays that of a handful of additions.
    """
    decay = (period - 1) / period
    i = np.arange(block)
    lag = i[None, :] - i[:, None]
    # The 1 / period of each new term is folded into the weights.
    weights = np.where(lag >= 0, decay ** np.clip(lag, 0, None) / period, 0.0)
    carry = decay ** (i + 1)
    return weights, carry


def _wilder_smooth(moves: np.ndarray, period: int, block: int = 32) -> None:
    """Run ``avg = (avg * (period - 1) + x) / period`` along each row from 0, in place, a block of sessions at once."""
    weights, carry = _wilder_operator(period, block)
    rows, cols = moves.shape
    state = np.zeros(rows)
    for start in range(0, cols, block):
        width = min(block, cols - start)
        smoothed = moves[:, start : start + width] @ weights[:width, :width]
        smoothed += state[:, None] * carry[None, :width]
        moves[:, start : start + width] = smoothed
        state = smoothed[:, -1].copy()


def _rsi_rows(closes: np.ndarray, period: int) -> np.ndarray:
    rows, cols = closes.shape
    out = np.empty((rows, cols))
    out[:, 0] = np.nan
    first = first_valid(closes)
    # With S the smoothing, gains g = (|c| + c) / 2 and losses l = (|c| - c) / 2, so
    # RSI = 100 S(g) / (S(g) + S(l)) = 50 (1 + S(c) / S(|c|)): two smoothings of cheaper inputs.
    moves = np.subtract(closes[:, 1:], closes[:, :-1])  # moves[:, t] is the change into session t + 1
    gaps = _has_gaps(closes, first)
    if first.any() or gaps:
        np.nan_to_num(moves, copy=False, nan=0.0)  # no move before a ticker's history
    sizes = np.abs(moves)
    # Fold each ticker's seeding into its input: zero before the seed, and at the seed the sum of its first
    # ``period`` changes, so the same recursion from 0 gives TA-Lib's simple-mean seed there, whatever the row.
    seed = first + period - 1  # the change at which each ticker's averages are first defined
    idx = np.flatnonzero(seed < cols - 1)
    window = seed[idx][:, None] - (period - 1) + np.arange(period)[None, :]
    for series in (moves, sizes):
        total = series[idx[:, None], window].sum(axis=1)
        series[idx[:, None], window[:, :-1]] = 0.0  # before a ticker's first change they are already 0
        series[idx, seed[idx]] = total
        _wilder_smooth(series, period)
    value = out[:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(moves, sizes, out=value)
    # 0 / 0: no move at all over the smoothing, which TA-Lib reports as 0 (and before the seed, absent below).
    np.nan_to_num(value, copy=False, nan=-1.0)
    value += 1.0
    value *= 50.0
    _blank_before(value, seed)
    if gaps:
        # A gap breaks Wilder's recursion: after it the value is not TA-Lib's, so it is absent.
        change = np.diff(closes, axis=1)
        broken = np.cumsum(np.isnan(change), axis=1) > np.minimum(first, cols - 1)[:, None]
        value[broken] = np.nan
    return out


def rsi_wilder(closes: np.ndarray, period: int = RSI_PERIOD) -> np.ndarray:
    """Relative Strength Index with Wilder's smoothing, as TA-Lib's RSI computes it.

    The first average gain and loss are simple means of the first ``period`` changes; after that each average is
    ``(previous * (period - 1) + current) / period``. The first value is at the ``period``-th change. Equal to
    TA-Lib's RSI to rounding (far better than 1e-9) from its first value on.
    """
    closes = _as_matrix(closes)
    if closes.shape[1] <= period:
        return np.full(closes.shape, np.nan)
    if closes.shape[0] <= CHUNK_ROWS:
        return _rsi_rows(closes, period)
    return _by_chunks(lambda block: _rsi_rows(block, period), closes)


def change_pct(closes: np.ndarray) -> np.ndarray:
    closes = _as_matrix(closes)
    out = np.full(closes.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(closes[:, 1:], closes[:, :-1], out=out[:, 1:])
    out[:, 1:] -= 1.0
    out[:, 1:] *= 100.0
    return out


def drawdown(closes: np.ndarray, window: int = DRAWDOWN_WINDOW) -> np.ndarray:
    """Percent below the highest close of the last ``window`` sessions (0 at a new high, negative below it)."""
    closes = _as_matrix(closes)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = closes / rolling_max(closes, window)
    out -= 1.0
    out *= 100.0
    return out


@dataclass(frozen=True)
class IndicatorSet:
    """Every indicator for every ticker and session, aligned with the input matrix."""

    rsi14: np.ndarray
    sma50: np.ndarray
    drawdown180: np.ndarray
    change_pct: np.ndarray
    high52: np.ndarray
    low52: np.ndarray


def compute(closes: np.ndarray, highs: np.ndarray | None = None, lows: np.ndarray | None = None) -> IndicatorSet:
    """All indicators at once; the 52-week range uses daily highs and lows when given, closes otherwise."""
    closes = _as_matrix(closes)
    highs = closes if highs is None else _as_matrix(highs)
    lows = closes if lows is None else _as_matrix(lows)
    names = ("rsi14", "sma50", "drawdown180", "change_pct", "high52", "low52")
    outputs = {name: np.empty(closes.shape) for name in names}

    def run(start: int) -> None:
        rows = slice(start, start + CHUNK_ROWS)
        c = closes[rows]
        outputs["rsi14"][rows] = rsi_wilder(c) if c.shape[1] > RSI_PERIOD else np.nan
        outputs["sma50"][rows] = sma(c, SMA_PERIOD)
        outputs["drawdown180"][rows] = drawdown(c)
        outputs["change_pct"][rows] = change_pct(c)
        outputs["high52"][rows] = rolling_max(highs[rows], YEAR_WINDOW)
        outputs["low52"][rows] = rolling_min(lows[rows], YEAR_WINDOW)

    _run_chunks(run, closes.shape[0])
    return IndicatorSet(**outputs)


def rank_by_drawdown(latest_drawdowns: np.ndarray) -> np.ndarray:
    """1 for the ticker furthest below its high; NaN where the drawdown is not defined."""
    values = np.asarray(latest_drawdowns, dtype=float)
    ranks = np.full(values.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(values))
    order = defined[np.argsort(values[defined], kind="stable")]
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks
