"""From a model's reply to a validated analysis: find the JSON, check its shape, check its numbers.

Small and compatible servers wrap JSON in prose or code fences, echo the input, or answer with the wrong keys; a
reply is used only when it has exactly the structure the email needs, every number in it is grounded and every
article it cites was supplied. The phrase is the exception: it only decorates the email's headline and subject,
so an unusable one is dropped (the email falls back to its own wording) rather than costing a good analysis.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from markets.snapshots import TickerSnapshot

from .base import STANCES
from .grounding import cited_articles, supplied_articles, ungrounded_numbers

HEADLINE_MAX = 90
PHRASE_MAX = 40  # Analysis.phrase's column; short enough for a subject line with two or three tickers
SUMMARY_MAX = 600  # four sentences of about 150 characters
ITEM_MAX = 160  # one key point or risk
POINTS_MAX = 3
RISKS_MAX = 2
SUMMARY_SENTENCES = (2, 4)

#: The JSON schema sent to servers that support structured output.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "headline": {"type": "string", "maxLength": HEADLINE_MAX},
        "phrase": {"type": "string", "maxLength": PHRASE_MAX},
        "summary": {"type": "string", "maxLength": SUMMARY_MAX},
        "stance": {"type": "string", "enum": list(STANCES)},
        "score": {"type": "integer", "minimum": 0, "maximum": 100},
        "points": {"type": "array", "items": {"type": "string", "maxLength": ITEM_MAX}, "maxItems": POINTS_MAX},
        "risks": {"type": "array", "items": {"type": "string", "maxLength": ITEM_MAX}, "maxItems": RISKS_MAX},
    },
    "required": ["headline", "summary", "stance", "score", "points", "risks", "phrase"],
    "additionalProperties": False,
}

# Tokenizers of the GPT and Llama 3 families average about 4 characters of English per token; JSON punctuation,
# numbers and short words cost more, so count 3. The margin covers indentation and a closing code fence.
CHARS_PER_TOKEN = 3
TOKEN_MARGIN = 1.25


def reply_token_budget(schema: dict[str, Any] = SCHEMA) -> int:
    """Enough output tokens for the longest reply the schema allows, and not many more.

    Too few cuts a valid answer off mid-JSON; too many lets a rambling model hold a one-slot server for longer.
    The longest reply is the schema's skeleton (keys, quotes, brackets, the longest enum value, the largest
    number) plus every string at its maxLength, every list at its maxItems.
    """
    chars = 2  # the braces
    for key, spec in schema["properties"].items():
        chars += len(key) + 4  # "key": and a comma
        if spec["type"] == "string":
            chars += spec.get("maxLength") or max((len(v) for v in spec.get("enum", [])), default=0)
            chars += 2
        elif spec["type"] == "integer":
            chars += len(str(spec.get("maximum", 100)))
        elif spec["type"] == "array":
            items = spec.get("maxItems", 1)
            chars += 2 + items * (spec["items"].get("maxLength", 0) + 4)
    return math.ceil(chars / CHARS_PER_TOKEN * TOKEN_MARGIN)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
# A sentence ends at . ! or ? followed by a space and a capital (so "2.3%" or "U.S. stocks" do not split).
# A sentence ends at . ! or ? before a capital, but not after a company's or a country's abbreviation
# ("Berkshire Hathaway Inc. Class B", "U.S. Treasuries"), which would count one sentence as two.
_SENTENCE_END = re.compile(
    r"(?<!\bInc\.)(?<!\bCorp\.)(?<!\bCo\.)(?<!\bLtd\.)(?<!\bPlc\.)(?<![A-Z]\.[A-Z]\.)"
    r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z\"'(])"
)


class InvalidReply(ValueError):
    """The reply cannot be used as it is; the message says why, and is sent back to the model once."""


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` that looks like an analysis: whole, fenced, or inside prose."""
    candidates = [text.strip()] + [m.group(1).strip() for m in _FENCE.finditer(text)]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    found: dict[str, Any] | None = None
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            if "headline" in value:
                return value
            found = found or value
    if found is not None:
        return found
    raise InvalidReply("the reply holds no JSON object")


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _text_list(data: dict[str, Any], key: str, most: int) -> list[str]:
    value = data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidReply(f'"{key}" must be a list of short texts')
    if len(value) > most:
        raise InvalidReply(f'"{key}" has {len(value)} items; at most {most} are allowed')
    if any(len(v.strip()) > ITEM_MAX for v in value):
        raise InvalidReply(f'each of "{key}" must have at most {ITEM_MAX} characters')
    return [v.strip() for v in value]


def phrase_problem(phrase: str, snapshot: TickerSnapshot) -> str:
    """Why ``phrase`` cannot stand after the symbol in a headline or subject; empty when it can.

    Only the snapshot's own numbers: a subject line carries no citation, so an article's figure would be unsourced.
    """
    if not phrase:
        return "it is empty"
    if len(phrase) > PHRASE_MAX:
        return f"it has {len(phrase)} characters; at most {PHRASE_MAX} are allowed"
    if "\n" in phrase or phrase.endswith((".", "!", "?")):
        return "it must be one line with no closing punctuation"
    ungrounded = ungrounded_numbers(phrase, snapshot, articles=False) + [
        f"[{n}] is a citation" for n in cited_articles(phrase)
    ]
    if ungrounded:
        return "numbers that are not the snapshot's: " + "; ".join(ungrounded)
    return ""


def validate(data: dict[str, Any], snapshot: TickerSnapshot, *, notes: list[str] | None = None) -> dict[str, Any]:
    """The analysis fields, or InvalidReply naming every problem found.

    A phrase that cannot be used is left empty instead, and why is added to ``notes`` for the audit.
    """
    problems: list[str] = []
    missing = [k for k in ("headline", "summary", "stance", "score") if k not in data]
    if missing:
        raise InvalidReply(f"missing keys: {', '.join(missing)}")
    headline = data["headline"]
    if not isinstance(headline, str) or not headline.strip():
        problems.append('"headline" must be a non-empty text')
    elif len(headline.strip()) > HEADLINE_MAX:
        problems.append(f'"headline" has {len(headline.strip())} characters; at most {HEADLINE_MAX} are allowed')
    elif headline.strip().upper() == snapshot.symbol:
        problems.append('"headline" must say something, not only the symbol')
    summary = data["summary"]
    if not isinstance(summary, str):
        problems.append('"summary" must be a text')
    else:
        count = len(sentences(summary))
        low, high = SUMMARY_SENTENCES
        if not low <= count <= high:
            problems.append(f'"summary" has {count} sentences; it must have {low} to {high}')
        if len(summary.strip()) > SUMMARY_MAX:
            problems.append(f'"summary" has {len(summary.strip())} characters; at most {SUMMARY_MAX} are allowed')
    stance = str(data["stance"]).strip().lower()
    if stance not in STANCES:
        problems.append(f'"stance" must be one of {", ".join(STANCES)}')
    score = data["score"]
    if isinstance(score, bool) or not isinstance(score, int | float) or score != int(score) or not 0 <= score <= 100:
        problems.append('"score" must be an integer from 0 to 100')
    try:
        points = _text_list(data, "points", POINTS_MAX)
        risks = _text_list(data, "risks", RISKS_MAX)
    except InvalidReply as exc:
        problems.append(str(exc))
        points, risks = [], []
    if problems:
        raise InvalidReply("; ".join(problems))
    fields = {
        "headline": headline.strip(),
        "summary": summary.strip(),
        "stance": stance,
        "score": int(score),
        "points": points,
        "risks": risks,
    }
    text = " ".join([fields["headline"], fields["summary"], *points, *risks])
    supplied = len(supplied_articles(snapshot))
    unknown = sorted({n for n in cited_articles(text) if not 1 <= n <= supplied})
    if unknown:
        given = {0: "no articles were supplied", 1: "only article [1] was supplied"}.get(
            supplied, f"only articles [1] to [{supplied}] were supplied"
        )
        problems.append(f"cites {', '.join(f'[{n}]' for n in unknown)} but {given}")
    ungrounded = ungrounded_numbers(text, snapshot)
    if ungrounded:
        problems.append("numbers that do not match the facts: " + "; ".join(ungrounded))
    if problems:
        raise InvalidReply("; ".join(problems))
    phrase = data.get("phrase")
    if isinstance(phrase, str):
        # The email puts the symbol before the phrase; a model that repeats it would print it twice.
        phrase = re.sub(rf"^{re.escape(snapshot.symbol)}\b[\s:,]*", "", phrase.strip())
        problem = phrase_problem(phrase, snapshot)
    else:
        problem = "the reply has none" if phrase is None else "it is not a text"
    if problem:
        if notes is not None:
            notes.append(f"the phrase {str(phrase)[:80]!r} was dropped: {problem}")
        phrase = ""
    fields["phrase"] = phrase
    return fields
