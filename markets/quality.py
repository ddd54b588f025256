"""Data-quality checks on incoming bars: reject what cannot be true, flag what is unusual, before an email shows it."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from .providers import Bar

# Fewer past returns than this and a move cannot be judged unusual.
MIN_RETURNS_FOR_OUTLIER = 20


def rejection_reason(bar: Bar) -> str | None:
    """Why ``bar`` cannot be stored, or None when it is plausible."""
    prices = (bar.open, bar.high, bar.low, bar.close)
    if any(p is None or not math.isfinite(p) for p in prices):
        return "missing or non-finite price"
    if min(prices) <= 0:
        return "non-positive price"
    if bar.high < bar.low:
        return "high below low"
    if bar.volume is None or not math.isfinite(bar.volume) or bar.volume < 0:
        return "negative volume"
    return None


def missing_share_reason(*, missing: int, followed: int, day: dt.date, max_share: float) -> str:
    """Why ``missing`` of ``followed`` tickers without data for ``day`` is too many to send an issue, or ""."""
    if followed and missing / followed > max_share:
        return f"{missing} of {followed} followed tickers have no data for {day.isoformat()}, more than {max_share:.0%}"
    return ""


def outlier_sigmas(closes: np.ndarray, *, lookback: int) -> np.ndarray:
    """For each row, how many standard deviations the last close's log return is from the previous ``lookback``.

    Rows are tickers and columns sessions (right-aligned, NaN before a ticker's history). NaN where there is no
    latest move or too little history to judge it.
    """
    closes = np.asarray(closes, dtype=float)
    out = np.full(closes.shape[0], np.nan)
    if closes.shape[1] < 3:
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = np.diff(np.log(closes), axis=1)
    latest = returns[:, -1]
    past = returns[:, -1 - lookback : -1]
    counts = np.count_nonzero(~np.isnan(past), axis=1)
    enough = counts >= MIN_RETURNS_FOR_OUTLIER
    if not enough.any():
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.nanstd(past[enough], axis=1)
        score = np.abs(latest[enough]) / sigma
    # A ticker that never moved and now does is an outlier; one that never moved and still does not is not.
    score = np.where(sigma == 0, np.where(latest[enough] == 0, 0.0, np.inf), score)
    out[enough] = score
    return out


def outlier_caution(change_pct: float, sigmas: float) -> str:
    """The caution staff see and the email shows next to an unusual move."""
    size = "far" if math.isinf(sigmas) else f"{sigmas:.0f} standard deviations"
    return f"unusual move of {change_pct:+.1f}%, {size} beyond this ticker's recent days, not yet verified"
