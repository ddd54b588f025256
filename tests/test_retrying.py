"""How long to wait before trying again, as the Polygon provider and the LLM analyst both read it."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime

import pytest
from urllib3 import HTTPHeaderDict

from walter_site.retrying import backoff_delay, retry_after_seconds


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "0"}, 0.0),
        ({"Retry-After-Ms": "1500", "Retry-After": "9"}, 1.5),  # the finer hint wins
        ({"Retry-After": "soon"}, 3.0),
        ({"Retry-After-Ms": "x", "Retry-After": "4"}, 4.0),
        ({}, 3.0),
    ],
)
def test_the_servers_wait_or_the_default(given, expected):
    assert retry_after_seconds(HTTPHeaderDict(given), 3.0) == expected


def test_an_http_date_counts_from_now_and_a_past_one_is_no_wait():
    later = format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_seconds(HTTPHeaderDict({"Retry-After": later}), 3.0) <= 30
    earlier = format_datetime(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5), usegmt=True)
    assert retry_after_seconds(HTTPHeaderDict({"Retry-After": earlier}), 3.0) == 0.0


def test_backoff_doubles_up_to_its_cap():
    assert [backoff_delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
