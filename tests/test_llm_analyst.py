"""The LLM analyst through the real `openai` client, against the fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from markets.snapshots import TickerSnapshot
from newsletters.analysts import AnalystError
from newsletters.analysts.grounding import ungrounded_numbers
from newsletters.analysts.llm import LLMAnalyst
from newsletters.analysts.replies import InvalidReply, extract_json, validate
from tests.fakes.openai_server import FakeOpenAI, Reply, completion, good_analysis, recorded
from walter_site.ratelimit import Pacer

DAY = dt.date(2026, 11, 20)


def snapshot(symbol: str = "MSFT", **overrides) -> TickerSnapshot:
    values = {
        "symbol": symbol,
        "name": f"{symbol} Corporation",
        "date": DAY,
        "as_of": DAY,
        "close": 412.8,
        "previous_close": 410.34,
        "change_pct": 0.5995,
        "rsi14": 55.23,
        "sma50": 405.3,
        "drawdown180": -3.114,
        "high52": 468.4,
        "low52": 366.5,
    }
    values.update(overrides)
    return TickerSnapshot(**values)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def server(openai_server):
    return openai_server


def make_analyst(server: FakeOpenAI, **kwargs) -> LLMAnalyst:
    options = {
        "base_url": server.url,
        "api_key": "test",
        "model": "fake-model",
        "timeout": 5.0,
        "retries": 2,
        "requests_per_minute": 600_000,
        "sleep": lambda seconds: None,
    }
    options.update(kwargs)
    return LLMAnalyst(**options)


def as_reply(data: dict) -> Reply:
    return completion(json.dumps(data))


# -- the happy path and the formats -------------------------------------------------------------------


def test_a_good_answer_is_used_with_structured_output_and_its_tokens(server):
    result = make_analyst(server).analyze(snapshot())
    assert server.count() == 1
    request = server.requests[0]
    assert request["model"] == "fake-model"
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"]["required"][:4] == [
        "headline",
        "summary",
        "stance",
        "score",
    ]
    assert '"close": 412.8' in request["messages"][1]["content"]  # the facts, rounded as the email shows them
    assert result.headline.startswith("MSFT rose 0.60%") and result.stance == "neutral" and result.score == 55
    assert (result.input_tokens, result.output_tokens) == (120, 60)
    assert result.model == "fake-model" and result.prompt_version == "analysis-v2" and not result.automated
    assert [c["outcome"] for c in result.calls] == ["ok"]
    assert result.calls[0]["messages"] == request["messages"]


def test_a_server_that_refuses_json_schema_costs_one_request_per_run_not_per_ticker(server):
    server.refuse_json_schema = True
    analyst = make_analyst(server)
    results = [analyst.analyze(snapshot(s)) for s in ("MSFT", "AAPL", "NVDA")]
    formats = [(r.get("response_format") or {}).get("type") for r in server.requests]
    assert formats == ["json_schema", "json_object", "json_object", "json_object"]
    assert results[0].calls[0]["outcome"] == "format refused" and results[0].calls[0]["status"] == 500
    assert all(r.headline for r in results)
    # Remembered by the process: a second analyst for the same server does not ask again.
    make_analyst(server).analyze(snapshot("AMD"))
    assert server.count() == 5 and server.requests[-1]["response_format"]["type"] == "json_object"


def test_plain_instructions_when_configured(server):
    make_analyst(server, response_format="plain").analyze(snapshot())
    assert "response_format" not in server.requests[0]


@pytest.mark.parametrize(
    "wrap",
    [
        lambda text: f"Here is the analysis you asked for:\n{text}\nI hope this helps.",
        lambda text: f"```json\n{text}\n```",
        lambda text: f"Sure!\n```\n{text}\n```",
    ],
    ids=["prose", "json-fence", "bare-fence"],
)
def test_json_wrapped_in_prose_or_code_fences_is_found(server, wrap):
    server.script(lambda request: completion(wrap(json.dumps(good_analysis(request["messages"])))))
    result = make_analyst(server).analyze(snapshot())
    assert server.count() == 1 and result.headline.startswith("MSFT rose")


# -- invalid and ungrounded replies: one repair, then fall back ---------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"headline": "x" * 91}, "at most 90"),
        ({"stance": "very bullish"}, '"stance" must be one of'),
        ({"score": 150}, '"score" must be an integer'),
        ({"points": ["a", "b", "c", "d"]}, "at most 3"),
        ({"risks": ["a", "b", "c"]}, "at most 2"),
        ({"summary": "Only one sentence here."}, "1 sentences"),
        ({"summary": "One. Two. Three. Four. Five."}, "5 sentences"),
    ],
)
def test_a_schema_violation_is_sent_back_once_with_the_reason(server, change, reason):
    server.script(lambda request: as_reply({**good_analysis(request["messages"]), **change}))
    result = make_analyst(server).analyze(snapshot())
    assert server.count() == 2
    repair = server.requests[1]["messages"]
    assert repair[-2]["role"] == "assistant" and reason in repair[-1]["content"]
    assert [c["outcome"] for c in result.calls] == ["invalid", "ok"]
    assert result.input_tokens == 240  # both requests count


def test_an_invented_price_is_rejected_and_a_second_failure_raises(server):
    def invented(request):
        return as_reply({**good_analysis(request["messages"]), "headline": "MSFT heads for $999.99 next week"})

    server.script(invented, invented)
    with pytest.raises(AnalystError, match=r"\$999.99 is not a price") as caught:
        make_analyst(server).analyze(snapshot())
    assert server.count() == 2
    assert [c["outcome"] for c in caught.value.calls] == ["invalid", "invalid"]
    assert caught.value.usage == (240, 120)


def test_the_rsi_written_as_a_percentage_is_misuse(server):
    def misused(request):
        data = good_analysis(request["messages"])
        data["summary"] = "MSFT rose 0.60% in the session. Its RSI stands at 55.2%, a neutral reading."
        return as_reply(data)

    server.script(misused)
    result = make_analyst(server).analyze(snapshot())
    assert "RSI written as a percentage" in result.calls[0]["error"]
    assert server.count() == 2


def test_the_poor_replies_recorded_from_a_small_model_fall_back(server):
    # llama.cpp's json_object answer: valid JSON, a headline that is only the symbol, one "sentence".
    server.script(recorded("llamacpp_MSFT_json_object.json"), recorded("llamacpp_MSFT_plain.json"))
    with pytest.raises(AnalystError, match="invalid reply after one repair"):
        make_analyst(server).analyze(snapshot())
    assert "only the symbol" in server.requests[1]["messages"][-1]["content"]


# -- the wire: rate limits, errors, timeouts, refusals -----------------------------------------------------


def test_429_waits_its_retry_after_for_every_caller_then_succeeds(server):
    clock = FakeClock()
    pacer = Pacer("llm-test", 1000, clock=clock.time, sleep=clock.sleep)
    server.script(Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "7"}))
    started = clock.now
    result = make_analyst(server, pacer=pacer).analyze(snapshot())
    assert server.count() == 2 and result.headline
    assert clock.now - started >= 7.0  # the second request waited out the Retry-After
    assert [c["outcome"] for c in result.calls] == ["retried", "ok"]


def test_a_retry_after_beyond_the_cap_fails_instead_of_stalling(server, settings):
    settings.LLM_RETRY_AFTER_MAX = 60
    server.script(Reply(429, {"error": {"message": "quota"}}, headers={"Retry-After": "3600"}))
    with pytest.raises(AnalystError, match="rate limited for 3600 s"):
        make_analyst(server).analyze(snapshot())
    assert server.count() == 1


def test_server_errors_are_retried_a_bounded_number_of_times(server):
    server.script(*[Reply(500, {"error": {"message": "boom"}})] * 2)
    assert make_analyst(server, retries=2).analyze(snapshot()).headline
    assert server.count() == 3
    server.requests.clear()
    server.script(*[Reply(503, {"error": {"message": "down"}})] * 3)
    with pytest.raises(AnalystError, match="HTTP 503 after 3 attempts"):
        make_analyst(server, retries=2).analyze(snapshot())
    assert server.count() == 3


def test_a_reply_slower_than_the_deadline_is_abandoned_at_the_deadline_and_not_retried(server):
    server.script(Reply(body=completion("{}").body, delay=3.0))
    started = time.monotonic()
    with pytest.raises(AnalystError, match="time budget ran out while the model was answering") as failed:
        make_analyst(server, retries=2).analyze(snapshot(), deadline=started + 0.5)
    assert time.monotonic() - started < 2.0
    assert server.count() == 1  # a timeout is not retried into a busy server
    assert [c["error"] for c in failed.value.calls] == ["timed out"]


def test_an_optional_per_request_cap_says_so(server):
    server.script(Reply(body=completion("{}").body, delay=3.0))
    with pytest.raises(AnalystError, match=r"within LLM_TIMEOUT \(0.3 s\)"):
        make_analyst(server, timeout=0.3).analyze(snapshot())
    assert server.count() == 1


def test_a_refusal_is_a_failure(server):
    server.script(completion(None, refusal="I can't help with investment analysis."))
    with pytest.raises(AnalystError, match="refused: I can't help"):
        make_analyst(server).analyze(snapshot())
    assert server.count() == 1


def test_other_client_errors_are_not_retried(server):
    server.script(Reply(401, {"error": {"message": "bad key"}}))
    with pytest.raises(AnalystError, match="HTTP 401"):
        make_analyst(server).analyze(snapshot())
    assert server.count() == 1


# -- parsing and grounding, directly ---------------------------------------------------------------------


def test_extract_json_prefers_the_analysis_over_echoed_input():
    text = '{"ticker": "MSFT", "close": 1}\nand then {"headline": "h", "summary": "s"}'
    assert extract_json(text)["headline"] == "h"
    with pytest.raises(InvalidReply, match="no JSON object"):
        extract_json("I cannot answer that.")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("MSFT closed at $412.80, up 0.6% on the day.", None),
        ("The RSI of 55.2 is neutral; the 50-day average is 405.30.", None),
        ("RSI (14) at 55 sits between 30 and 70.", None),
        ("It trades 3.1% below its 180-day high, on November 20.", None),
        ("On 2026-11-20 it closed at 412.8.", None),
        ("MSFT outpaced the S&P 500 in 2026, ahead of Q3 results.", None),
        ("MSFT closed at $420.00.", "$420.00 is not a price"),
        ("Up 12.5% on the day.", "12.5% is not one of the percentages"),
        ("Its RSI is 55.2%.", "RSI written as a percentage"),
        ("Its RSI of 71.4 is overbought.", "RSI 71.4 does not match"),
        ("On November 19 it fell.", "is not the session's"),
        ("On 2026-11-19 it fell.", "is not the session's"),
        ("Its 20-day average turned.", "is not a window"),
        ("Analysts see 1,250 upside.", "1,250 is not a number in the data"),
    ],
)
def test_grounding(text, problem):
    problems = ungrounded_numbers(text, snapshot())
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_validate_accepts_a_good_analysis_and_normalises_it():
    data = good_analysis(LLMAnalyst.messages(_prompt_only(), snapshot()))
    data["stance"] = " Neutral "
    fields = validate(data, snapshot())
    assert fields["stance"] == "neutral" and fields["score"] == 55


def _prompt_only() -> LLMAnalyst:
    analyst = LLMAnalyst.__new__(LLMAnalyst)
    from newsletters.analysts.llm import load_prompt

    analyst.system_prompt, analyst.user_prompt = load_prompt("v2")
    return analyst


def test_a_company_or_country_abbreviation_does_not_end_a_sentence():
    from newsletters.analysts.replies import sentences

    text = "Berkshire Hathaway Inc. Class B rose 1.2%. U.S. Treasuries fell! Is it over? Not yet."
    assert sentences(text) == [
        "Berkshire Hathaway Inc. Class B rose 1.2%.",
        "U.S. Treasuries fell!",
        "Is it over?",
        "Not yet.",
    ]
