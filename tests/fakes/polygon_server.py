"""A fake Polygon.io REST server on loopback, for testing the provider through the real `massive` client.

It replays the recorded responses in `tests/fixtures/polygon/` (file name = request path with `/` and `&` turned
into `_`), serves a synthetic market that tests fill in (random walks, splits, holidays), and plays scripted
scenarios before anything else: 429 with Retry-After, 500, answers slower than the client's timeout, malformed
JSON. Lasting faults (``fault()``) hold until ``heal()``: the server down (connection refused), 500, garbage JSON,
a hang beyond the client's timeout, or "not published" (an OK answer without results). Every request is recorded
so tests can count them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np

# shared/ sits beside the repository.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "polygon"

GROUPED = re.compile(r"^/v2/aggs/grouped/locale/us/market/stocks/(\d{4}-\d{2}-\d{2})$")
RANGE = re.compile(r"^/v2/aggs/ticker/([^/]+)/range/1/day/(\d{4}-\d{2}-\d{2})/(\d{4}-\d{2}-\d{2})$")
DETAILS = re.compile(r"^/v3/reference/tickers/([^/]+)$")
MARKET_TZ_OFFSET_HOURS = 5  # bars are stamped at midnight New York time; EST is close enough for the fake


@dataclass
class Reply:
    """One scripted answer: status, headers, body (bytes or JSON-able), and a delay before answering."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


#: Lasting fault modes for ``FakePolygon.fault``.
FAULTS = ("500", "garbage", "hang", "unpublished")


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    authorization: str


class FakePolygon:
    def __init__(self, port: int = 0) -> None:
        self.bars: dict[str, dict[dt.date, tuple[float, float, float, float, float]]] = {}
        self.names: dict[str, str] = {}
        self.holidays: list[dict[str, str]] | None = None  # None: replay the recorded upcoming holidays
        self.splits: list[dict[str, Any]] = []
        self.dividends: list[dict[str, Any]] = []  # Polygon's dividend records (see add_dividend)
        # Benzinga earnings records; None: the plan does not include them and the server answers 403 NOT_AUTHORIZED,
        # as Polygon does for every plan without the Benzinga add-on.
        self.earnings: list[dict[str, Any]] | None = None
        self.event_page_cap = 1000  # dividend, split and earnings pages hold at most this many results
        self.unpublished: set[dt.date] = set()  # grouped daily answers "no results" for these dates
        self.page_cap = 1000  # ticker search pages hold at most this many results, like Polygon's own cap
        self.news: list[dict[str, Any]] = []  # /v2/reference/news results, in the recorded shape (see add_news)
        self.scripts: list[tuple[str, deque[Reply]]] = []
        self.faults: dict[str, tuple[str, float]] = {}  # path prefix → (mode, hang seconds)
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._handler = Handler
        self._listen(port)

    def _listen(self, port: int) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-polygon", daemon=True
        )

    # -- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakePolygon:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def down(self) -> None:
        """Stop listening: every request is refused until ``up()``, on the same address."""
        self.server.shutdown()
        self.server.server_close()

    def up(self) -> None:
        """Listen again on the address ``down()`` closed, with everything set up so far."""
        self._listen(self.server.server_address[1])
        self.thread.start()

    # -- what tests set up ---------------------------------------------------------------------------------

    def script(self, path_prefix: str, *replies: Reply) -> None:
        """Answer the next requests whose path starts with ``path_prefix`` with ``replies``, in order."""
        with self._lock:
            self.scripts.append((path_prefix, deque(replies)))

    def fault(self, path_prefix: str, mode: str, *, hang: float = 60.0) -> None:
        """Answer every request whose path starts with ``path_prefix`` badly until ``heal()``: a mode of FAULTS.

        "hang" answers after ``hang`` seconds (beyond the client's read timeout); "unpublished" is Polygon's OK
        answer without results, as for a session whose data is not out yet.
        """
        if mode not in FAULTS:
            raise ValueError(f"unknown fault {mode!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self.faults[path_prefix] = (mode, hang)

    def heal(self) -> None:
        with self._lock:
            self.faults.clear()

    def add_random_walks(
        self, symbols: list[str], days: list[dt.date], *, seed: int = 7, start_price: float = 100.0
    ) -> None:
        """A plausible, deterministic daily series for each symbol over ``days``."""
        rng = np.random.default_rng(seed)
        for symbol in symbols:
            returns = rng.normal(0.0003, 0.015, len(days))
            close = start_price * rng.uniform(0.2, 3.0) * np.exp(np.cumsum(returns))
            open_ = close * np.exp(-returns / 2)
            high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, len(days)))
            low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, len(days)))
            volume = np.round(rng.uniform(1e5, 1e7, len(days)))
            series = self.bars.setdefault(symbol, {})
            for i, day in enumerate(days):
                series[day] = (
                    round(float(open_[i]), 4),
                    round(float(high[i]), 4),
                    round(float(low[i]), 4),
                    round(float(close[i]), 4),
                    float(volume[i]),
                )
            self.names.setdefault(symbol, f"{symbol} Holdings Inc.")

    def set_bar(self, symbol: str, day: dt.date, o: float, h: float, lo: float, c: float, v: float) -> None:
        self.bars.setdefault(symbol, {})[day] = (o, h, lo, c, v)
        self.names.setdefault(symbol, f"{symbol} Holdings Inc.")

    def apply_split(self, symbol: str, day: dt.date, ratio: float) -> None:
        """A ``ratio``-for-1 split effective on ``day``: earlier bars are adjusted and a reference record appears."""
        series = self.bars[symbol]
        for d in list(series):
            if d < day:
                o, h, lo, c, v = series[d]
                series[d] = (o / ratio, h / ratio, lo / ratio, c / ratio, v * ratio)
        self.splits.append({"ticker": symbol, "execution_date": day.isoformat(), "split_from": 1, "split_to": ratio})

    def add_dividend(
        self, symbol: str, ex_date: dt.date, pay_date: dt.date, amount: float, *, currency: str = "USD"
    ) -> dict[str, Any]:
        """A cash dividend record, shaped like Polygon's (tests/fixtures/polygon/v3_reference_dividends.json)."""
        record = {
            "cash_amount": amount,
            "currency": currency,
            "declaration_date": (ex_date - dt.timedelta(days=30)).isoformat(),
            "dividend_type": "CD",
            "ex_dividend_date": ex_date.isoformat(),
            "frequency": 4,
            "id": f"E{len(self.dividends):06d}{symbol}",
            "pay_date": pay_date.isoformat(),
            "record_date": ex_date.isoformat(),
            "ticker": symbol,
        }
        self.dividends.append(record)
        return record

    def add_earnings(self, symbol: str, day: dt.date) -> None:
        """An earnings date, shaped like a Benzinga earnings record (the fields the `massive` client reads)."""
        if self.earnings is None:
            self.earnings = []
        self.earnings.append(
            {
                "benzinga_id": f"bz{len(self.earnings):06d}",
                "ticker": symbol,
                "company_name": self.names.get(symbol, f"{symbol} Holdings Inc."),
                "date": day.isoformat(),
                "time": "16:05:00",
                "date_status": "projected",
                "fiscal_period": "Q4",
                "fiscal_year": day.year,
                "importance": 3,
                "currency": "USD",
                "estimated_eps": 1.23,
                "last_updated": f"{day.isoformat()}T00:00:00Z",
            }
        )

    def add_news(
        self,
        title: str,
        tickers: list[str],
        published: dt.datetime,
        *,
        publisher: str = "Benzinga",
        url: str | None = None,
        insights: dict[str, tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """One article in the shape of `tests/fixtures/polygon/v2_reference_news.json`; ``insights`` maps a ticker
        to its (sentiment, reasoning)."""
        number = len(self.news) + 1
        article = {
            "id": f"fake-{number}",
            "publisher": {
                "name": publisher,
                "homepage_url": f"https://{publisher.lower().replace(' ', '')}.example/",
                "logo_url": "https://s3.massive.com/public/assets/news/logos/fake.svg",
                "favicon_url": "https://s3.massive.com/public/assets/news/favicons/fake.ico",
            },
            "title": title,
            "author": "Fake Author",
            "published_utc": published.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "article_url": url or f"https://news.example/{number}",
            "tickers": tickers,
            "amp_url": None,
            "image_url": None,
            "description": f"About {', '.join(tickers)}.",
            "keywords": ["fake"],
        }
        if insights:
            article["insights"] = [
                {"ticker": t, "sentiment": sentiment, "sentiment_reasoning": reasoning}
                for t, (sentiment, reasoning) in insights.items()
            ]
        self.news.append(article)
        return article

    def count(self, path_prefix: str = "") -> int:
        return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    # -- serving -------------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        with self._lock:
            self.requests.append(Seen(parts.path, query, handler.headers.get("Authorization", "")))
            reply = None
            for prefix, replies in self.scripts:
                if parts.path.startswith(prefix) and replies:
                    reply = replies.popleft()
                    break
            if reply is None:
                reply = next((_fault_reply(*f) for p, f in self.faults.items() if parts.path.startswith(p)), None)
        if reply is None:
            reply = self._route(parts.path, query, parts.query)
        if reply.delay:
            # Sleep in small steps so stopping the server does not wait for a slow answer.
            deadline = time.monotonic() + reply.delay
            while time.monotonic() < deadline and not self._stop.is_set():
                time.sleep(0.02)
        body = reply.body
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout scenario)

    def _fixture(self, path: str, raw_query: str) -> Reply | None:
        name = path.lstrip("/").replace("/", "_")
        if raw_query:
            name += "_" + raw_query.replace("&", "_")
        file = FIXTURES / f"{name}.json"
        return Reply(body=file.read_bytes()) if file.is_file() else None

    def _route(self, path: str, query: dict[str, list[str]], raw_query: str) -> Reply:
        if m := GROUPED.match(path):
            return self._grouped(dt.date.fromisoformat(m.group(1)), path)
        if m := RANGE.match(path):
            return self._range(m.group(1), dt.date.fromisoformat(m.group(2)), dt.date.fromisoformat(m.group(3)), path)
        if path == "/v3/reference/tickers":
            return self._search(query)
        if path == "/v3/reference/splits":
            return self._listing(path, query, self.splits)
        if path == "/v3/reference/dividends":
            return self._listing(path, query, self.dividends)
        if path == "/benzinga/v1/earnings":
            if self.earnings is None:
                return Reply(
                    403,
                    {
                        "status": "NOT_AUTHORIZED",
                        "request_id": "fake",
                        "message": "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing",
                    },
                )
            return self._listing(path, query, self.earnings)
        if path == "/v2/reference/news":
            return self._news(query)
        if path == "/v1/marketstatus/upcoming" and self.holidays is not None:
            return Reply(body=self.holidays)
        if m := DETAILS.match(path):
            return self._details(m.group(1), path)
        recorded = self._fixture(path, raw_query)
        if recorded:
            return recorded
        return Reply(404, {"status": "NOT_FOUND", "request_id": "fake", "message": "Not found."})

    def _grouped(self, day: dt.date, path: str) -> Reply:
        results = []
        if day not in self.unpublished:
            stamp = _stamp(day)
            for symbol, series in self.bars.items():
                if day in series:
                    o, h, lo, c, v = series[day]
                    results.append(
                        {
                            "T": symbol,
                            "v": v,
                            "vw": round((h + lo + c) / 3, 4),
                            "o": o,
                            "c": c,
                            "h": h,
                            "l": lo,
                            "t": stamp,
                            "n": 100,
                        }
                    )
        if not results and not self.bars:
            recorded = self._fixture(path, "adjusted=true")
            if recorded:
                return recorded
        body: dict[str, Any] = {
            "queryCount": len(results),
            "resultsCount": len(results),
            "adjusted": True,
            "status": "OK",
            "request_id": "fake",
        }
        if results:  # Polygon leaves `results` out when there is no data
            body["results"] = results
            body["count"] = len(results)
        return Reply(body=body)

    def _range(self, symbol: str, start: dt.date, end: dt.date, path: str) -> Reply:
        series = self.bars.get(symbol)
        if series is None:
            recorded = self._fixture(path, "")
            if recorded:
                return recorded
            return Reply(
                body={
                    "ticker": symbol,
                    "queryCount": 0,
                    "resultsCount": 0,
                    "adjusted": True,
                    "status": "OK",
                    "request_id": "fake",
                }
            )
        results = [
            {"v": v, "vw": round((h + lo + c) / 3, 4), "o": o, "c": c, "h": h, "l": lo, "t": _stamp(d), "n": 100}
            for d, (o, h, lo, c, v) in sorted(series.items())
            if start <= d <= end
        ]
        body = {
            "ticker": symbol,
            "queryCount": len(results),
            "resultsCount": len(results),
            "adjusted": True,
            "status": "OK",
            "request_id": "fake",
            "count": len(results),
        }
        if results:
            body["results"] = results
        return Reply(body=body)

    def _details(self, symbol: str, path: str) -> Reply:
        if symbol in self.names:
            return Reply(
                body={
                    "results": {
                        "ticker": symbol,
                        "name": self.names[symbol],
                        "market": "stocks",
                        "locale": "us",
                        "active": True,
                    },
                    "status": "OK",
                    "request_id": "fake",
                }
            )
        recorded = self._fixture(path, "")
        if recorded:
            return recorded
        return Reply(404, {"status": "NOT_FOUND", "request_id": "fake", "message": "Ticker not found."})

    def _universe(self) -> list[tuple[str, str]]:
        recorded = json.loads((FIXTURES / "v3_reference_tickers.json").read_text())["results"]
        names = {r["ticker"]: r["name"] for r in recorded}
        names["AAPL"] = "Apple Inc."
        names.update(self.names)
        return sorted(names.items())

    def _search(self, query: dict[str, list[str]]) -> Reply:
        term = (query.get("search") or [""])[0].upper()
        limit = int((query.get("limit") or ["10"])[0])
        offset = int((query.get("cursor") or ["0"])[0])
        if query.get("cursor"):  # a next_url carries only the cursor; the fake keeps the search in it
            term = (query.get("term") or [""])[0]
            limit = int((query.get("page") or ["10"])[0])
        matches = [
            {"ticker": s, "name": n, "market": "stocks", "locale": "us", "active": True}
            for s, n in self._universe()
            if term in s or term in n.upper()
        ]
        limit = min(limit, self.page_cap)
        page = matches[offset : offset + limit]
        body: dict[str, Any] = {"results": page, "status": "OK", "request_id": "fake", "count": len(page)}
        if offset + limit < len(matches):
            body["next_url"] = "https://api.polygon.io/v3/reference/tickers?" + urlencode(
                {"cursor": offset + limit, "term": term, "page": limit}
            )
        return Reply(body=body)

    def _listing(self, path: str, query: dict[str, list[str]], records: list[dict[str, Any]]) -> Reply:
        """A reference listing filtered like Polygon's (``field``, ``field.gte`` ... on any field), in pages of
        ``limit`` (at most ``event_page_cap``) with a `next_url` whose opaque cursor carries the query."""
        if query.get("cursor"):
            query = parse_qs(base64.urlsafe_b64decode(query["cursor"][0]).decode())
        offset = int((query.get("offset") or ["0"])[0])
        limit = min(int((query.get("limit") or ["10"])[0]), self.event_page_cap)
        tests = {
            "": lambda a, b: a == b,
            "gte": lambda a, b: a >= b,
            "lte": lambda a, b: a <= b,
            "gt": lambda a, b: a > b,
            "lt": lambda a, b: a < b,
        }
        filters = []
        for key, values in query.items():
            name, _, op = key.partition(".")
            if key in ("limit", "offset", "sort", "order", "apiKey") or op not in tests:
                continue
            filters.append((name, tests[op], values[0]))
        matches = [r for r in records if all(str(r.get(n, "")) and test(str(r.get(n)), v) for n, test, v in filters)]
        page = matches[offset : offset + limit]
        body: dict[str, Any] = {"results": page, "status": "OK", "request_id": "fake", "count": len(page)}
        if offset + limit < len(matches):
            carried = {k: v[0] for k, v in query.items() if k != "offset"} | {"offset": offset + limit}
            cursor = base64.urlsafe_b64encode(urlencode(carried).encode()).decode()
            body["next_url"] = f"https://api.polygon.io{path}?cursor={cursor}"
        return Reply(body=body)

    def _news(self, query: dict[str, list[str]]) -> Reply:
        """Like Polygon: filters by ``ticker`` and ``published_utc.gt/gte/lt/lte``, sorts by ``published_utc``, and
        pages with a ``next_url`` whose only parameter is a cursor (base64 JSON of the query and a position)."""
        if "cursor" in query:
            cursor = query["cursor"][0]
            try:
                state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            except ValueError:
                return Reply(400, {"status": "ERROR", "request_id": "fake", "error": "invalid cursor"})
            if "offset" not in state:  # the recorded example's cursor: past the end of the fake's news
                return Reply(body={"results": [], "status": "OK", "request_id": "fake", "count": 0})
        else:
            state = {key: values[0] for key, values in query.items()}
            state["offset"] = 0
        bounds = {
            op: _utc(state[f"published_utc.{op}"])
            for op in ("gt", "gte", "lt", "lte")
            if state.get(f"published_utc.{op}")
        }
        tests = {
            "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "lte": lambda a, b: a <= b,
        }
        ticker = state.get("ticker")
        matches = [
            a
            for a in self.news
            if (not ticker or ticker in a["tickers"])
            and all(tests[op](_utc(a["published_utc"]), bound) for op, bound in bounds.items())
        ]
        matches.sort(key=lambda a: a["published_utc"], reverse=state.get("order") in ("desc", "descending"))
        limit = min(int(state.get("limit") or 10), self.page_cap)
        offset = int(state["offset"])
        page = matches[offset : offset + limit]
        body: dict[str, Any] = {"results": page, "status": "OK", "request_id": "fake", "count": len(page)}
        if offset + limit < len(matches):
            following = json.dumps({**state, "offset": offset + limit}).encode()
            body["next_url"] = "https://api.polygon.io:443/v2/reference/news?cursor=" + base64.urlsafe_b64encode(
                following
            ).decode().rstrip("=")
        return Reply(body=body)


def _utc(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@contextmanager
def polygon_configured(
    settings: Any, *, retries: int = 2, as_provider: bool = True, **overrides: Any
) -> Iterator[FakePolygon]:
    """A started fake Polygon that Walter's Polygon settings point at, with a request budget that never waits (and,
    with ``as_provider``, chosen as the market-data provider); ``overrides`` set further settings. Stopped after, the
    shared pacing cache cleared either side."""
    from django.core.cache import cache

    fake = FakePolygon().start()
    cache.clear()
    settings.POLYGON_API_KEY = "test-key"
    settings.POLYGON_BASE_URL = fake.url
    settings.POLYGON_REQUESTS_PER_MINUTE = 600_000
    settings.POLYGON_RETRIES = retries
    if as_provider:
        settings.MARKET_DATA_PROVIDER = "markets.providers.polygon.PolygonProvider"
    for name, value in overrides.items():
        setattr(settings, name, value)
    try:
        yield fake
    finally:
        fake.stop()
        cache.clear()


def _fault_reply(mode: str, hang: float) -> Reply:
    if mode == "500":
        return Reply(500, {"status": "ERROR", "request_id": "fake", "error": "Internal server error"})
    if mode == "garbage":
        return Reply(200, b'{"status": "OK", "results": [{"T": "AAPL", "c": 1')
    if mode == "hang":
        return Reply(200, {"status": "OK", "request_id": "fake"}, delay=hang)
    return Reply(200, {"queryCount": 0, "resultsCount": 0, "adjusted": True, "status": "OK", "request_id": "fake"})


def _stamp(day: dt.date) -> int:
    midnight = dt.datetime(day.year, day.month, day.day, MARKET_TZ_OFFSET_HOURS, tzinfo=dt.UTC)
    return int(midnight.timestamp() * 1000)
