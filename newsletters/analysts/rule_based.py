"""The rule-based analyst: a readable analysis written from the indicators alone, labelled as automated.

It is the embedded default and the fallback whenever a language model fails, so it must always answer.
"""

from __future__ import annotations

from markets.snapshots import TickerSnapshot

from .base import AnalysisResult


def _pct(value: float) -> str:
    return f"{value:+.1f}%"


class RuleBasedAnalyst:
    model = "rule-based"
    prompt_version = "rules-1"

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

        if s.change_pct is not None:
            verb = "rose" if s.change_pct > 0 else "fell" if s.change_pct < 0 else "was unchanged"
            moved = f" {abs(s.change_pct):.1f}%" if s.change_pct else ""
            sentences.append(f"{name} {verb}{moved} to close at {s.close:,.2f}.")
            score += max(-5.0, min(5.0, s.change_pct))

        distance = s.sma50_distance_pct
        if distance is not None:
            side = "above" if distance >= 0 else "below"
            sentences.append(f"It trades {abs(distance):.1f}% {side} its 50-day average.")
            score += max(-15.0, min(15.0, distance * 1.5))
            points.append(f"Price {side} the 50-day average ({_pct(distance)})")

        if s.rsi14 is not None:
            if s.rsi14 >= 70:
                sentences.append(f"RSI at {s.rsi14:.0f} marks it as overbought; rallies this stretched often pause.")
                risks.append("Overbought on RSI: a pullback would not be unusual")
                score -= 5
            elif s.rsi14 <= 30:
                sentences.append(f"RSI at {s.rsi14:.0f} marks it as oversold; selling may be exhausted.")
                points.append("Oversold on RSI")
                score += 5
            else:
                sentences.append(f"Momentum is balanced, with RSI at {s.rsi14:.0f}.")
                score += (s.rsi14 - 50) * 0.3

        if s.drawdown180 is not None:
            if s.drawdown180 <= -20:
                risks.append(f"{abs(s.drawdown180):.0f}% below its 180-day high: in a deep drawdown")
                score -= 10
            elif s.drawdown180 >= -2:
                points.append("Within 2% of its 180-day high")
                score += 5

        if s.range52_position_pct is not None:
            where = s.range52_position_pct
            if where >= 90:
                points.append("Near the top of its 52-week range")
            elif where <= 10:
                risks.append("Near the bottom of its 52-week range")

        score = round(max(0.0, min(100.0, score)))
        stance = "bullish" if score >= 60 else "bearish" if score <= 40 else "neutral"
        trend = {"bullish": "Trend looks constructive", "bearish": "Trend looks weak", "neutral": "Mixed signals"}
        if s.change_pct is not None:
            headline = f"{s.symbol} {_pct(s.change_pct)}: {trend[stance].lower()}"
        else:
            headline = f"{s.symbol}: {trend[stance].lower()}"
        return AnalysisResult(
            headline=headline[:90],
            summary=" ".join(sentences[:4]) or f"{name} closed at {s.close:,.2f}.",
            stance=stance,
            score=score,
            points=points[:3],
            risks=risks[:2],
            model=self.model,
            prompt_version=self.prompt_version,
            automated=True,
        )
