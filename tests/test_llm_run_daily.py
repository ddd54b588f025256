"""The analysis stage with the LLM analyst: one call per ticker per day, cached, audited, falling back per ticker."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command

from markets.providers.demo import DemoProvider
from markets.selectors import ticker_snapshots
from newsletters.analysts import Analyst, get_analyst
from newsletters.analysts.llm import LLMAnalyst
from newsletters.analysts.replies import validate
from newsletters.analysts.rule_based import RuleBasedAnalyst
from newsletters.models import Analysis, AnalystCall, DailyRun
from subscriptions.selectors import followed_symbols
from tests.fakes.openai_server import Reply

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(openai_server):
    return openai_server


@pytest.fixture
def llm_settings(llm_settings):
    """With prices, so the run's cost estimate has something to count."""
    llm_settings.LLM_PRICE_INPUT_PER_MILLION = 2.5
    llm_settings.LLM_PRICE_OUTPUT_PER_MILLION = 10.0
    return llm_settings


def test_run_daily_with_the_llm_analyst_calls_once_per_ticker_and_never_again(
    llm_settings, server, outbox, trading_day
):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat())
    tickers = len(followed_symbols())
    assert server.count() == tickers  # one call per followed ticker, whatever the number of subscribers
    run = DailyRun.objects.get(date=trading_day)
    assert run.analyses_created == tickers and run.analyses_fallback == 0
    assert (run.input_tokens, run.output_tokens) == (120 * tickers, 60 * tickers)
    expected = (Decimal("2.5") * 120 * tickers + Decimal("10") * 60 * tickers) / Decimal(1_000_000)
    assert run.estimated_cost_usd == expected.quantize(Decimal("0.0001"))
    assert AnalystCall.objects.filter(outcome="ok").count() == tickers
    assert len(list(outbox.glob("*.eml"))) == 5

    call_command("run_daily", "--date", trading_day.isoformat())
    assert server.count() == tickers  # a rerun of the date makes zero calls
    rerun = DailyRun.objects.order_by("-id").first()
    assert rerun.analyses_cached == tickers and rerun.analyses_created == 0


def test_a_failing_ticker_falls_back_to_rules_marked_and_audited_and_the_run_goes_on(
    llm_settings, server, outbox, trading_day, capsys
):
    call_command("seed_demo", "--quiet")
    first = sorted(followed_symbols())[0]

    def fail_for_first(request):
        if f"Facts about {first} " in request["messages"][1]["content"]:
            return Reply(500, {"error": {"message": "model crashed"}})
        from tests.fakes.openai_server import completion, good_analysis

        return completion(__import__("json").dumps(good_analysis(request["messages"])))

    server.script(*[fail_for_first] * 60)
    llm_settings.LLM_MAX_RETRIES = 1
    call_command("run_daily", "--date", trading_day.isoformat())

    fallback = Analysis.objects.get(ticker__symbol=first, date=trading_day)
    assert fallback.automated and "HTTP 500 after 2 attempts" in fallback.fallback_reason
    assert list(fallback.calls.values_list("outcome", flat=True)) == ["retried", "error"]
    run = DailyRun.objects.get(date=trading_day)
    assert run.analyses_fallback == 1 and run.status == DailyRun.Status.PARTIAL
    assert "1 fallback" in capsys.readouterr().out
    # The email still goes out, with the automated analysis labelled as such for that ticker.
    emails = [p.read_text() for p in outbox.glob("*.eml")]
    assert len(emails) == 5
    with_first = [e for e in emails if f"{first} " in e]
    assert with_first and all("the AI model's answer could not be used today" in e for e in with_first)
    assert Analysis.objects.filter(date=trading_day, fallback_reason="").count() == len(followed_symbols()) - 1

    # The fallback is retried on the next run; the good analyses are not asked for again.
    before = server.count()
    server.scripts.clear()
    call_command("run_daily", "--date", trading_day.isoformat())
    assert server.count() == before + 1
    assert not Analysis.objects.get(ticker__symbol=first, date=trading_day).fallback_reason


def test_the_setting_chooses_the_llm_analyst(llm_settings):
    analyst = get_analyst()
    assert isinstance(analyst, LLMAnalyst) and isinstance(analyst, Analyst)
    assert analyst.parallelism == 4 and analyst.model == "fake-model"


@pytest.fixture(params=["rule-based", "llm"])
def analyst(request, server):
    if request.param == "rule-based":
        return RuleBasedAnalyst()
    return LLMAnalyst(base_url=server.url, api_key="t", model="fake-model", requests_per_minute=600_000)


def test_every_analyst_keeps_the_contract(analyst, trading_day):
    """Any analyst: a valid, grounded analysis of every snapshot, with its cache key, and nobody's data."""
    symbols = ["AAPL", "MSFT", "NVDA", "TSLA", "JPM"]
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat(), "--stage", "data")
    snapshots = ticker_snapshots(symbols, trading_day, demo=DemoProvider.is_demo)
    assert analyst.model and analyst.prompt_version
    for symbol in symbols:
        result = analyst.analyze(snapshots[symbol])
        fields = validate(
            {
                "headline": result.headline,
                "summary": result.summary,
                "stance": result.stance,
                "score": result.score,
                "points": result.points,
                "risks": result.risks,
            },
            snapshots[symbol],
        )
        assert fields["stance"] == result.stance
        assert "@" not in result.summary  # the analyst never sees a subscriber
