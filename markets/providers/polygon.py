"""Polygon.io market data through its official client `massive` (formerly polygon-api-client).

`polygon-api-client` is frozen at 1.16 and never applies its connect/read timeouts, so a stalled server hangs
the job; `massive` has the same `RESTClient` API and applies them.

Every HTTP request the client makes, including the pages it follows by itself, passes through `PacedHTTP`:
it takes a slot of the requests-per-minute budget shared by all processes through the cache, honours a 429's
`Retry-After` for every process, and retries timeouts and 5xx answers a bounded number of times. urllib3's own
retries are switched off so that no request escapes the budget.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import urllib3
from django.conf import settings
from django.core.cache import caches
from massive import RESTClient
from massive.exceptions import BadResponse

from walter_site.ratelimit import Pacer, PacerBusy
from walter_site.retrying import backoff_delay, retry_after_seconds

from .base import (
    EVENT_KINDS,
    Article,
    ArticleInsight,
    Bar,
    EventListing,
    MarketEvent,
    NewsPlan,
    ProviderError,
    TickerInfo,
    news_request_plan,
)

logger = logging.getLogger("walter.markets.polygon")

MARKET_TZ = ZoneInfo("America/New_York")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
HOLIDAYS_FETCHED_KEY = "walter:polygon:holidays-fetched"
CLOSURES_SEEN_KEY = "walter:polygon:closures-seen"
CLOSURES_REMEMBERED = 60  # about three years of exchange holidays
# One page of daily aggregates holds this many bars: 400 sessions of backfill is always one request.
AGGS_PAGE_LIMIT = 50_000
# The ticker list: Polygon's largest page, and a bound on pages so a cursor that loops cannot run forever
# (about 12 pages hold every listed US stock).
TICKER_PAGE_LIMIT = 1000
TICKER_MAX_PAGES = 100
# Upcoming events: the market's dividends, splits and earnings of two weeks fit in a few pages of 1,000.
EVENTS_PAGE_LIMIT = 1000
EVENTS_MAX_PAGES = 20
# Events are a side output: a request of theirs waits at most this long for a slot of the shared budget, then
# they are skipped for the day (on the free plan's 5 requests a minute, prices and the directory come first).
EVENTS_MAX_WAIT = 30.0
# Answers that mean "your plan does not include this" rather than "something broke".
NOT_AUTHORIZED_STATUSES = frozenset({401, 403})


class BudgetSpent(ProviderError):
    """No slot of the request budget within the wait allowed (the shared pacer, or a long Retry-After)."""


# News: Polygon's largest page, and a bound on the pages of one listing (50,000 articles, weeks of the market's news).
NEWS_PAGE_LIMIT = 1000
NEWS_MAX_PAGES = 50
# How many articles the whole US market's listing holds per calendar day of window, to estimate its pages before
# sending anything: weekdays run to a couple of thousand (press releases included), weekends far fewer.
NEWS_ARTICLES_PER_DAY = 2000


class PacedHTTP:
    """Stands in for the client's urllib3 PoolManager: budget, Retry-After and retries for every request."""

    def __init__(
        self,
        pool: urllib3.PoolManager,
        pacer: Pacer,
        *,
        retries: int,
        retry_after_default: float,
        retry_after_max: float,
        max_wait: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pool = pool
        self.max_wait = max_wait
        self.pacer = pacer
        self.retries = retries
        self.retry_after_default = retry_after_default
        self.retry_after_max = retry_after_max
        self.sleep = sleep
        self.requests = 0  # attempts sent, for reports and benchmarks
        self._local = threading.local()

    @property
    def last_status(self) -> int | None:
        """The status of this thread's latest answer (the client's errors carry only the body)."""
        return getattr(self._local, "status", None)

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        attempt = 0
        while True:
            try:
                self.pacer.acquire(max_wait=self.max_wait)
            except PacerBusy as exc:
                raise BudgetSpent(str(exc)) from exc
            self.requests += 1
            try:
                response = self.pool.request(method, url, retries=False, **kwargs)
            except urllib3.exceptions.HTTPError as exc:  # timeouts, refused or dropped connections
                self._local.status = None
                if attempt >= self.retries:
                    raise ProviderError(f"{type(exc).__name__} after {attempt + 1} attempts") from exc
                attempt += 1
                logger.warning("polygon request failed (%s), retry %d", type(exc).__name__, attempt)
                self.sleep(backoff_delay(attempt))
                continue
            self._local.status = response.status
            if response.status not in RETRY_STATUSES or attempt >= self.retries:
                return response
            attempt += 1
            if response.status == 429:
                wait = retry_after_seconds(response.headers, self.retry_after_default)
                if wait > self.retry_after_max:
                    raise BudgetSpent(f"rate limited for {wait:.0f}s (Retry-After), more than allowed")
                logger.warning("polygon answered 429; every process waits %.1fs", wait)
                # Deferring the shared pacer holds back every process, not only this one.
                self.pacer.defer(wait)
            else:
                logger.warning("polygon answered %s, retry %d", response.status, attempt)
                self.sleep(backoff_delay(attempt))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _bar(symbol: str, day: dt.date, row: dict[str, Any]) -> Bar | None:
    """A bar from one aggregate result, or None when its prices are missing (parsed defensively)."""
    o, h, lo, c = (_number(row.get(k)) for k in ("o", "h", "l", "c"))
    if None in (o, h, lo, c):
        return None
    volume = _number(row.get("v"))
    return Bar(
        symbol=symbol,
        date=day,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=0.0 if volume is None else volume,
        vwap=_number(row.get("vw")),
    )


def _session_date(milliseconds: Any) -> dt.date | None:
    """Daily aggregates are stamped at the session's midnight in New York."""
    stamp = _number(milliseconds)
    if stamp is None:
        return None
    return dt.datetime.fromtimestamp(stamp / 1000, tz=dt.UTC).astimezone(MARKET_TZ).date()


def _utc_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any, limit: int) -> str:
    return " ".join(str(value).split())[:limit] if isinstance(value, str) else ""


def _article(row: dict[str, Any]) -> Article | None:
    """An article from one news result, or None when it lacks a link, a title or a time (parsed defensively)."""
    url = _text(row.get("article_url"), 1000)
    title = _text(row.get("title"), 500)
    try:
        published = dt.datetime.fromisoformat(str(row.get("published_utc")).replace("Z", "+00:00"))
    except ValueError:
        return None
    if not url.startswith(("https://", "http://")) or not title:
        return None
    if published.tzinfo is None:
        published = published.replace(tzinfo=dt.UTC)
    tickers = row.get("tickers") if isinstance(row.get("tickers"), list) else []
    publisher = row.get("publisher") if isinstance(row.get("publisher"), dict) else {}
    insights = []
    for insight in row.get("insights") if isinstance(row.get("insights"), list) else []:
        symbol = _text(insight.get("ticker"), 16).upper() if isinstance(insight, dict) else ""
        if symbol:
            insights.append(
                ArticleInsight(
                    symbol=symbol,
                    sentiment=_text(insight.get("sentiment"), 16).lower(),
                    reasoning=_text(insight.get("sentiment_reasoning"), 2000),
                )
            )
    return Article(
        url=url,
        title=title,
        publisher=_text(publisher.get("name"), 200),
        published_at=published.astimezone(dt.UTC),
        tickers=tuple(dict.fromkeys(_text(t, 16).upper() for t in tickers if _text(t, 16))),
        insights=tuple(insights),
    )


class PolygonProvider:
    source = "polygon"
    is_demo = False

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        requests_per_minute: float | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        retries: int | None = None,
        max_wait: float | None = None,
        pacer: Pacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        api_key = api_key if api_key is not None else settings.POLYGON_API_KEY
        if not api_key:
            raise ProviderError("POLYGON_API_KEY is not set")
        self.base_url = (base_url or settings.POLYGON_BASE_URL).rstrip("/")
        self.client = RESTClient(
            api_key=api_key,
            base=self.base_url,
            connect_timeout=connect_timeout if connect_timeout is not None else settings.POLYGON_CONNECT_TIMEOUT,
            read_timeout=read_timeout if read_timeout is not None else settings.POLYGON_READ_TIMEOUT,
            retries=0,
            pagination=True,
        )
        rpm = requests_per_minute if requests_per_minute is not None else settings.POLYGON_REQUESTS_PER_MINUTE
        self.requests_per_minute = rpm
        self.http = PacedHTTP(
            self.client.client,
            pacer or Pacer.per_minute("polygon", rpm),
            retries=settings.POLYGON_RETRIES if retries is None else retries,
            retry_after_default=settings.POLYGON_RETRY_AFTER_DEFAULT,
            retry_after_max=settings.POLYGON_RETRY_AFTER_MAX,
            max_wait=settings.POLYGON_MAX_WAIT if max_wait is None else max_wait,
            sleep=sleep,
        )
        self.client.client = self.http
        self.cache = caches["default"]

    @property
    def requests(self) -> int:
        """HTTP requests sent so far by this provider, retries included."""
        return self.http.requests

    # -- plumbing ---------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ProviderError:
            raise
        except BadResponse as exc:
            raise ProviderError(f"{what}: HTTP {self.http.last_status}: {str(exc)[:200]}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ProviderError(f"{what}: {type(exc).__name__}") from exc

    def _json(self, what: str, response: urllib3.BaseHTTPResponse) -> Any:
        try:
            return json.loads(response.data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProviderError(f"{what}: malformed JSON answer") from exc

    # -- MarketDataProvider -------------------------------------------------------------------------------

    def grouped_daily(self, day: dt.date) -> dict[str, Bar]:
        """The whole US market in one request; an answer with no results is "no data", never an empty market."""
        what = f"grouped daily {day}"
        response = self._call(
            what, self.client.get_grouped_daily_aggs, day.isoformat(), adjusted=True, include_otc=False, raw=True
        )
        payload = self._json(what, response)
        if not isinstance(payload, dict):
            raise ProviderError(f"{what}: unexpected answer")
        bars: dict[str, Bar] = {}
        for row in payload.get("results") or []:
            symbol = str(row.get("T") or "").upper() if isinstance(row, dict) else ""
            if not symbol:
                continue
            bar = _bar(symbol, day, row)
            if bar is not None:
                bars[symbol] = bar
        return bars

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> list[Bar]:
        symbol = symbol.strip().upper()
        what = f"daily bars of {symbol}"
        rows = self._call(
            what,
            lambda: list(
                self.client.list_aggs(
                    symbol,
                    1,
                    "day",
                    start.isoformat(),
                    end.isoformat(),
                    adjusted=True,
                    sort="asc",
                    limit=AGGS_PAGE_LIMIT,
                )
            ),
        )
        bars = {}
        for agg in rows:
            day = _session_date(getattr(agg, "timestamp", None))
            if day is None or not start <= day <= end:
                continue
            row = {"o": agg.open, "h": agg.high, "l": agg.low, "c": agg.close, "v": agg.volume, "vw": agg.vwap}
            bar = _bar(symbol, day, row)
            if bar is not None:
                bars[day] = bar
        return [bars[d] for d in sorted(bars)]

    def list_tickers(self) -> list[TickerInfo]:
        """Every active US stock, a page of 1,000 per request (about a dozen), following `next_url`."""
        what = "ticker list"
        found: dict[str, TickerInfo] = {}
        rows = self._listing(
            what,
            self.client.list_tickers,
            "/v3/reference/tickers",
            {"market": "stocks", "active": True, "limit": TICKER_PAGE_LIMIT},
            max_pages=TICKER_MAX_PAGES,
        )
        for row in rows:
            symbol = str(row.get("ticker") or "").strip().upper()
            if symbol and row.get("active", True) is not False:
                found[symbol] = TickerInfo(symbol=symbol, name=str(row.get("name") or "")[:200])
        if not found:
            raise ProviderError(f"{what}: no tickers listed")
        return sorted(found.values(), key=lambda t: t.symbol)

    def upcoming_events(self, start: dt.date, end: dt.date) -> EventListing:
        """The market's dividends (by ex-date and by pay date), splits and earnings from ``start`` to ``end``.

        Four listings by date window, whatever the number of followed tickers. Each kind stands alone: one the
        plan refuses (Benzinga earnings are an add-on: 403 NOT_AUTHORIZED) or the request budget cannot fit is
        skipped with the reason; one that breaks is recorded as failed; the others are still listed.
        """
        listing = EventListing()
        before = self.requests
        window = {"gte": start.isoformat(), "lte": end.isoformat()}
        saved_wait = self.http.max_wait
        self.http.max_wait = min(saved_wait, EVENTS_MAX_WAIT) if saved_wait is not None else EVENTS_MAX_WAIT
        try:
            dividends: dict[Any, dict[str, Any]] = {}
            by_ex = self._events_listing(
                listing,
                "ex_dividend",
                "dividends by ex-date",
                self.client.list_dividends,
                "/v3/reference/dividends",
                ex_dividend_date_gte=window["gte"],
                ex_dividend_date_lte=window["lte"],
            )
            by_pay = self._events_listing(
                listing,
                "dividend_pay",
                "dividends by pay date",
                self.client.list_dividends,
                "/v3/reference/dividends",
                pay_date_gte=window["gte"],
                pay_date_lte=window["lte"],
            )
            for row in by_ex + by_pay:
                # The two listings overlap (a dividend with both dates in the window), and Polygon may list one twice.
                key = row.get("id") or tuple(
                    row.get(k) for k in ("ticker", "ex_dividend_date", "pay_date", "cash_amount")
                )
                dividends[key] = row
            listing.events += _dividend_events(dividends.values(), start, end, listing.listed)
            splits = self._events_listing(
                listing,
                "split",
                "splits",
                self.client.list_splits,
                "/v3/reference/splits",
                execution_date_gte=window["gte"],
                execution_date_lte=window["lte"],
            )
            listing.events += [e for e in map(_split_event, splits) if e and start <= e.date <= end]
            earnings = self._events_listing(
                listing,
                "earnings",
                "earnings",
                self.client.list_benzinga_earnings,
                "/benzinga/v1/earnings",
                date_gte=window["gte"],
                date_lte=window["lte"],
            )
            listing.events += [e for e in map(_earnings_event, earnings) if e and start <= e.date <= end]
        finally:
            self.http.max_wait = saved_wait
            listing.requests = self.requests - before
        listing.events.sort(key=lambda e: (e.date, EVENT_KINDS.index(e.kind), e.symbol))
        return listing

    # -- plumbing for listings ----------------------------------------------------------------------------

    def _listing(
        self, what: str, method: Callable[..., Any], path: str, kwargs: dict[str, Any], *, max_pages: int
    ) -> list[dict[str, Any]]:
        """Every row of a paginated listing, following `next_url`, or ProviderError.

        The pages are walked here rather than by the client's iterator, which ends quietly on a malformed page: a
        list cut short must fail, not pass for the whole of it.
        """
        rows: list[dict[str, Any]] = []
        for page in range(1, max_pages + 1):
            payload = self._json(what, self._call(what, method, raw=True, **kwargs))
            if not isinstance(payload, dict) or not isinstance(payload.get("results", []), list):
                raise ProviderError(f"{what}: unexpected answer on page {page}")
            rows += [row for row in payload.get("results", []) if isinstance(row, dict)]
            next_url = payload.get("next_url")
            if not next_url:
                return rows
            parts = urlsplit(str(next_url))
            if parts.path != path:
                raise ProviderError(f"{what}: unexpected next_url on page {page}")
            # The cursor carries the query: send exactly what next_url holds, nothing of the first page's (the
            # client's own defaults included, where it has them).
            kwargs = {name: None for name in ("limit", "sort", "order") if name in inspect.signature(method).parameters}
            kwargs["params"] = dict(parse_qsl(parts.query, keep_blank_values=True))
        raise ProviderError(f"{what}: more than {max_pages} pages")

    def _events_listing(
        self, listing: EventListing, kind: str, what: str, method: Callable[..., Any], path: str, **window: str
    ) -> list[dict[str, Any]]:
        """One kind's listing; when refused, out of budget or failed, no rows, and the reason on ``listing``."""
        try:
            rows = self._listing(what, method, path, {**window, "limit": EVENTS_PAGE_LIMIT}, max_pages=EVENTS_MAX_PAGES)
        except BudgetSpent as exc:
            listing.skipped[kind] = f"{what} skipped: the request budget is spent ({exc})"
            return []
        except ProviderError as exc:
            status = self.http.last_status
            if status == 429:  # still refused after the retries allowed
                listing.skipped[kind] = f"{what} skipped: the request budget is spent (HTTP 429)"
            elif status in NOT_AUTHORIZED_STATUSES:
                listing.skipped[kind] = f"{what} skipped: the plan does not include them (HTTP {status})"
            else:
                listing.failed[kind] = str(exc)
            return []
        listing.listed.add(kind)
        return rows

    def news_plan(self, *, start: dt.datetime, end: dt.datetime, symbols: Sequence[str]) -> NewsPlan:
        """One listing of the whole market's news or one request per ticker, whichever takes fewer requests.

        The listing's pages are estimated before anything is sent: ``NEWS_ARTICLES_PER_DAY`` articles per calendar
        day of the window (a Monday's window, from Friday's close, is three days), ``NEWS_PAGE_LIMIT`` a page,
        rounded up. A ticker's own listing of one session fits in one page. So 20 followed tickers take 2 pages of
        the listing on a weekday instead of 20 requests; 2,000 take the same 2; 1 takes 1.
        """
        days = max((end - start).total_seconds() / 86400, 0.0)
        pages = max(1, math.ceil(days * NEWS_ARTICLES_PER_DAY / NEWS_PAGE_LIMIT))
        how, requests = news_request_plan(followed=len(set(symbols)), listing_pages=pages)
        return NewsPlan(how=how, requests=requests, seconds=requests * 60.0 / self.requests_per_minute)

    def news(self, *, start: dt.datetime, end: dt.datetime, symbols: Sequence[str]) -> list[Article]:
        """The window's articles naming any of ``symbols``, fetched as ``news_plan`` says, newest first."""
        wanted = {s.strip().upper() for s in symbols if s.strip()}
        plan = self.news_plan(start=start, end=end, symbols=sorted(wanted))
        window = {
            "published_utc_gt": _utc_text(start),
            "published_utc_lte": _utc_text(end),
            "limit": NEWS_PAGE_LIMIT,
            "sort": "published_utc",
            "order": "desc",
        }
        if plan.how == "listing":
            listings = {"market news": window}
        else:
            listings = {f"news of {symbol}": {**window, "ticker": symbol} for symbol in sorted(wanted)}
        found: dict[str, Article] = {}
        for what, first_page in listings.items():
            for row in self._listing(
                what, self.client.list_ticker_news, "/v2/reference/news", first_page, max_pages=NEWS_MAX_PAGES
            ):
                article = _article(row)
                if article is not None and wanted.intersection(article.tickers):
                    found.setdefault(article.url, article)
        return sorted(found.values(), key=lambda a: a.published_at, reverse=True)

    # -- beyond the protocol: the calendar and splits -----------------------------------------------------

    def market_holidays(self, *, fresh: bool = False) -> dict[dt.date, str]:
        """Full-day closures of the US stock market: the upcoming ones, and those seen upcoming lately.

        Polygon lists only upcoming closures, but the morning job asks about the session before: a closure
        announced at short notice (a day of mourning) is gone from the list by then. So every closure seen is
        remembered in the cache (shared by every process) for ``CLOSURES_REMEMBERED`` entries. The list is
        fetched once a day, or now when ``fresh``.
        """
        if fresh or self.cache.get(HOLIDAYS_FETCHED_KEY) is None:
            payload = self._json(
                "market holidays", self._call("market holidays", self.client.get_market_holidays, raw=True)
            )
            seen = dict(self.cache.get(CLOSURES_SEEN_KEY) or {})
            for row in payload if isinstance(payload, list) else []:
                if not isinstance(row, dict) or row.get("status") != "closed":
                    continue
                if row.get("exchange") not in (None, "NYSE", "NASDAQ"):
                    continue
                try:
                    day = dt.date.fromisoformat(str(row.get("date")))
                except ValueError:
                    continue
                seen[day.isoformat()] = str(row.get("name") or "market holiday")
            seen = dict(sorted(seen.items())[-CLOSURES_REMEMBERED:])
            self.cache.set(CLOSURES_SEEN_KEY, seen, timeout=None)
            self.cache.set(HOLIDAYS_FETCHED_KEY, 1, timeout=24 * 3600)
        return {dt.date.fromisoformat(d): n for d, n in (self.cache.get(CLOSURES_SEEN_KEY) or {}).items()}

    def splits(self, symbol: str, since: dt.date) -> list[dt.date]:
        """Execution dates of ``symbol``'s splits on or after ``since`` (reference data)."""
        symbol = symbol.strip().upper()
        rows = self._call(
            f"splits of {symbol}",
            lambda: list(self.client.list_splits(ticker=symbol, execution_date_gte=since.isoformat(), limit=1000)),
        )
        dates = []
        for split in rows:
            try:
                dates.append(dt.date.fromisoformat(str(getattr(split, "execution_date", ""))))
            except ValueError:
                continue
        return sorted(dates)


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


def _symbol(row: dict[str, Any]) -> str:
    return str(row.get("ticker") or "").strip().upper()


def _dividend_events(
    rows: Iterable[dict[str, Any]], start: dt.date, end: dt.date, listed: set[str]
) -> list[MarketEvent]:
    """Ex-date and pay-date events of the dividends listed; two dividends of one ticker on one date add up (a
    regular and a special one), as the holder receives both. Only kinds whose listing was whole are kept."""
    amounts: dict[tuple[str, str, dt.date], float | None] = {}
    for row in rows:
        symbol = _symbol(row)
        if not symbol:
            continue
        cash = _number(row.get("cash_amount"))
        # The card writes dollars: an amount in another currency is left out rather than shown as dollars.
        amount = cash if cash is not None and str(row.get("currency") or "USD").upper() == "USD" else None
        for kind, field_name in (("ex_dividend", "ex_dividend_date"), ("dividend_pay", "pay_date")):
            day = _date(row.get(field_name))
            if kind not in listed or day is None or not start <= day <= end:
                continue
            key = (symbol, kind, day)
            if key in amounts:
                known = amounts[key]
                amounts[key] = None if known is None or amount is None else known + amount
            else:
                amounts[key] = amount
    return [
        MarketEvent(symbol, kind, day, amount=None if amount is None else round(amount, 6))
        for (symbol, kind, day), amount in amounts.items()
    ]


def _split_event(row: dict[str, Any]) -> MarketEvent | None:
    day, split_from, split_to = (
        _date(row.get("execution_date")),
        _number(row.get("split_from")),
        _number(row.get("split_to")),
    )
    if not _symbol(row) or day is None or not split_from or not split_to:
        return None
    return MarketEvent(_symbol(row), "split", day, ratio=f"{split_to:g}-for-{split_from:g}")


def _earnings_event(row: dict[str, Any]) -> MarketEvent | None:
    day = _date(row.get("date"))
    if not _symbol(row) or day is None:
        return None
    return MarketEvent(_symbol(row), "earnings", day)
