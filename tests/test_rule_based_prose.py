"""The rule-based analyst's wording follows the indicators, and every number it writes is grounded."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from django.core.management import call_command

from markets.selectors import ticker_snapshots
from markets.snapshots import TickerSnapshot
from newsletters.analysts.base import AnalysisResult
from newsletters.analysts.grounding import ungrounded_numbers
from newsletters.analysts.replies import HEADLINE_MAX, validate
from newsletters.analysts.rule_based import RuleBasedAnalyst
from subscriptions.selectors import followed_symbols
from tests.test_llm_analyst import snapshot as base_snapshot

DAY = dt.date(2026, 11, 20)


def snapshot(symbol: str = "MSFT", **overrides) -> TickerSnapshot:
    # Mid-range, mild trend, neutral RSI: each test moves one indicator into the zone it checks.
    return base_snapshot(symbol, **{"rsi14": 50.2, **overrides})


def analyze(snap: TickerSnapshot) -> AnalysisResult:
    result = RuleBasedAnalyst().analyze(snap)
    assert_publishable(result, snap)
    return result


def everything(result: AnalysisResult) -> str:
    return " ".join([result.headline, result.summary, *result.points, *result.risks])


def assert_publishable(result: AnalysisResult, snap: TickerSnapshot) -> None:
    """What a model's answer must pass: the schema's limits and the grounding of every number."""
    text = everything(result)
    assert ungrounded_numbers(text, snap) == []
    fields = dataclasses.asdict(result)
    # The sentence counter would split a company name such as "Inc. Class B"; the prose is not at fault.
    fields["summary"] = fields["summary"].replace(snap.name, snap.symbol)
    validate(fields, snap)  # raises InvalidReply on any problem
    assert len(result.headline) <= HEADLINE_MAX
    assert "-0.0" not in text and "+0.0" not in text


@pytest.mark.parametrize(
    ("rsi", "words"),
    [
        (22.4, "oversold"),
        (29.9, "oversold"),
        (30.0, "weak momentum"),
        (38.0, "weak momentum"),
        (45.0, "neutral momentum"),
        (50.2, "neutral momentum"),
        (55.0, "firm momentum"),
        (64.5, "firm momentum"),
        (70.0, "firm momentum"),
        (71.3, "overbought"),
    ],
)
def test_the_rsi_zone_names_the_momentum(rsi, words):
    result = analyze(snapshot(rsi14=rsi))
    assert words in result.headline
    assert f"RSI at {rsi:.1f}" in result.summary
    others = {"oversold", "weak momentum", "neutral momentum", "firm momentum", "overbought"} - {words}
    assert not any(other in result.headline for other in others)


@pytest.mark.parametrize(
    ("sma50", "side", "pct"),
    [(380.0, "above", "8.6%"), (440.0, "below", "6.2%")],
)
def test_the_trend_says_which_side_of_the_50_day_average_and_by_how_much(sma50, side, pct):
    result = analyze(snapshot(sma50=sma50))
    assert f"{side} 50-day average" in result.headline
    assert f"{pct} {side} its 50-day average of ${sma50:,.2f}" in result.summary


def test_a_price_on_its_average_reads_in_line_not_zero_percent():
    result = analyze(snapshot(sma50=412.79))
    assert "at 50-day average" in result.headline
    assert "in line with its 50-day average" in result.summary
    assert "0.0%" not in everything(result)


def test_near_the_52_week_high_and_low():
    high = analyze(snapshot(close=462.0, high52=468.4, low52=366.5, previous_close=460.0, change_pct=0.4348))
    assert "near 52-week high" in high.headline and "$468.40" in high.summary
    low = analyze(snapshot(close=372.0, high52=468.4, low52=366.5, previous_close=375.0, change_pct=-0.8))
    assert "near 52-week low" in low.headline and "$366.50" in low.summary
    middle = analyze(snapshot())
    assert "52-week high" not in middle.headline and "52-week low" not in middle.headline


@pytest.mark.parametrize(("drawdown", "deep"), [(-35.27, True), (-20.5, True), (-19.9, False), (-3.1, False)])
def test_a_drawdown_deeper_than_20_percent_is_called_deep(drawdown, deep):
    result = analyze(snapshot(drawdown180=drawdown))
    assert ("deep drawdown" in result.headline) is deep
    assert (f"{abs(drawdown):.1f}% below its 180-day high" in result.summary) is deep


@pytest.mark.parametrize("change", [-0.04, -0.0001, 0.0, 0.03])
def test_a_move_that_rounds_to_zero_reads_unchanged(change):
    result = analyze(snapshot(change_pct=change, previous_close=412.8 / (1 + change / 100)))
    assert result.headline.startswith("MSFT unchanged")
    assert "was unchanged" in result.summary
    assert "0.0" not in everything(result)


def test_moves_and_prices_are_written_with_direction_and_dollars():
    down = analyze(snapshot(close=7598.8803, previous_close=7781.09, change_pct=-2.341714, sma50=7621.12))
    assert down.headline.startswith("MSFT down 2.3%")
    assert "fell 2.3% to close at $7,598.88" in down.summary
    up = analyze(snapshot())
    assert up.headline.startswith("MSFT up 0.6%") and "rose 0.6% to close at $412.80" in up.summary


def test_the_longest_headline_drops_whole_tags_to_fit():
    snap = snapshot(
        symbol="ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        rsi14=75.0,
        close=372.0,
        previous_close=375.0,
        change_pct=-0.8,
        drawdown180=-40.0,
    )
    result = analyze(snap)
    assert len(result.headline) <= HEADLINE_MAX
    assert re.search(r"(momentum|overbought|oversold|average|high|low|drawdown)$", result.headline)


def test_missing_indicators_still_give_a_grounded_analysis():
    snap = snapshot(rsi14=None, sma50=None, drawdown180=None, high52=None, low52=None, change_pct=None)
    result = analyze(snap)
    assert result.headline == "MSFT at $412.80"
    assert "more price history" in result.summary
    assert RuleBasedAnalyst().analyze(snapshot(close=None)).headline == "MSFT: no data yet"


@pytest.mark.django_db
def test_the_demo_tickers_read_differently_and_every_number_is_grounded(isolated_var):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", DAY.isoformat(), "--stage", "data")
    symbols = followed_symbols()
    snapshots = ticker_snapshots(symbols, DAY, demo=True)
    results = {symbol: analyze(snap) for symbol, snap in snapshots.items() if snap.has_data}
    assert len(results) >= 17
    headlines = [r.headline for r in results.values()]
    assert len(set(headlines)) >= 8
    # Distinct in wording, not only in symbols and figures.
    wordings = {re.sub(r"[\d.,$%+-]+", "#", h.split(" ", 1)[1]) for h in headlines}
    assert len(wordings) >= 8, wordings
    assert sum("mixed signals" in h for h in headlines) == 0
    assert not any("-0.0" in everything(r) for r in results.values())
