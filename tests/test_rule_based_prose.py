"""The rule-based analyst's wording and phrase follow the indicators, it quotes the top headline when there is
one, and every number it writes is grounded."""

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
from newsletters.analysts.replies import HEADLINE_MAX, PHRASE_MAX, sentences, validate
from newsletters.analysts.rule_based import QUOTED_TITLE_MAX, RuleBasedAnalyst
from subscriptions.selectors import followed_symbols
from tests.test_llm_analyst import snapshot as base_snapshot
from tests.test_llm_news import AZURE, FOOL

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
    notes: list[str] = []
    assert validate(fields, snap, notes=notes)["phrase"] == result.phrase  # raises InvalidReply on any problem
    assert notes == [] and result.phrase and len(result.phrase) <= PHRASE_MAX
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
    phrases = [r.phrase for r in results.values()]
    assert len(set(phrases)) >= 5, phrases
    assert not any("-0.0" in everything(r) for r in results.values())


# -- the phrase: one per rule family, the most telling first -----------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        ({"close": 468.4, "previous_close": 466.0, "change_pct": 0.515}, "hits a 52-week high"),
        ({"close": 366.5, "previous_close": 368.0, "change_pct": -0.4076}, "hits a 52-week low"),
        ({"sma50": 411.0}, "climbs above its 50-day line"),  # the previous close 410.34 was under it
        (
            {"close": 408.0, "previous_close": 410.34, "change_pct": -0.5703, "sma50": 409.0},
            "slips under its 50-day line",
        ),
        ({"close": 430.0, "previous_close": 412.0, "change_pct": 4.3689, "sma50": 400.0}, "jumps 4.4%"),
        ({"close": 395.0, "previous_close": 410.34, "change_pct": -3.7384, "sma50": 420.0}, "tumbles 3.7%"),
        ({"rsi14": 24.5, "close": 400.0, "change_pct": -1.2, "sma50": 420.0}, "slides into oversold territory"),
        (
            {"rsi14": 24.5, "sma50": 420.0, "close": 401.0, "previous_close": 400.0, "change_pct": 0.25},
            "holds in oversold territory",
        ),
        ({"rsi14": 74.0, "change_pct": 1.4}, "runs into overbought territory"),
        ({"drawdown180": -27.5}, "stays deep below its 180-day high"),
        ({"close": 460.0, "previous_close": 458.0, "change_pct": 0.4367}, "trades near its 52-week high"),
        (
            {"close": 372.0, "previous_close": 373.0, "change_pct": -0.2681, "sma50": 380.0},
            "trades near its 52-week low",
        ),
        ({"change_pct": 0.02, "previous_close": 412.72}, "holds steady"),
        ({}, "edges higher"),
        ({"close": 409.0, "previous_close": 410.34, "change_pct": -0.3266, "sma50": 405.3}, "edges lower"),
        ({"close": 418.0, "previous_close": 412.0, "change_pct": 1.4563}, "gains ground"),
        ({"close": 404.0, "previous_close": 410.34, "change_pct": -1.545, "sma50": 400.0}, "loses ground"),
    ],
)
def test_the_phrase_follows_the_most_telling_rule(overrides, phrase):
    snap = snapshot(**overrides)
    assert analyze(snap).phrase == phrase


def test_the_phrase_is_the_same_every_time_and_empty_without_data():
    snap = snapshot(rsi14=74.0, change_pct=1.4)
    assert {RuleBasedAnalyst().analyze(snap).phrase for _ in range(3)} == {"runs into overbought territory"}
    assert RuleBasedAnalyst().analyze(snapshot(close=None)).phrase == ""
    bare = snapshot(rsi14=None, sma50=None, drawdown180=None, high52=None, low52=None, change_pct=None)
    assert analyze(bare).phrase == "holds steady"


# -- the news: the top headline, quoted, with its publisher, as [1] ----------------------------------------


def test_the_summary_quotes_the_top_headline_with_its_publisher_as_article_one():
    result = analyze(snapshot(news=(AZURE, FOOL)))
    assert result.summary.endswith(f"In the news: \u201c{AZURE.title}\u201d (Reuters) [1].")
    assert FOOL.title not in result.summary and "[2]" not in result.summary
    assert result.summary.startswith("MSFT Corporation rose 0.6% to close at $412.80.")
    without = analyze(snapshot())
    assert "In the news" not in without.summary and "[1]" not in everything(without)


def test_the_news_takes_the_place_of_the_least_telling_sentence_to_keep_four():
    plain = analyze(snapshot())
    with_news = analyze(snapshot(news=(AZURE,)))
    assert len(sentences(plain.summary)) == 4 and len(sentences(with_news.summary)) == 4
    assert sentences(with_news.summary)[:3] == sentences(plain.summary)[:3]


def test_a_title_with_sentences_of_its_own_a_question_or_a_great_length_still_fits():
    busy = dataclasses.replace(AZURE, title="Microsoft rallies. Azure grows 33%. Is the top in?")
    result = analyze(snapshot(news=(busy,)))
    assert busy.title in result.summary and len(sentences(result.summary)) <= 4
    long = dataclasses.replace(AZURE, title="Microsoft " + "and its cloud business " * 12 + "rallies")
    quoted = analyze(snapshot(news=(long,))).summary
    assert "\u2026\u201d (Reuters) [1]." in quoted and len(quoted.split("\u201c")[1]) <= QUOTED_TITLE_MAX + 20


def test_a_title_whose_numbers_grounding_would_reject_is_left_out_not_quoted():
    rsi_claim = dataclasses.replace(AZURE, title="Microsoft RSI hits 81 as buyers pile in")
    result = analyze(snapshot(news=(rsi_claim,)))
    assert "In the news" not in result.summary and "81" not in everything(result)
