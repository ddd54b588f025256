"""The rule-based analyst: a readable analysis written from the indicators alone, labelled as automated.

It is the embedded default and the fallback whenever a language model fails, so it must always answer. Its
wording follows the RSI zone, the trend against the 50-day average, the place in the 52-week range and the
drawdown, so that tickers in different situations read differently; every number it writes is one of the
snapshot's, rounded, so the text passes the same grounding check as a model's answer.
"""

from __future__ import annotations

from markets.snapshots import TickerSnapshot

from .base import AnalysisResult
from .replies import HEADLINE_MAX

# RSI zones, upper bounds exclusive except the last firm one: (below, words).
_RSI_ZONES = ((30.0, "oversold"), (45.0, "weak momentum"), (55.0, "neutral momentum"))
RANGE_EDGE_PCT = 10.0  # the top / bottom tenth of the 52-week range counts as "near" the high / low
DEEP_DRAWDOWN_PCT = 20.0


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
    # rules-2: wording by RSI zone, trend, 52-week range and drawdown (cached rules-1 prose is not reused).
    prompt_version = "rules-2"

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
            summary=" ".join(sentences[:4]),
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
