"""The NYSE trading calendar: weekends and exchange holidays from the maintained `holidays` package."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from django.conf import settings

# Daily bars are final well after the 16:00 close; before this, "today" is not a completed session.
SESSION_DATA_READY = dt.time(17, 0)


@lru_cache(maxsize=64)
def _nyse_holidays(year: int) -> holidays.HolidayBase:
    return holidays.financial_holidays("NYSE", years=year)


def holiday_name(day: dt.date) -> str | None:
    """The NYSE holiday on ``day``, if any."""
    return _nyse_holidays(day.year).get(day)


def is_trading_day(day: dt.date) -> bool:
    return day.weekday() < 5 and holiday_name(day) is None


def closed_reason(day: dt.date) -> str | None:
    """Why the market has no session on ``day`` (None when it has one)."""
    if day.weekday() >= 5:
        return f"{day:%A} {day.isoformat()} is a weekend"
    name = holiday_name(day)
    if name:
        return f"{day.isoformat()} is an NYSE holiday ({name})"
    return None


def previous_trading_day(day: dt.date) -> dt.date:
    """The last session strictly before ``day``."""
    day -= dt.timedelta(days=1)
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def trading_days_ending(end: dt.date, count: int) -> list[dt.date]:
    """The ``count`` sessions up to and including ``end`` (or before it, when ``end`` is closed), oldest first."""
    days: list[dt.date] = []
    day = end if is_trading_day(end) else previous_trading_day(end)
    while len(days) < count:
        days.append(day)
        day = previous_trading_day(day)
    days.reverse()
    return days


def trading_days_after(day: dt.date, count: int) -> list[dt.date]:
    """The ``count`` sessions strictly after ``day``, oldest first."""
    days: list[dt.date] = []
    while len(days) < count:
        day += dt.timedelta(days=1)
        if is_trading_day(day):
            days.append(day)
    return days


def trading_days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Sessions from ``start`` to ``end``, both included, oldest first."""
    days = []
    day = start
    while day <= end:
        if is_trading_day(day):
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def market_now() -> dt.datetime:
    return dt.datetime.now(ZoneInfo(settings.MARKET_TIME_ZONE))


def latest_completed_session(now: dt.datetime | None = None) -> dt.date:
    """The session a morning issue reports on: Monday 08:00 reports Friday's close."""
    now = (now or market_now()).astimezone(ZoneInfo(settings.MARKET_TIME_ZONE))
    today = now.date()
    if is_trading_day(today) and now.time() >= SESSION_DATA_READY:
        return today
    return previous_trading_day(today)


# The regular close: a session's news runs from the previous session's close to this one's.
MARKET_CLOSE = dt.time(16, 0)


def news_window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The news of session ``day``: published after the previous session's 16:00 close, up to ``day``'s, New York
    time (a Monday's window opens at Friday's close)."""
    tz = ZoneInfo("America/New_York")
    start = dt.datetime.combine(previous_trading_day(day), MARKET_CLOSE, tzinfo=tz)
    return start, dt.datetime.combine(day, MARKET_CLOSE, tzinfo=tz)
