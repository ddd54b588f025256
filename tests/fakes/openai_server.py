"""A fake OpenAI-compatible chat server on loopback, for testing the analyst through the real `openai` client.

By default it answers like a good model: a grounded analysis built from the facts in the prompt. Tests queue
scenarios that are served first, in order: replies recorded from a llama.cpp server (`tests/fixtures/openai/`),
JSON in prose or code fences, schema violations, invented numbers, 429 with Retry-After, 500, answers slower
than the client's timeout, refusals. ``refuse_json_schema`` makes it answer structured-output requests the way
llama.cpp does (HTTP 500 with a validation message). Every request is recorded so tests can count them.

``slots`` makes it behave like llama.cpp's server under load: at most that many requests are worked on at once,
each for ``answer_delay`` seconds, and the others wait in a queue. A client that hangs up while its request is
queued or being worked on is counted in ``abandoned`` (llama.cpp logs these and drops the task); ``in_flight`` and
``max_in_flight`` count the requests the server holds, queued or not.
"""

from __future__ import annotations

import itertools
import json
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openai"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # a dict is sent as JSON, a str as it is
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def completion(content: str | None, *, prompt_tokens: int = 120, completion_tokens: int = 60, **message: Any) -> Reply:
    """A chat completion whose assistant message says ``content``."""
    return Reply(
        body={
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_795_404_275,
            "model": "fake-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, **message},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def recorded(name: str) -> Reply:
    """A reply recorded from a real compatible server (see tests/fixtures/openai/)."""
    data = json.loads((FIXTURES / name).read_text())
    return Reply(status=data["status"], body=data["body"])


def facts_in(messages: list[dict[str, str]]) -> dict[str, Any]:
    """The facts object of the prompt (the JSON that follows the line naming the session)."""
    user = next(m["content"] for m in messages if m["role"] == "user")
    start = user.find("{")
    # Decoded whole, not matched up to the first "}": the facts hold nested objects (the upcoming events).
    return json.JSONDecoder().raw_decode(user, start)[0] if start >= 0 else {}


def good_analysis(messages: list[dict[str, str]]) -> dict[str, Any]:
    """What a careful model would write: only the facts' own numbers, in their own kinds."""
    f = facts_in(messages)
    symbol = re.search(r"Facts about (\S+)", messages[-1]["content"] if messages else "")
    symbol = symbol.group(1) if symbol else "The stock"
    change = f.get("change_pct", 0.0)
    direction = "rose" if change >= 0 else "fell"
    return {
        "headline": f"{symbol} {direction} {abs(change):.2f}% to close at ${f.get('close', 0):.2f}",
        "phrase": f"{direction} {abs(change):.2f}% on the day",
        "summary": (
            f"{symbol} {direction} {abs(change):.2f}% in the session. "
            f"Its RSI stands at {f.get('rsi14', 50):.1f}, and the price is {f.get('drawdown180_pct', 0):.2f}% "
            "from its 180-day high."
        ),
        "stance": "neutral",
        "score": 55,
        "points": [f"The 50-day average is ${f.get('sma50', 0):.2f}."],
        "risks": ["Momentum can fade quickly."],
    }


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.scripts: deque[Reply | Callable[[dict[str, Any]], Reply]] = deque()
        self.refuse_json_schema = False
        self.answer_delay = 0.0
        #: How many requests are worked on at once (None: as many as arrive); the rest queue.
        self.slots: int | None = None
        #: Work on only this many requests (None: all); every later one is held unanswered until its client hangs
        #: up, like a model that stopped answering, so a test knows exactly which answers were paid for.
        self.hold_after: int | None = None
        self._taken = 0
        self.abandoned = 0
        self.answered = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._slot_lock = threading.Lock()
        self._slot_free = threading.Condition(self._slot_lock)
        self._busy = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                fake._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def script(self, *replies: Reply | Callable[[dict[str, Any]], Reply]) -> None:
        with self._lock:
            self.scripts.extend(replies)

    def count(self) -> int:
        return len(self.requests)

    def formats(self) -> list[str | None]:
        """The response_format type of every request, in order (None: plain instructions)."""
        return [(r.get("response_format") or {}).get("type") for r in self.requests]

    # -- one slot, like llama.cpp: queue, work, notice a client that hung up ------------------------------

    @staticmethod
    def _hung_up(sock: socket.socket) -> bool:
        """True once the client closed its end (a readable socket with nothing to read)."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _take_slot(self, sock: socket.socket) -> bool:
        """Wait for a free slot; False when the client hung up while queued."""
        with self._slot_free:
            while self.slots is not None and self._busy >= self.slots:
                self._slot_free.wait(0.02)
                if self._hung_up(sock):
                    return False
            self._busy += 1
            return True

    def _free_slot(self) -> None:
        with self._slot_free:
            self._busy -= 1
            self._slot_free.notify()

    def _work(self, sock: socket.socket, seconds: float) -> bool:
        """Spend ``seconds`` on the answer; False when the client hung up meanwhile."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.02, left))
            if self._hung_up(sock):
                return False
        return True

    def _next(self, request: dict[str, Any]) -> Reply:
        fmt = (request.get("response_format") or {}).get("type")
        if self.refuse_json_schema and fmt == "json_schema":
            return recorded("llamacpp_MSFT_json_schema.json")
        with self._lock:
            scripted = self.scripts.popleft() if self.scripts else None
        if scripted is not None:
            return scripted(request) if callable(scripted) else scripted
        reply = completion(json.dumps(good_analysis(request["messages"])))
        reply.delay = self.answer_delay
        return reply

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        try:
            request = json.loads(handler.rfile.read(length) or b"{}")
        except ValueError:
            request = {}
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._answer(handler, request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, handler: BaseHTTPRequestHandler, request: dict[str, Any]) -> None:
        sock = handler.connection
        if not self._take_slot(sock):
            self._abandon(handler)
            return
        try:
            with self._lock:
                held = self.hold_after is not None and self._taken >= self.hold_after
                self._taken += not held
            if held:
                while not self._hung_up(sock):
                    time.sleep(0.02)
                self._abandon(handler)
                return
            reply = self._next(request)
            if reply.delay and not self._work(sock, reply.delay):
                self._abandon(handler)
                return
        finally:
            self._free_slot()
        body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        data = body.encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self._abandon(handler)  # the client gave up (its timeout), as a real client does
            return
        with self._lock:
            self.answered += 1

    def _abandon(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.abandoned += 1
        handler.close_connection = True


# -- the bad days, as replies to script --------------------------------------------------------------------


def overloaded(status: int = 503) -> Reply:
    """A server that cannot take the request now (503 busy, 502 from a proxy, 500)."""
    return Reply(status, {"error": {"message": "server busy", "type": "unavailable"}})


def rate_limited(retry_after: float | None = None) -> Reply:
    return Reply(
        429,
        {"error": {"message": "rate limit reached", "type": "rate_limit"}},
        headers={"Retry-After": str(retry_after)} if retry_after is not None else {},
    )


def garbage() -> Reply:
    """An HTTP 200 whose body is not JSON at all (a proxy's error page, a cut-off body)."""
    return Reply(200, "<html><body>502 Bad Gateway</body></html>")


def not_json() -> Reply:
    """A well-formed completion whose text holds no JSON: the model chatted instead of answering."""
    return completion("Sure! Microsoft had a good day, and the outlook is positive overall.")
