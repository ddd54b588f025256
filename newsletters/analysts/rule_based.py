"""The rule-based analyst: a readable analysis written from the indicators alone, labelled as automated.

It is the embedded default and the fallback whenever a language model fails, so it must always answer. Its
wording follows the RSI zone, the trend against the 50-day average, the place in the 52-week range and the
drawdown, so that tickers in different situations read differently; every number it writes is one of the
snapshot's, rounded, so the text passes the same grounding check as a model's answer. Its phrase for the email's
headline and subject follows the same rules, the most telling first. Of the news it only quotes the top headline,
with its publisher and citation, and says nothing about it that the article does not.
"""

from __future__ import annotations

from markets.snapshots import TickerSnapshot

from .base import AnalysisResult
from .grounding import supplied_articles, ungrounded_numbers
from .replies import HEADLINE_MAX, SUMMARY_MAX, SUMMARY_SENTENCES
from .replies import sentences as split_sentences

# RSI zones, upper bounds exclusive except the last firm one: (below, words).
_RSI_ZONES = ((30.0, "oversold"), (45.0, "weak momentum"), (55.0, "neutral momentum"))
RANGE_EDGE_PCT = 10.0  # the top / bottom tenth of the 52-week range counts as "near" the high / low
DEEP_DRAWDOWN_PCT = 20.0
BIG_MOVE_PCT = 3.0  # a day's move that is the news itself, whatever the indicators say
SMALL_MOVE_PCT = 1.0  # below it a move only "edges"
QUOTED_TITLE_MAX = 160  # a longer title is cut at a word, marked with an ellipsis, to keep the summary short


def rsi_zone(rsi: float) -> str:
    for below, words in _RSI_ZONES:
        if rsi < below:
            return words
    return "firm momentum" if rsi <= 70 else "overbought"


def _price(value: float) -> str:
    return f"${value:,.2f}"


def _rounds_to_zero(value: float) -> bool:
    # What is written is the value at one decimal: a move that shows as 0.0 must read "unchanged", never "-0.0%".
    return round(value, 1) == 0


def _signed(value: float) -> str:
    return "0.0%" if _rounds_to_zero(value) else f"{value:+.1f}%"


class RuleBasedAnalyst:
    model = "rule-based"
    # rules-3: a phrase, and the top headline quoted in the summary (cached rules-2 prose is not reused).
    prompt_version = "rules-3"

    def analyze(self, snapshot: TickerSnapshot, *, deadline: float | None = None) -> AnalysisResult:
        s = snapshot
        name = s.name or s.symbol
        if not s.has_data:
            return AnalysisResult(
                headline=f"{s.symbol}: no data yet",
                summary=f"We do not hold any prices for {name} yet, so there is nothing to analyse today.",
                stance="neutral",
                score=50,
                model=self.model,
                prompt_version=self.prompt_version,
                automated=True,
            )

        score = 50.0
        points: list[str] = []
        risks: list[str] = []
        sentences: list[str] = []
        tags: list[str] = []  # the headline's words after the move, most telling first

        if s.change_pct is None:
            move = f"at {_price(s.close)}"
            sentences.append(f"{name} closed at {_price(s.close)}.")
        elif _rounds_to_zero(s.change_pct):
            move = "unchanged"
            sentences.append(f"{name} was unchanged, closing at {_price(s.close)}.")
        else:
            up = s.change_pct > 0
            move = f"{'up' if up else 'down'} {abs(s.change_pct):.1f}%"
            sentences.append(
                f"{name} {'rose' if up else 'fell'} {abs(s.change_pct):.1f}% to close at {_price(s.close)}."
            )
            score += max(-5.0, min(5.0, s.change_pct))

        if s.rsi14 is not None:
            zone = rsi_zone(s.rsi14)
            tags.append(zone)
            if zone == "overbought":
                sentences.append(f"RSI at {s.rsi14:.1f} marks it as overbought; rallies this stretched often pause.")
                risks.append("Overbought on RSI: a pullback would not be unusual")
                score -= 5
            elif zone == "oversold":
                sentences.append(f"RSI at {s.rsi14:.1f} marks it as oversold; selling may be exhausted.")
                points.append("Oversold on RSI")
                score += 5
            else:
                sentences.append(f"RSI at {s.rsi14:.1f} shows {zone}.")
                score += (s.rsi14 - 50) * 0.3

        distance = s.sma50_distance_pct
        if distance is not None and s.sma50 is not None:
            average = f"its 50-day average of {_price(s.sma50)}"
            if _rounds_to_zero(distance):
                tags.append("at 50-day average")
                sentences.append(f"It trades in line with {average}.")
            else:
                side = "above" if distance > 0 else "below"
                tags.append(f"{side} 50-day average")
                sentences.append(f"It trades {abs(distance):.1f}% {side} {average}.")
                points.append(f"Price {side} the 50-day average ({_signed(distance)})")
            score += max(-15.0, min(15.0, distance * 1.5))

        place: list[str] = []  # the 52-week range and the drawdown share one sentence, keeping the summary short
        where = s.range52_position_pct
        if where is not None and where >= 100 - RANGE_EDGE_PCT:
            tags.append("near 52-week high")
            place.append(f"it sits near its 52-week high of {_price(s.high52)}")
            points.append("Near the top of its 52-week range")
            score += 5
        elif where is not None and where <= RANGE_EDGE_PCT:
            tags.append("near 52-week low")
            place.append(f"it sits near its 52-week low of {_price(s.low52)}")
            risks.append("Near the bottom of its 52-week range")
            score -= 5
        if s.drawdown180 is not None and s.drawdown180 < -DEEP_DRAWDOWN_PCT:
            tags.append("deep drawdown")
            place.append(f"it is {abs(s.drawdown180):.1f}% below its 180-day high, a deep drawdown")
            risks.insert(0, f"{abs(s.drawdown180):.1f}% below its 180-day high: a deep drawdown")
            score -= 10
        elif where is not None and not place:
            place.append(f"it sits {where:.0f}% of the way up its 52-week range")
        if place:
            text = " and ".join(place)
            sentences.append(text[0].upper() + text[1:] + ".")

        if len(sentences) == 1:
            # A ticker listed lately: say why nothing else is written rather than leave a one-line analysis.
            sentences.append("Its indicators need more price history than we hold yet.")

        score = round(max(0.0, min(100.0, score)))
        stance = "bullish" if score >= 60 else "bearish" if score <= 40 else "neutral"
        return AnalysisResult(
            headline=_headline(s.symbol, move, tags),
            phrase=phrase(s),
            summary=_summary(sentences, _news_sentence(s)),
            stance=stance,
            score=score,
            points=points[:3],
            risks=risks[:2],
            model=self.model,
            prompt_version=self.prompt_version,
            automated=True,
        )


def _headline(symbol: str, move: str, tags: list[str]) -> str:
    """``SYMBOL move: tag, tag``, dropping the least telling tags (never cutting a word) to fit the schema."""
    tags = list(tags)
    while True:
        headline = f"{symbol} {move}" + (f": {', '.join(tags)}" if tags else "")
        if len(headline) <= HEADLINE_MAX or not tags:
            return headline[:HEADLINE_MAX]
        tags.pop()


def phrase(s: TickerSnapshot) -> str:
    """What the day was for the ticker, in a few words after its symbol; the most telling rule wins.

    A cross of the 50-day line is the previous close on the other side of today's average: the average moves
    little in a day, and the snapshot holds no earlier one. The 52-week high and low include the day's own
    high and low, so a close "hits" them only when it is one.
    """
    change = s.change_pct
    where = s.range52_position_pct
    if s.high52 is not None and s.close >= s.high52:
        return "hits a 52-week high"
    if s.low52 is not None and s.close <= s.low52:
        return "hits a 52-week low"
    if s.sma50 and s.previous_close is not None:
        if s.previous_close < s.sma50 < s.close:
            return "climbs above its 50-day line"
        if s.previous_close > s.sma50 > s.close:
            return "slips under its 50-day line"
    if change is not None and abs(change) >= BIG_MOVE_PCT:
        return f"{'jumps' if change > 0 else 'tumbles'} {abs(change):.1f}%"
    if s.rsi14 is not None and rsi_zone(s.rsi14) == "oversold":
        return "slides into oversold territory" if (change or 0) < 0 else "holds in oversold territory"
    if s.rsi14 is not None and rsi_zone(s.rsi14) == "overbought":
        return "runs into overbought territory" if (change or 0) > 0 else "holds in overbought territory"
    if s.drawdown180 is not None and s.drawdown180 < -DEEP_DRAWDOWN_PCT:
        return "stays deep below its 180-day high"
    if where is not None and where >= 100 - RANGE_EDGE_PCT:
        return "trades near its 52-week high"
    if where is not None and where <= RANGE_EDGE_PCT:
        return "trades near its 52-week low"
    if change is None or _rounds_to_zero(change):
        return "holds steady"
    if abs(change) < SMALL_MOVE_PCT:
        return "edges higher" if change > 0 else "edges lower"
    return "gains ground" if change > 0 else "loses ground"


def _news_sentence(s: TickerSnapshot) -> str:
    """The top headline, quoted as the provider gave it, with its publisher and citation; empty when none fits.

    Curly quotes, so a title ending in "?" or "!" does not end the sentence for the sentence counter. A title whose
    own numbers the grounding would not take (an RSI that is not the data's) is left out rather than quoted.
    """
    articles = supplied_articles(s)
    if not articles:
        return ""
    top = articles[0]
    title = " ".join(top.title.split())
    if len(title) > QUOTED_TITLE_MAX:
        title = title[:QUOTED_TITLE_MAX].rsplit(" ", 1)[0] + "…"
    publisher = " ".join(top.publisher.split())
    sentence = f"In the news: \u201c{title}\u201d" + (f" ({publisher})" if publisher else "") + " [1]."
    return sentence if title and not ungrounded_numbers(sentence, s) else ""


def _summary(prose: list[str], news: str) -> str:
    """The prose's sentences and the news last, dropping the least telling prose until it fits the schema."""
    low, high = SUMMARY_SENTENCES
    kept = prose[:high]
    while True:
        summary = " ".join([*kept, news] if news else kept)
        if len(summary) <= SUMMARY_MAX and len(split_sentences(summary)) <= high:
            return summary
        if len(kept) <= low - 1 or not news:
            # Too long a title for the room left: the prose alone, as before there was news.
            return " ".join(prose[:high])
        kept.pop()
