"""The analysis stage against model servers as they really are: one slot, a queue, 503s, 429s, a refused format.

Every test talks to the fake OpenAI-compatible server on loopback through the real `openai` client; the one-slot
mode works on one request at a time like llama.cpp's server and counts the requests a client hung up on.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from markets.snapshots import TickerSnapshot
from newsletters.analysis import analyze_all
from newsletters.analysts.concurrency import OK, OVERLOAD, AdaptiveLimit
from newsletters.analysts.llm import LLMAnalyst
from newsletters.analysts.replies import (
    CHARS_PER_TOKEN,
    HEADLINE_MAX,
    ITEM_MAX,
    POINTS_MAX,
    RISKS_MAX,
    SCHEMA,
    SUMMARY_MAX,
    reply_token_budget,
)
from tests.fakes.openai_server import FakeOpenAI, overloaded, rate_limited

DAY = dt.date(2026, 11, 20)


def snapshot(i: int) -> TickerSnapshot:
    close = 50.0 + i
    return TickerSnapshot(
        symbol=f"T{i:03d}",
        name=f"Ticker {i}",
        date=DAY,
        as_of=DAY,
        close=close,
        previous_close=close / 1.01,
        change_pct=1.0,
        rsi14=40.0 + i,
        sma50=close * 0.98,
        drawdown180=-5.0,
        high52=close * 1.2,
        low52=close * 0.8,
    )


@pytest.fixture
def server(openai_server):
    return openai_server


def make_analyst(server: FakeOpenAI, **kwargs) -> LLMAnalyst:
    options = {
        "base_url": server.url,
        "api_key": "test",
        "model": "fake-model",
        "retries": 2,
        "parallelism": 4,
        "requests_per_minute": 600_000,
        "sleep": lambda seconds: None,
    }
    options.update(kwargs)
    return LLMAnalyst(**options)


def test_eight_tickers_queue_on_a_one_slot_server_and_all_get_the_models_answer(server):
    # llama.cpp: one slot, a fixed time per answer, and structured output refused with an HTTP 500.
    server.slots, server.answer_delay, server.refuse_json_schema = 1, 0.3, True
    results = analyze_all(analyst=make_analyst(server), snapshots=[snapshot(i) for i in range(8)], budget=60)
    assert [r.fallback_reason for r in results] == [""] * 8
    assert all(not r.automated and r.model == "fake-model" for r in results)
    assert server.abandoned == 0  # nobody hung up on a request the server was still working on
    assert server.max_in_flight > 1  # the requests did queue at the server: it is the queue that must not count
    # The refused format cost one request for the run, though four threads started at once.
    assert server.formats().count("json_schema") == 1
    assert server.formats().count("json_object") == 8
    assert server.answered == server.count() == 9  # every request, the refused one too, got its answer


def test_a_budget_smaller_than_the_work_falls_back_for_the_rest_and_ends_on_time(server):
    server.slots, server.answer_delay = 1, 0.3
    snapshots = [snapshot(i) for i in range(12)]
    started = time.monotonic()
    results = analyze_all(analyst=make_analyst(server, parallelism=2), snapshots=snapshots, budget=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 0.5
    answered = [r for r in results if not r.fallback_reason]
    fell_back = [r for r in results if r.fallback_reason]
    assert 1 <= len(answered) <= 4 and len(answered) + len(fell_back) == 12
    assert all(r.automated and "time budget ran out" in r.fallback_reason for r in fell_back)
    # Only the requests in flight at the deadline were abandoned; nothing queued behind the budget's end.
    assert server.abandoned <= 2 and server.count() <= len(answered) + 2


@pytest.mark.parametrize("busy", [overloaded(503), overloaded(502), rate_limited(0)], ids=["503", "502", "429"])
def test_concurrency_shrinks_after_overload_and_grows_back(server, busy):
    server.answer_delay = 0.05
    server.script(*[busy] * 6)
    analyst = make_analyst(server, retries=10)
    results = analyze_all(analyst=analyst, snapshots=[snapshot(i) for i in range(16)], budget=60)
    assert all(not r.fallback_reason for r in results)
    history = analyst.limit.history
    assert history[0] == 4 and min(history) <= 2  # backed off
    assert history[-1] == 4  # and grew back to LLM_PARALLELISM, never above it
    assert max(history) == 4


def test_the_adaptive_limit_halves_once_per_burst_and_adds_one_per_round_of_answers():
    limit = AdaptiveLimit(8)
    tickets = [limit.acquire(timeout=0) for _ in range(8)]
    assert limit.acquire(timeout=0) is None  # full
    for ticket in tickets[:4]:  # four failures of requests sent at the same limit: one cut, not four
        limit.release(ticket, OVERLOAD)
    assert limit.current == 4
    for ticket in tickets[4:]:
        limit.release(ticket, OK)
    assert limit.current == 5  # four answers at limit 4 grew it by one
    fixed = AdaptiveLimit(4, adaptive=False)
    fixed.release(fixed.acquire(), OVERLOAD)
    assert fixed.current == 4


def test_max_tokens_is_sized_to_the_schema_and_the_longest_valid_reply_fits(server):
    make_analyst(server).analyze(snapshot(1))
    budget = reply_token_budget()
    assert server.requests[0]["max_tokens"] == budget
    longest = {
        "headline": "h" * HEADLINE_MAX,
        "summary": "s" * SUMMARY_MAX,
        "stance": "bullish",
        "score": 100,
        "points": ["p" * ITEM_MAX] * POINTS_MAX,
        "risks": ["r" * ITEM_MAX] * RISKS_MAX,
    }
    assert len(json.dumps(longest, indent=1)) / CHARS_PER_TOKEN <= budget
    longer = json.loads(json.dumps(SCHEMA))
    longer["properties"]["summary"]["maxLength"] = SUMMARY_MAX * 2
    assert reply_token_budget(longer) > budget  # it follows the schema, it is not a fixed number
