"""Fault modes for the local fake servers, as subclasses in the bench (the fakes themselves are only extended
additively by their owners): a persistent mode answers every request the same bad way until it is set back.

- ``FaultyPolygon.mode``: ``""`` (healthy), ``"500"`` (every request answers HTTP 500), ``"garbage"`` (HTTP 200 with
  a body that is not JSON, as a proxy's error page would be), ``"hang"`` (answers after ``hang_seconds``, longer
  than the client's read timeout). "Down" needs no mode: the provider is pointed at a
  port where nothing listens.
- ``FaultyOpenAI.mode``: ``""``, ``"500"``, ``"garbage"`` (a 200 whose JSON stops half-way), ``"slow"`` (one slot,
  like a llama.cpp server started with one: requests wait for each other, each takes ``slow_seconds``).
"""

from __future__ import annotations

import threading
from typing import Any

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openai_server import Reply as LLMReply
from tests.fakes.polygon_server import FakePolygon
from tests.fakes.polygon_server import Reply as PolygonReply

GARBAGE_HTML = b"<html><body><h1>502 Bad Gateway</h1>upstream sent garbage</body></html>"
HALF_COMPLETION = '{"id": "chatcmpl-bench", "object": "chat.completion", "choices": [{"index": 0, "message": {"ro'


class FaultyPolygon(FakePolygon):
    def __init__(self) -> None:
        super().__init__()
        self.mode = ""
        self.hang_seconds = 10.0

    def _route(self, path: str, query: dict[str, list[str]], raw_query: str) -> PolygonReply:
        if self.mode == "500":
            return PolygonReply(500, {"status": "ERROR", "request_id": "bench", "error": "Internal Server Error"})
        if self.mode == "garbage":
            return PolygonReply(200, GARBAGE_HTML)
        reply = super()._route(path, query, raw_query)
        if self.mode == "hang":
            reply.delay = self.hang_seconds
        return reply


class FaultyOpenAI(FakeOpenAI):
    def __init__(self) -> None:
        super().__init__()
        self.mode = ""
        self.slow_seconds = 1.5
        self._slot = threading.Lock()

    def _next(self, request: dict[str, Any]) -> LLMReply:
        if self.mode == "500":
            return LLMReply(500, {"error": {"message": "The server had an error", "type": "server_error"}})
        if self.mode == "garbage":
            return LLMReply(200, HALF_COMPLETION)
        reply = super()._next(request)
        if self.mode == "slow":
            reply.delay = self.slow_seconds
        return reply

    def _handle(self, handler: Any) -> None:
        if self.mode != "slow":
            super()._handle(handler)
            return
        # One slot: a request that arrives while another is being answered waits, even after its client gave up.
        with self._slot:
            super()._handle(handler)
