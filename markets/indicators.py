"""Technical indicators for many tickers at once.

Every function takes a 2-D array, one row per ticker and one column per session, oldest first. Rows are
right-aligned: a ticker with a short history has NaN in its first columns. A value that cannot be computed yet
(too little history) is NaN, never zero.

Nothing loops over tickers or days in Python. Wilder's smoothing is recursive, so RSI runs it as one matrix product
per block of 32 sessions for a whole chunk of tickers; the per-ticker seeding (a simple mean of the first 14
changes, as TA-Lib seeds it) is folded into the input beforehand so the recursion is the same for every row.
Large matrices are cut into chunks of rows that fit the processor's cache and run on all cores.

``compute`` gives whole series (what the shared tables publish for a new ticker); ``compute_latest`` gives the
last session only (what a daily note shows), where Wilder's average has a closed form: one weighted sum per row.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

RSI_PERIOD = 14
SMA_PERIOD = 50
DRAWDOWN_WINDOW = 180
YEAR_WINDOW = 252


# Rows per chunk: a chunk's temporaries stay in the processor's cache, and numpy releases the GIL inside each
# operation, so chunks run on every core at once.
CHUNK_ROWS = 256
WORKERS = max(1, min(4, os.cpu_count() or 1))
# Sessions per matrix product in the recursive scans (Wilder's smoothing, running sums).
SCAN_BLOCK = 32


def _run_chunks(run: Callable[[int], None], rows: int) -> None:
    starts = range(0, rows, CHUNK_ROWS)
    # The chunks already keep every core busy; BLAS's own threads on these small matrix products would only
    # fight them for the cores (about twice slower here).
    with threadpool_limits(limits=1, user_api="blas"):
        if WORKERS > 1 and rows > CHUNK_ROWS:
            with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="indicators") as pool:
                list(pool.map(run, starts))
        else:
            for start in starts:
                run(start)


def _by_chunks(fn: Callable[[np.ndarray, np.ndarray], None], values: np.ndarray) -> np.ndarray:
    """Run ``fn(rows, out_rows)`` over chunks of rows, writing into one result matrix allocated once."""
    out = np.empty(values.shape)

    def run(start: int) -> None:
        fn(values[start : start + CHUNK_ROWS], out[start : start + CHUNK_ROWS])

    _run_chunks(run, values.shape[0])
    return out


_scratch = threading.local()


def _buffer(name: str, shape: tuple[int, int]) -> np.ndarray:
    """A scratch matrix of this thread, reused from chunk to chunk and call to call.

    Fresh memory costs a page fault per 4 KiB on first touch, which for these short passes costs more than the
    arithmetic; chunk-sized buffers that stay mapped (and mostly in cache) avoid it.
    """
    buffers = _scratch.__dict__.setdefault("buffers", {})
    size = shape[0] * shape[1]
    buffer = buffers.get(name)
    if buffer is None or buffer.size < size:
        buffer = buffers[name] = np.empty(size)
    return buffer[:size].reshape(shape)


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


def _history_layout(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Each row's first valid column, and whether any row has a gap after it.

    A row's sum is NaN exactly when the row holds a NaN, so one cheap reduction finds the common case (every
    history complete) without the two passes over the whole chunk that locating NaNs takes.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        incomplete = np.isnan(np.add.reduce(values, axis=1))
    if not incomplete.any():
        return np.zeros(values.shape[0], dtype=np.intp), False
    first = first_valid(values)
    return first, _has_gaps(values, first)


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


def _scan_operator(decay: float, gain: float, block: int) -> np.ndarray:
    """``weights[k, j] = gain * decay ** (j - k)`` for ``k <= j``: one block of ``y = decay * y + gain * x``."""
    i = np.arange(block)
    lag = i[None, :] - i[:, None]
    return np.where(lag >= 0, gain * decay ** np.clip(lag, 0, None), 0.0)


def _linear_scan(inputs: np.ndarray, out: np.ndarray, decay: float, gain: float, block: int = SCAN_BLOCK) -> None:
    """``out[:, j] = decay * out[:, j - 1] + gain * inputs[:, j]`` along every row from 0, a block of sessions at once.

    Each block is one matrix product for all rows. The value carried from the previous block is folded into the
    block's first input (``decay * carried = gain * extra``), so no second pass adds it. ``inputs`` is scratch:
    its first column of each block is changed. Blocks stay short so the powers of ``decay`` stay far from
    underflow and the rounding stays that of a handful of additions.
    """
    weights = _scan_operator(decay, gain, block)
    cols = inputs.shape[1]
    carry_factor = decay / gain
    for start in range(0, cols, block):
        width = min(block, cols - start)
        if start:
            inputs[:, start] += out[:, start - 1] * carry_factor
        np.matmul(inputs[:, start : start + width], weights[:width, :width], out=out[:, start : start + width])


def _sma_rows(values: np.ndarray, out: np.ndarray, window: int) -> None:
    rows, cols = values.shape
    out[:, : window - 1] = np.nan
    first, gaps = _history_layout(values)
    scratch = _buffer("sma-input", (rows, cols))
    np.copyto(scratch, values)
    if first.any() or gaps:
        np.nan_to_num(scratch, copy=False, nan=0.0)
    sums = _buffer("sma-sums", (rows, cols))
    _linear_scan(scratch, sums, 1.0, 1.0)  # running sums, as cumsum but a block at a time
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


def sma(values: np.ndarray, window: int) -> np.ndarray:
    """Simple moving average; NaN until ``window`` valid values are in the window."""
    values = _as_matrix(values)
    if values.shape[1] < window:
        return np.full(values.shape, np.nan)
    return _by_chunks(lambda block, out: _sma_rows(block, out, window), values)


def _rsi_rows(closes: np.ndarray, out: np.ndarray, period: int) -> None:
    rows, cols = closes.shape
    out[:, 0] = np.nan
    first, gaps = _history_layout(closes)
    # With S the smoothing, gains g = (|c| + c) / 2 and losses l = (|c| - c) / 2, so
    # RSI = 100 S(g) / (S(g) + S(l)) = 50 (1 + S(c) / S(|c|)): two smoothings of cheaper inputs, stacked so that
    # one matrix product a block smooths both.
    stacked = _buffer("rsi-input", (2 * rows, cols - 1))
    moves, sizes = stacked[:rows], stacked[rows:]  # moves[:, t] is the change into session t + 1
    np.subtract(closes[:, 1:], closes[:, :-1], out=moves)
    if first.any() or gaps:
        np.nan_to_num(moves, copy=False, nan=0.0)  # no move before a ticker's history
    np.abs(moves, out=sizes)
    # Fold each ticker's seeding into its input: zero before the seed, and at the seed the sum of its first
    # ``period`` changes, so the same recursion from 0 gives TA-Lib's simple-mean seed there, whatever the row.
    seed = first + period - 1  # the change at which each ticker's averages are first defined
    idx = np.flatnonzero(seed < cols - 1)
    window = seed[idx][:, None] - (period - 1) + np.arange(period)[None, :]
    for series in (moves, sizes):
        total = series[idx[:, None], window].sum(axis=1)
        series[idx[:, None], window[:, :-1]] = 0.0  # before a ticker's first change they are already 0
        series[idx, seed[idx]] = total
    smoothed = _buffer("rsi-smoothed", stacked.shape)
    _linear_scan(stacked, smoothed, (period - 1) / period, 1.0 / period)
    value = out[:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(smoothed[:rows], smoothed[rows:], out=value)
    # 0 / 0 is no move at all over the smoothing, which TA-Lib reports as RSI 0; fmax turns that NaN into -1
    # (every other ratio is in [-1, 1]) in the same pass. Before the seed it is made absent below.
    np.fmax(value, -1.0, out=value)
    value += 1.0
    value *= 50.0
    _blank_before(value, seed)
    if gaps:
        # A gap breaks Wilder's recursion: after it the value is not TA-Lib's, so it is absent.
        change = np.diff(closes, axis=1)
        broken = np.cumsum(np.isnan(change), axis=1) > np.minimum(first, cols - 1)[:, None]
        value[broken] = np.nan


def rsi_wilder(closes: np.ndarray, period: int = RSI_PERIOD) -> np.ndarray:
    """Relative Strength Index with Wilder's smoothing, as TA-Lib's RSI computes it.

    The first average gain and loss are simple means of the first ``period`` changes; after that each average is
    ``(previous * (period - 1) + current) / period``. The first value is at the ``period``-th change. Equal to
    TA-Lib's RSI to rounding (far better than 1e-9) from its first value on.
    """
    closes = _as_matrix(closes)
    if closes.shape[1] <= period:
        return np.full(closes.shape, np.nan)
    return _by_chunks(lambda block, out: _rsi_rows(block, out, period), closes)


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
        if c.shape[1] > RSI_PERIOD:
            _rsi_rows(c, outputs["rsi14"][rows], RSI_PERIOD)
        else:
            outputs["rsi14"][rows] = np.nan
        if c.shape[1] >= SMA_PERIOD:
            _sma_rows(c, outputs["sma50"][rows], SMA_PERIOD)
        else:
            outputs["sma50"][rows] = np.nan
        outputs["drawdown180"][rows] = drawdown(c)
        outputs["change_pct"][rows] = change_pct(c)
        outputs["high52"][rows] = rolling_max(highs[rows], YEAR_WINDOW)
        outputs["low52"][rows] = rolling_min(lows[rows], YEAR_WINDOW)

    _run_chunks(run, closes.shape[0])
    return IndicatorSet(**outputs)


@dataclass(frozen=True)
class LatestIndicators:
    """Every indicator at the last session, one value per ticker, and the SMA50 of the last sessions.

    Each field equals ``compute(...)``'s at the last column (``sma50_series`` at the last columns), NaN where that
    is NaN.
    """

    rsi14: np.ndarray
    sma50: np.ndarray
    drawdown180: np.ndarray
    change_pct: np.ndarray
    high52: np.ndarray
    low52: np.ndarray
    sma50_series: np.ndarray  # tickers x sessions: the last ``series_sessions`` columns (fewer when there are fewer)


@functools.lru_cache(maxsize=16)
def _wilder_weights(changes: int, period: int) -> np.ndarray:
    """``weights[j] = a ** (changes - 1 - j)`` with ``a = (period - 1) / period``: change j's share of the last average.

    Weights under the smallest normal number are raised to it: their terms are far below any rounding of the sum,
    subnormal arithmetic is slow, and a weight of exactly zero would stop a NaN from reaching the sum (which is how
    rows with a gap are found without a pass of their own).
    """
    decay = (period - 1) / period
    weights = decay ** np.arange(changes - 1, -1, -1, dtype=float)
    np.maximum(weights, np.finfo(float).tiny, out=weights)
    weights.flags.writeable = False  # shared by every call with this many sessions
    return weights


def _rsi_latest_rows(closes: np.ndarray, out: np.ndarray, period: int) -> None:
    """Wilder's RSI at the last column only, as one weighted sum per row instead of the recursion.

    After the seed (the mean of a row's first ``period`` changes, from its first close s) Wilder's average is
    ``avg_T = a^(T-s-P) seed + (1 - a) sum_{t > s+P} a^(T-t) x_t`` with ``a = (P-1)/P``, and ``1 - a = 1/P`` is the
    seed's own factor; so every change has the weight ``a^(T-t)/P`` except the seed's, which share ``a^(T-s-P)/P``.
    One matrix-vector product with the common weights does all rows, and a correction over the ``period`` seed
    changes of each row gives it its own start. RSI = 50 (1 + S(x) / S(|x|)) as in ``_rsi_rows``, where the 1/P
    cancels.
    """
    rows, cols = closes.shape
    changes = cols - 1
    out[:] = np.nan
    if changes < period:
        return
    weights = _wilder_weights(changes, period)
    moves = _buffer("latest-moves", (rows, changes))
    np.subtract(closes[:, 1:], closes[:, :-1], out=moves)
    signed = moves @ weights
    first = np.zeros(rows, dtype=np.intp)
    broken = np.zeros(rows, dtype=bool)
    # A NaN anywhere in a row reaches its sum (no weight is zero), so only those rows need their layout worked out.
    incomplete = np.flatnonzero(np.isnan(signed))
    if incomplete.size:
        part = closes[incomplete]
        first[incomplete] = first_valid(part)
        leading = np.minimum(first[incomplete], cols)
        # A gap after the first close breaks Wilder's recursion: compute reports no RSI after it.
        broken[incomplete] = np.isnan(part).sum(axis=1) != leading
        cleaned = np.nan_to_num(moves[incomplete], nan=0.0)  # no move before a ticker's history
        moves[incomplete] = cleaned
        signed[incomplete] = cleaned @ weights
    defined = np.flatnonzero((first + period <= changes) & ~broken)
    # The seed's changes, each row from its own first close, and how much their weight differs from the common one.
    seed_columns = first[defined, None] + np.arange(period)
    seed_weight = weights[first[defined] + period - 1]
    correction = seed_weight[:, None] - weights[seed_columns]
    seed_moves = moves[defined[:, None], seed_columns]
    signed[defined] += (seed_moves * correction).sum(axis=1)
    np.abs(moves, out=moves)
    sizes = moves @ weights
    sizes[defined] += (np.abs(seed_moves) * correction).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = signed[defined] / sizes[defined]
    # No move at all is 0 / 0, which TA-Lib and compute report as RSI 0.
    np.fmax(ratio, -1.0, out=ratio)
    out[defined] = 50.0 * (1.0 + ratio)


def _sma_last(values: np.ndarray, window: int, sessions: int) -> np.ndarray:
    """The moving average over the last ``sessions`` columns; NaN where its window holds a NaN or leaves the matrix."""
    rows, cols = values.shape
    out = np.full((rows, sessions), np.nan)
    if cols < window:
        return out
    span = values[:, max(0, cols - sessions - window + 1) :]
    windows = span.shape[1] - window + 1
    # Running sums over these few columns only: their rounding is that of a short sum, not of the whole history.
    sums = np.empty((rows, span.shape[1] + 1))
    sums[:, 0] = 0.0
    np.cumsum(span, axis=1, out=sums[:, 1:])
    target = out[:, sessions - windows :]
    np.subtract(sums[:, window:], sums[:, :windows], out=target)
    target /= window
    # A NaN spoils every later running sum, so the rows holding one (a short history, a gap) are done again with
    # their NaNs counted; the others, nearly all, needed no pass to find them.
    incomplete = np.flatnonzero(np.isnan(sums[:, -1]))
    if incomplete.size:
        part = span[incomplete]
        missing = np.isnan(part)
        counts = np.zeros((incomplete.size, span.shape[1] + 1), dtype=np.intp)
        np.cumsum(missing, axis=1, out=counts[:, 1:])
        part_sums = np.zeros(counts.shape)
        np.cumsum(np.where(missing, 0.0, part), axis=1, out=part_sums[:, 1:])
        redone = (part_sums[:, window:] - part_sums[:, :windows]) / window
        redone[counts[:, window:] != counts[:, :windows]] = np.nan
        target[incomplete] = redone
    return out


def compute_latest(
    closes: np.ndarray,
    highs: np.ndarray | None = None,
    lows: np.ndarray | None = None,
    *,
    series_sessions: int = 0,
) -> LatestIndicators:
    """Every indicator at the last session, and SMA50 over the last ``series_sessions`` sessions, for all tickers.

    Equal to ``compute(...)`` at those columns, for the cost of one pass over the closes (RSI's weighted sums) and
    the last 252 columns (the rest): what a daily note needs, without the full series.
    """
    closes = _as_matrix(closes)
    highs = closes if highs is None else _as_matrix(highs)
    lows = closes if lows is None else _as_matrix(lows)
    rows, cols = closes.shape
    sessions = min(max(series_sessions, 0), cols)
    names = ("rsi14", "drawdown180", "change_pct", "high52", "low52")
    outputs = {name: np.full(rows, np.nan) for name in names}
    averages = np.empty((rows, max(sessions, 1)))

    def run(start: int) -> None:
        chunk = slice(start, start + CHUNK_ROWS)
        c = closes[chunk]
        _rsi_latest_rows(c, outputs["rsi14"][chunk], RSI_PERIOD)
        averages[chunk] = _sma_last(c, SMA_PERIOD, averages.shape[1])
        # The same operations, in the same order, as compute's at its last column, so the numbers are the same.
        with np.errstate(invalid="ignore", divide="ignore"):
            if cols > 1:
                change = outputs["change_pct"][chunk]
                np.divide(c[:, -1], c[:, -2], out=change)
                change -= 1.0
                change *= 100.0
            if cols >= DRAWDOWN_WINDOW:
                drawdown = outputs["drawdown180"][chunk]
                np.divide(c[:, -1], c[:, -DRAWDOWN_WINDOW:].max(axis=1), out=drawdown)
                drawdown -= 1.0
                drawdown *= 100.0
        if cols >= YEAR_WINDOW:
            np.max(highs[chunk, -YEAR_WINDOW:], axis=1, out=outputs["high52"][chunk])
            np.min(lows[chunk, -YEAR_WINDOW:], axis=1, out=outputs["low52"][chunk])

    _run_chunks(run, rows)
    return LatestIndicators(
        **outputs, sma50=averages[:, -1].copy(), sma50_series=averages[:, averages.shape[1] - sessions :]
    )


def rank_by_drawdown(latest_drawdowns: np.ndarray) -> np.ndarray:
    """1 for the ticker furthest below its high; NaN where the drawdown is not defined."""
    values = np.asarray(latest_drawdowns, dtype=float)
    ranks = np.full(values.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(values))
    order = defined[np.argsort(values[defined], kind="stable")]
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks
