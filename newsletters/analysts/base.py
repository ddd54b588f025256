"""What every analyst offers: one ticker's snapshot in, a validated analysis out. It never sees a subscriber."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from markets.snapshots import TickerSnapshot

STANCES = ("bullish", "neutral", "bearish")


@dataclass
class AnalysisResult:
    headline: str
    summary: str
    stance: str
    score: int
    #: A short phrase for the email's headline and subject ("slips under its 50-day line"); empty: none usable.
    phrase: str = ""
    points: list[str] = field(default_factory=list)
    risks: list[str] = field(default_factory=list)
    model: str = ""
    prompt_version: str = ""
    automated: bool = False
    fallback_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    #: Every exchange with the model behind this result (prompt, raw reply, tokens, outcome), for the audit trail.
    calls: list[dict] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.stance not in STANCES:
            raise ValueError(f"stance must be one of {', '.join(STANCES)}, not {self.stance!r}")
        if not 0 <= int(self.score) <= 100:
            raise ValueError(f"score must be 0-100, not {self.score}")
        self.score = int(self.score)


class AnalystError(Exception):
    """The analyst could not produce a usable analysis; the caller falls back to the rule-based one."""

    #: Tokens spent on the way to the failure (input, output), and the exchanges, for cost and audit.
    usage: tuple[int, int] = (0, 0)
    calls: list[dict] = []


@runtime_checkable
class Analyst(Protocol):
    #: The model name and prompt version: with the ticker and date, the cache key of an analysis.
    model: str
    prompt_version: str

    def analyze(self, snapshot: TickerSnapshot, *, deadline: float | None = None) -> AnalysisResult:
        """The analysis; ``deadline`` (a time.monotonic() value) is when the stage stops waiting for it."""
        ...
