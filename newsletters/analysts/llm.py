"""The analyst behind any OpenAI-compatible chat API: OpenAI, xAI Grok, or a server running Llama 3.

One ticker's snapshot in, one validated and grounded analysis out, through the official `openai` client. The
reply format is negotiated once per process: JSON schema where the server supports structured output, else JSON
mode, else plain instructions; a format the server refuses is remembered, so a refusing server costs one request
per run rather than one per ticker. The client's own retries are off (it retries 5xx, which would repeat every
refused request); this module retries 429s after their Retry-After, 5xx and timeouts, a bounded number of times,
with the request rate shared by every process through the cache. An invalid or ungrounded reply is sent back
once with the reason; a second failure raises AnalystError and the stage falls back to the rule-based analyst.
"""

from __future__ import annotations

import json
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

from .base import AnalysisResult, AnalystError
from .grounding import facts
from .replies import SCHEMA, InvalidReply, extract_json, validate

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
FORMATS = ("json_schema", "json_object", "plain")
_USER_MARKER = "---user---"

# Formats each server refused, by (base URL, model), for the life of the process.
_refused: dict[tuple[str, str], set[str]] = {}
_refused_lock = threading.Lock()


def load_prompt(version: str) -> tuple[str, str]:
    """The system and user templates of a prompt version (``newsletters/prompts/analysis-<version>.txt``)."""
    path = PROMPTS / f"analysis-{version}.txt"
    if not path.exists():
        raise ImproperlyConfigured(f"LLM_PROMPT_VERSION={version!r}: no prompt file {path.name}")
    system, _, user = path.read_text().partition(_USER_MARKER)
    return system.strip(), user.strip()


def _refuses_format(exc: openai.APIStatusError) -> bool:
    """A compatible server's way of saying it does not support the requested response_format."""
    text = f"{exc.message} {exc.body}".lower()
    return exc.status_code in (400, 422, 500, 501) and any(
        word in text for word in ("response_format", "json_schema", "json_object", "structured output")
    )


def _retry_after(exc: openai.APIStatusError, default: float) -> float:
    headers = exc.response.headers if exc.response is not None else {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return default


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
        self.max_tokens = settings.LLM_MAX_TOKENS if max_tokens is None else max_tokens
        self.parallelism = settings.LLM_PARALLELISM if parallelism is None else parallelism
        self.response_format = response_format or settings.LLM_RESPONSE_FORMAT
        if self.response_format not in ("auto", *FORMATS):
            raise ImproperlyConfigured(f"LLM_RESPONSE_FORMAT must be auto or one of {', '.join(FORMATS)}")
        rpm = settings.LLM_REQUESTS_PER_MINUTE if requests_per_minute is None else requests_per_minute
        self.pacer = pacer or Pacer.per_minute(f"llm:{self.base_url}", rpm)
        self.sleep = sleep
        self.client = openai.OpenAI(
            base_url=self.base_url,
            # Local servers (llama.cpp, vLLM, Ollama) take any key; the client insists on one.
            api_key=(api_key if api_key is not None else settings.LLM_API_KEY) or "not-needed",
            timeout=settings.LLM_TIMEOUT if timeout is None else timeout,
            max_retries=0,
        )

    # -- the prompt -------------------------------------------------------------------------------------

    def messages(self, snapshot: TickerSnapshot) -> list[dict[str, str]]:
        user = self.user_prompt.format(
            symbol=snapshot.symbol,
            name=snapshot.name or snapshot.symbol,
            date=snapshot.date.isoformat(),
            facts=json.dumps(facts(snapshot), indent=1),
        )
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": user}]

    # -- Analyst ----------------------------------------------------------------------------------------

    def analyze(self, snapshot: TickerSnapshot) -> AnalysisResult:
        calls: list[dict[str, Any]] = []
        messages = self.messages(snapshot)
        try:
            reply = self._complete(messages, calls)
            try:
                fields = validate(extract_json(reply), snapshot)
            except InvalidReply as exc:
                calls[-1]["outcome"] = "invalid"
                calls[-1]["error"] = str(exc)
                repair = [
                    *messages,
                    {"role": "assistant", "content": reply},
                    {
                        "role": "user",
                        "content": f"That reply cannot be used: {exc}. Answer again with only the JSON object, "
                        "using only the facts given.",
                    },
                ]
                reply = self._complete(repair, calls)
                try:
                    fields = validate(extract_json(reply), snapshot)
                except InvalidReply as again:
                    calls[-1]["outcome"] = "invalid"
                    calls[-1]["error"] = str(again)
                    raise AnalystError(f"invalid reply after one repair: {again}") from again
        except AnalystError as exc:
            exc.usage = _usage(calls)
            exc.calls = calls
            raise
        input_tokens, output_tokens = _usage(calls)
        return AnalysisResult(
            **fields,
            model=self.model,
            prompt_version=self.prompt_version,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            calls=calls,
        )

    # -- the wire ---------------------------------------------------------------------------------------

    def _format(self) -> str:
        if self.response_format != "auto":
            return self.response_format
        with _refused_lock:
            refused = _refused.get((self.base_url, self.model), set())
        return next(f for f in FORMATS if f not in refused or f == "plain")

    def _refuse(self, fmt: str) -> None:
        with _refused_lock:
            _refused.setdefault((self.base_url, self.model), set()).add(fmt)

    def _request_options(self, fmt: str) -> dict[str, Any]:
        if fmt == "json_schema":
            return {"response_format": {"type": "json_schema", "json_schema": {"name": "analysis", "schema": SCHEMA}}}
        if fmt == "json_object":
            return {"response_format": {"type": "json_object"}}
        return {}

    def _complete(self, messages: list[dict[str, str]], calls: list[dict[str, Any]]) -> str:
        """The model's reply text; every HTTP exchange is recorded in ``calls``."""
        failures = 0
        while True:
            fmt = self._format()
            call: dict[str, Any] = {"messages": messages, "response_format": fmt, "raw_reply": "", "error": ""}
            calls.append(call)
            self.pacer.acquire()
            started = time.monotonic()
            try:
                completion = self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    **self._request_options(fmt),
                )
            except openai.APIStatusError as exc:
                call.update(
                    latency_ms=_ms(started), status=exc.status_code, raw_reply=_body(exc), error=str(exc.message)
                )
                if fmt != "plain" and self.response_format == "auto" and _refuses_format(exc):
                    call["outcome"] = "format refused"
                    self._refuse(fmt)
                    continue  # the next format, at once: a refusal is an answer, not a failure
                if exc.status_code == 429 or exc.status_code >= 500:
                    failures += 1
                    if failures > self.retries:
                        call["outcome"] = "error"
                        raise AnalystError(f"HTTP {exc.status_code} after {failures} attempts") from exc
                    call["outcome"] = "retried"
                    if exc.status_code == 429:
                        wait = _retry_after(exc, settings.LLM_RETRY_AFTER_DEFAULT)
                        if wait > settings.LLM_RETRY_AFTER_MAX:
                            call["outcome"] = "error"
                            raise AnalystError(f"rate limited for {wait:.0f} s") from exc
                        self.pacer.defer(wait)  # every caller in every process waits it out
                    else:
                        self.sleep(min(8.0, 0.5 * 2 ** (failures - 1)))
                    continue
                call["outcome"] = "error"
                raise AnalystError(f"HTTP {exc.status_code}: {str(exc.message)[:300]}") from exc
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                failures += 1
                reason = "timed out" if isinstance(exc, openai.APITimeoutError) else "connection failed"
                call.update(latency_ms=_ms(started), status=None, error=reason)
                if failures > self.retries:
                    call["outcome"] = "error"
                    raise AnalystError(f"the model {reason} after {failures} attempts") from exc
                call["outcome"] = "retried"
                continue
            usage = completion.usage
            call.update(
                latency_ms=_ms(started),
                status=200,
                input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                output_tokens=getattr(usage, "completion_tokens", 0) or 0,
            )
            choice = completion.choices[0] if completion.choices else None
            message = choice.message if choice else None
            call["raw_reply"] = (message.content or "") if message else ""
            refusal = getattr(message, "refusal", None) if message else None
            if refusal or (choice and choice.finish_reason == "content_filter"):
                call["outcome"] = "refused"
                raise AnalystError(f"the model refused: {str(refusal or 'content filter')[:300]}")
            if not call["raw_reply"].strip():
                call["outcome"] = "empty"
                raise AnalystError("the model returned no text")
            call["outcome"] = "ok"
            return call["raw_reply"]


def _usage(calls: list[dict[str, Any]]) -> tuple[int, int]:
    return sum(c.get("input_tokens", 0) for c in calls), sum(c.get("output_tokens", 0) for c in calls)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _body(exc: openai.APIStatusError) -> str:
    try:
        return exc.response.text[:20_000]
    except Exception:  # a body that cannot be read is not worth failing the audit for
        return json.dumps(exc.body)[:20_000] if exc.body is not None else ""
