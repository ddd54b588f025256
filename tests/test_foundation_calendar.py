"""The NYSE calendar and the session a morning issue reports on."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from markets import calendar

NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("day", "open_"),
    [
        (dt.date(2026, 11, 20), True),  # Friday
        (dt.date(2026, 11, 21), False),  # Saturday
        (dt.date(2026, 11, 26), False),  # Thanksgiving
        (dt.date(2026, 4, 3), False),  # Good Friday: an exchange holiday, not a federal one
        (dt.date(2026, 11, 11), True),  # Veterans Day: federal holiday, market open
        (dt.date(2026, 7, 3), False),  # Independence Day observed
    ],
)
def test_trading_days(day, open_):
    assert calendar.is_trading_day(day) is open_
    assert (calendar.closed_reason(day) is None) is open_


def test_monday_morning_reports_friday():
    monday_8am = dt.datetime(2026, 11, 23, 8, 0, tzinfo=NY)
    assert calendar.latest_completed_session(monday_8am) == dt.date(2026, 11, 20)


def test_the_morning_after_a_holiday_reports_the_session_before_it():
    friday_8am = dt.datetime(2026, 11, 27, 8, 0, tzinfo=NY)
    assert calendar.latest_completed_session(friday_8am) == dt.date(2026, 11, 25)


def test_evening_run_reports_the_same_day():
    evening = dt.datetime(2026, 11, 20, 18, 30, tzinfo=NY)
    assert calendar.latest_completed_session(evening) == dt.date(2026, 11, 20)
    # The same instant expressed in UTC gives the same answer.
    assert calendar.latest_completed_session(evening.astimezone(dt.UTC)) == dt.date(2026, 11, 20)


def test_session_lists():
    days = calendar.trading_days_ending(dt.date(2026, 11, 27), 3)
    assert days == [dt.date(2026, 11, 24), dt.date(2026, 11, 25), dt.date(2026, 11, 27)]
    assert calendar.trading_days_ending(dt.date(2026, 11, 28), 1) == [dt.date(2026, 11, 27)]
    assert calendar.trading_days_between(dt.date(2026, 11, 20), dt.date(2026, 11, 24)) == [
        dt.date(2026, 11, 20),
        dt.date(2026, 11, 23),
        dt.date(2026, 11, 24),
    ]
