"""The analyst behind any OpenAI-compatible chat API: OpenAI, xAI Grok, or a server running Llama 3.

One ticker's snapshot in, one validated and grounded analysis out, through the official `openai` client. It is
written for servers as they really are, from OpenAI's to llama.cpp's single slot that answers one request at a time:

- A request is never abandoned while the server may still be working on it: its read timeout is what is left of
  the stage's time budget (``deadline``), not a short fixed timeout that would count the time spent in the
  server's queue. A timeout therefore means the time is up, and is not retried.
- How many requests are in flight adapts to the server (concurrency.AdaptiveLimit): 429, 5xx and timeouts halve
  it, good answers grow it back, never above LLM_PARALLELISM.
- The reply format is negotiated once per process: JSON schema where the server supports structured output, else
  JSON mode, else plain instructions. While one request asks the server about a format, the other threads wait for
  its verdict, so a refusing server costs one request per run, not one per thread or per retry.
- The client's own retries are off (it retries 5xx, which would repeat every refused request); this module retries
  429s after their Retry-After, 5xx and refused connections a bounded number of times, with the request rate
  shared by every process through the cache.
- A reply that cannot be used (no JSON, the wrong shape, an invented number, a body that is not even JSON) is
  followed up once, with the reason; a second failure raises AnalystError and the stage falls back to the
  rule-based analyst. Every exchange, the bad ones included, is kept in ``calls`` for the audit.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from markets.snapshots import TickerSnapshot
from walter_site.ratelimit import Pacer
from walter_site.retrying import backoff_delay, retry_after_seconds

from .base import AnalysisResult, AnalystError
from .concurrency import NEUTRAL, OK, OVERLOAD, AdaptiveLimit
from .grounding import event_facts, facts, published_utc, supplied_articles
from .replies import SCHEMA, InvalidReply, extract_json, reply_token_budget, validate

logger = logging.getLogger("walter.analysis")

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
FORMATS = ("json_schema", "json_object", "plain")
_USER_MARKER = "---user---"
# Reaching the server is quick or it is down; only the answer may take the rest of the budget.
CONNECT_TIMEOUT = 10.0
BUDGET_SPENT = "the analysis time budget ran out"


class _Formats:
    """What one server (base URL, model) accepted and refused, and which format is being asked about now."""

    def __init__(self) -> None:
        self.accepted: set[str] = set()
        self.refused: set[str] = set()
        self.asking: set[str] = set()
        self.changed = threading.Condition()


# Per server, for the life of the process.
_servers: dict[tuple[str, str], _Formats] = {}
_servers_lock = threading.Lock()


def prompt_facts(snapshot: TickerSnapshot) -> dict[str, Any]:
    """The facts the prompt shows: the snapshot's numbers, and its upcoming events when it has any."""
    found = facts(snapshot)
    events = event_facts(snapshot)
    if events:
        found["upcoming_events"] = events
    return found


def _formats_of(base_url: str, model: str) -> _Formats:
    with _servers_lock:
        return _servers.setdefault((base_url, model), _Formats())


class UnreadableReply(InvalidReply):
    """The HTTP answer itself could not be read as a chat completion (a proxy's page, a cut-off body)."""


def load_prompt(version: str) -> tuple[str, str]:
    """The system and user templates of a prompt version (``newsletters/prompts/analysis-<version>.txt``)."""
    path = PROMPTS / f"analysis-{version}.txt"
    if not path.exists():
        raise ImproperlyConfigured(f"LLM_PROMPT_VERSION={version!r}: no prompt file {path.name}")
    system, _, user = path.read_text().partition(_USER_MARKER)
    return system.strip(), user.strip()


def articles_block(snapshot: TickerSnapshot) -> str:
    """The supplied articles, numbered as the reply may cite them, fenced off as data.

    An article's text is written by strangers: as JSON its quotes and newlines cannot end the list early, and with
    its angle brackets escaped no title can close the <articles> fence and speak as the prompt.
    """
    articles = supplied_articles(snapshot)
    if not articles:
        return "No news articles are supplied for this session: cite none."
    listed = [
        {
            "n": number,
            "title": article.title,
            "publisher": article.publisher,
            "published": published_utc(article).strftime("%Y-%m-%d %H:%M UTC"),
            "provider_sentiment": article.sentiment or "none given",
            "provider_reasoning": article.sentiment_reasoning,
        }
        for number, article in enumerate(articles, start=1)
    ]
    data = json.dumps(listed, indent=1, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
    return (
        f"News articles about {snapshot.symbol}, most relevant first, numbered as you may cite them; the sentiment "
        f"is the provider's reading, not a fact:\n<articles>\n{data}\n</articles>"
    )


def _refuses_format(exc: openai.APIStatusError) -> bool:
    """A compatible server's way of saying it does not support the requested response_format."""
    text = f"{exc.message} {exc.body}".lower()
    return exc.status_code in (400, 422, 500, 501) and any(
        word in text for word in ("response_format", "json_schema", "json_object", "structured output")
    )


class LLMAnalyst:
    """An analyst that asks a chat model; see the module docstring for the protocol it follows with the server."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        parallelism: int | None = None,
        adaptive: bool = True,
        requests_per_minute: float | None = None,
        response_format: str | None = None,
        prompt_version: str | None = None,
        pacer: Pacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model or settings.LLM_MODEL
        if not self.model:
            raise ImproperlyConfigured("LLM_MODEL is not set")
        self.base_url = (base_url if base_url is not None else settings.LLM_BASE_URL) or "https://api.openai.com/v1"
        version = prompt_version or settings.LLM_PROMPT_VERSION
        self.system_prompt, self.user_prompt = load_prompt(version)
        self.prompt_version = f"analysis-{version}"
        self.retries = settings.LLM_MAX_RETRIES if retries is None else retries
        self.temperature = settings.LLM_TEMPERATURE if temperature is None else temperature
        max_tokens = settings.LLM_MAX_TOKENS if max_tokens is None else max_tokens
        self.max_tokens = max_tokens or reply_token_budget()
        # 0: no cap of its own; a request may take what is left of the stage's budget (see the module docstring).
        self.timeout = settings.LLM_TIMEOUT if timeout is None else timeout
        self.parallelism = max(1, settings.LLM_PARALLELISM if parallelism is None else parallelism)
        self.limit = AdaptiveLimit(self.parallelism, adaptive=adaptive)
        self.response_format = response_format or settings.LLM_RESPONSE_FORMAT
        if self.response_format not in ("auto", *FORMATS):
            raise ImproperlyConfigured(f"LLM_RESPONSE_FORMAT must be auto or one of {', '.join(FORMATS)}")
        self.formats = _formats_of(self.base_url, self.model)
        rpm = settings.LLM_REQUESTS_PER_MINUTE if requests_per_minute is None else requests_per_minute
        self.pacer = pacer or Pacer.per_minute(f"llm:{self.base_url}", rpm)
        self.sleep = sleep
        self.client = openai.OpenAI(
            base_url=self.base_url,
            # Local servers (llama.cpp, vLLM, Ollama) take any key; the client insists on one.
            api_key=(api_key if api_key is not None else settings.LLM_API_KEY) or "not-needed",
            max_retries=0,
        )

    # -- the prompt -------------------------------------------------------------------------------------

    def messages(self, snapshot: TickerSnapshot) -> list[dict[str, str]]:
        user = self.user_prompt.format(
            symbol=snapshot.symbol,
            name=snapshot.name or snapshot.symbol,
            date=snapshot.date.isoformat(),
            facts=json.dumps(prompt_facts(snapshot), indent=1),
            articles=articles_block(snapshot),
        )
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": user}]

    # -- Analyst ----------------------------------------------------------------------------------------

    def analyze(self, snapshot: TickerSnapshot, *, deadline: float | None = None) -> AnalysisResult:
        """The analysis, or AnalystError; ``deadline`` (time.monotonic()) is when the stage's time is up."""
        if deadline is None:
            deadline = time.monotonic() + settings.ANALYSIS_TIME_BUDGET
        calls: list[dict[str, Any]] = []
        notes: list[str] = []
        messages = self.messages(snapshot)
        asked = messages
        try:
            for attempt in (1, 2):
                try:
                    reply = self._complete(asked, calls, deadline)
                    fields = validate(extract_json(reply), snapshot, notes=notes)
                    break
                except InvalidReply as exc:
                    calls[-1]["outcome"] = "invalid"
                    calls[-1]["error"] = str(exc)
                    if attempt == 2:
                        raise AnalystError(f"invalid reply after one repair: {exc}") from exc
                    asked = self._repair(messages, calls[-1], exc)
        except AnalystError as exc:
            exc.usage = _usage(calls)
            exc.calls = calls
            raise
        except Exception as exc:  # whatever went wrong, the exchanges so far are kept for the audit
            error = AnalystError(f"{type(exc).__name__}: {exc}")
            error.usage, error.calls = _usage(calls), calls
            raise error from exc
        if notes:
            # A good analysis with an unusable phrase is kept; the audit says why the email has no phrase of its own.
            calls[-1]["error"] = "; ".join(notes)[:2000]
            logger.info("analysis of %s kept without its phrase: %s", snapshot.symbol, "; ".join(notes))
        input_tokens, output_tokens = _usage(calls)
        return AnalysisResult(
            **fields,
            model=self.model,
            prompt_version=self.prompt_version,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            calls=calls,
        )

    @staticmethod
    def _repair(messages: list[dict[str, str]], call: dict[str, Any], problem: InvalidReply) -> list[dict[str, str]]:
        """The follow-up to a reply that cannot be used: the reply and the reason, or the same question again."""
        if isinstance(problem, UnreadableReply):
            return messages  # nothing the model said can be shown back to it
        return [
            *messages,
            {"role": "assistant", "content": call["raw_reply"]},
            {
                "role": "user",
                "content": f"That reply cannot be used: {problem}. Answer again with only the JSON object, "
                "using only the facts given.",
            },
        ]

    # -- the reply format -------------------------------------------------------------------------------

    def _choose_format(self, deadline: float) -> tuple[str, bool]:
        """The format to ask in, and whether this request is the one finding out if the server takes it."""
        if self.response_format != "auto":
            return self.response_format, False
        state = self.formats
        with state.changed:
            while True:
                for fmt in FORMATS:
                    if fmt in state.refused:
                        continue
                    if fmt == "plain" or fmt in state.accepted:
                        return fmt, False
                    if fmt not in state.asking:
                        state.asking.add(fmt)
                        return fmt, True
                    break  # another request is asking about this format: wait for its verdict
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AnalystError(BUDGET_SPENT)
                state.changed.wait(left)

    def _settle_format(self, fmt: str, verdict: str | None) -> None:
        """Record the server's verdict on ``fmt`` (accepted, refused, or None: no verdict, someone asks again)."""
        state = self.formats
        with state.changed:
            state.asking.discard(fmt)
            if verdict == "accepted":
                state.accepted.add(fmt)
            elif verdict == "refused":
                state.refused.add(fmt)
            state.changed.notify_all()

    def _request_options(self, fmt: str) -> dict[str, Any]:
        if fmt == "json_schema":
            return {"response_format": {"type": "json_schema", "json_schema": {"name": "analysis", "schema": SCHEMA}}}
        if fmt == "json_object":
            return {"response_format": {"type": "json_object"}}
        return {}

    # -- the wire ---------------------------------------------------------------------------------------

    def _complete(self, messages: list[dict[str, str]], calls: list[dict[str, Any]], deadline: float) -> str:
        """The model's reply text; every HTTP exchange is recorded in ``calls``."""
        failures = 0
        while True:
            fmt, asking = self._choose_format(deadline)
            sent = len(calls)
            try:
                ticket = self.limit.acquire(timeout=max(0.0, deadline - time.monotonic()))
                if ticket is None:
                    raise AnalystError(BUDGET_SPENT)
                try:
                    action = self._exchange(fmt, messages, calls, deadline, failures)
                finally:
                    self.limit.release(ticket, _load(calls[-1]) if len(calls) > sent else NEUTRAL)
            finally:
                if asking:
                    self._settle_format(fmt, _verdict(calls[-1]) if len(calls) > sent else None)
            if action == "ok":
                return calls[-1]["raw_reply"]
            if action == "retry":
                failures += 1
            # else a refused format: the next one at once, a refusal is an answer, not a failure

    def _exchange(
        self, fmt: str, messages: list[dict[str, str]], calls: list[dict[str, Any]], deadline: float, failures: int
    ) -> str:
        """One HTTP request, recorded in ``calls``; what to do next: ok, retry, or again (in another format)."""
        self.pacer.acquire()
        started = time.monotonic()
        left = deadline - started
        if left <= 0:
            raise AnalystError(BUDGET_SPENT)
        call: dict[str, Any] = {"messages": messages, "response_format": fmt, "raw_reply": "", "error": ""}
        calls.append(call)
        read = min(left, self.timeout) if self.timeout else left
        try:
            raw = self.client.chat.completions.with_raw_response.create(
                model=self.model,
                messages=messages,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                timeout=openai.Timeout(read, connect=min(CONNECT_TIMEOUT, read)),
                **self._request_options(fmt),
            )
        except openai.APIStatusError as exc:
            call.update(latency_ms=_ms(started), status=exc.status_code, raw_reply=_body(exc), error=str(exc.message))
            if fmt != "plain" and self.response_format == "auto" and _refuses_format(exc):
                call["outcome"] = "format refused"
                return "again"
            if exc.status_code == 429 or exc.status_code >= 500:
                return self._retry_or_fail(call, exc, f"HTTP {exc.status_code}", failures, deadline)
            call["outcome"] = "error"
            raise AnalystError(f"HTTP {exc.status_code}: {str(exc.message)[:300]}") from exc
        except openai.APITimeoutError as exc:
            call.update(latency_ms=_ms(started), status=None, outcome="error", error="timed out")
            # Not retried: the server is still busy with it, and asking again would only lengthen its queue.
            if self.timeout and read < left:
                raise AnalystError(f"the model did not answer within LLM_TIMEOUT ({self.timeout:g} s)") from exc
            raise AnalystError(BUDGET_SPENT + " while the model was answering") from exc
        except openai.APIConnectionError as exc:
            call.update(latency_ms=_ms(started), status=None, error="connection failed")
            return self._retry_or_fail(call, exc, "the model's server could not be reached", failures, deadline)
        call.update(latency_ms=_ms(started), status=raw.http_response.status_code)
        try:
            completion = raw.parse()
            choice = completion.choices[0] if completion.choices else None
            message = choice.message if choice else None
            text = (message.content or "") if message else ""
            usage = completion.usage
        except Exception as exc:  # a 200 whose body is not a chat completion: kept as it came, followed up once
            call["raw_reply"] = _text(raw.http_response)
            raise UnreadableReply(f"the server's answer is not a chat completion ({type(exc).__name__})") from exc
        call.update(
            raw_reply=text,
            input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            output_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )
        refusal = getattr(message, "refusal", None) if message else None
        if refusal or (choice and choice.finish_reason == "content_filter"):
            call["outcome"] = "refused"
            raise AnalystError(f"the model refused: {str(refusal or 'content filter')[:300]}")
        if not text.strip():
            call["outcome"] = "empty"
            raise AnalystError("the model returned no text")
        call["outcome"] = "ok"
        if choice and choice.finish_reason == "length":
            call["outcome"] = "cut off"
            raise InvalidReply(f"the reply was cut off at {self.max_tokens} tokens; write less")
        return "ok"

    def _retry_or_fail(self, call: dict[str, Any], exc: Exception, what: str, failures: int, deadline: float) -> str:
        """After a 429, 5xx or refused connection: wait and retry, or raise when retries or time are spent."""
        failures += 1
        if failures > self.retries:
            call["outcome"] = "error"
            raise AnalystError(f"{what} after {failures} attempts") from exc
        if isinstance(exc, openai.APIStatusError) and exc.status_code == 429:
            wait = retry_after_seconds(exc.response.headers, settings.LLM_RETRY_AFTER_DEFAULT)
            if wait > settings.LLM_RETRY_AFTER_MAX:
                call["outcome"] = "error"
                raise AnalystError(f"rate limited for {wait:.0f} s") from exc
        else:
            wait = backoff_delay(failures)
        if time.monotonic() + wait >= deadline:
            call["outcome"] = "error"
            raise AnalystError(f"{what}; {BUDGET_SPENT} before a retry") from exc
        call["outcome"] = "retried"
        if isinstance(exc, openai.APIStatusError) and exc.status_code == 429:
            self.pacer.defer(wait)  # every caller in every process waits it out
        else:
            self.sleep(wait)
        return "retry"


def _load(call: dict[str, Any]) -> str:
    """What one exchange says about the server's load, for the adaptive limit."""
    status = call.get("status")
    if call.get("outcome") == "format refused":
        return NEUTRAL
    if status == 429 or (status or 0) >= 500 or call.get("error") in ("timed out", "connection failed"):
        return OVERLOAD
    return OK if status == 200 else NEUTRAL


def _verdict(call: dict[str, Any]) -> str | None:
    """What one exchange says about its response format: accepted (any 200), refused, or nothing yet."""
    if call.get("outcome") == "format refused":
        return "refused"
    return "accepted" if call.get("status") == 200 else None


def _usage(calls: list[dict[str, Any]]) -> tuple[int, int]:
    return sum(c.get("input_tokens", 0) for c in calls), sum(c.get("output_tokens", 0) for c in calls)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _text(response: Any) -> str:
    try:
        return response.text[:20_000]
    except Exception:  # a body that cannot be read is not worth failing the audit for
        return ""


def _body(exc: openai.APIStatusError) -> str:
    try:
        return exc.response.text[:20_000]
    except Exception:  # a body that cannot be read is not worth failing the audit for
        return json.dumps(exc.body)[:20_000] if exc.body is not None else ""
