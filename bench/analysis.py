"""The analysis stage's concurrency, against the local fake OpenAI-compatible server, two scenarios:

    .venv/bin/python bench/analysis.py [--tickers 50] [--parallelism 8] [--latency 0.2]
    .venv/bin/python bench/analysis.py --one-slot [--tickers 17] [--latency 0.5]

The first: a server with room for every request, 200 ms per answer; prints the wall time next to what one
request at a time would take. The second (``--one-slot``): a server like llama.cpp's, one slot working on one
request at a time, structured output refused, the others queued; it runs the stage the old way (4 requests at a
time, a fixed timeout of 1.5 answers that counts queue time, a timed-out request asked again up to 3 times: the
production 30 s timeout against 20 s answers, scaled) and the adaptive way (the read timeout is what is left of
the budget, concurrency backs off on overload), side by side. Both run the real LLM analyst (the `openai` client
over HTTP) through the same path as `run_daily`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "walter_site.settings")

import django  # noqa: E402

django.setup()

from markets.snapshots import TickerSnapshot  # noqa: E402
from newsletters.analysis import analyze_all  # noqa: E402
from newsletters.analysts import AnalystError  # noqa: E402
from newsletters.analysts.llm import LLMAnalyst  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402


def snapshot(i: int) -> TickerSnapshot:
    day = dt.date(2026, 11, 20)
    close = 50.0 + i
    return TickerSnapshot(
        symbol=f"T{i:03d}",
        name=f"Ticker {i}",
        date=day,
        as_of=day,
        close=close,
        previous_close=close / 1.01,
        change_pct=1.0,
        rsi14=40.0 + i % 30,
        sma50=close * 0.98,
        drawdown180=-5.0,
        high52=close * 1.2,
        low52=close * 0.8,
    )


class RetriesTimeouts:
    """The old analyst's way with a timeout: ask again, up to three attempts in all."""

    def __init__(self, analyst: LLMAnalyst, attempts: int = 3) -> None:
        self.analyst, self.attempts = analyst, attempts
        self.model, self.prompt_version, self.parallelism = analyst.model, analyst.prompt_version, analyst.parallelism

    def analyze(self, snapshot: TickerSnapshot, *, deadline: float | None = None):
        for attempt in range(1, self.attempts + 1):
            try:
                return self.analyst.analyze(snapshot, deadline=deadline)
            except AnalystError as exc:
                if "did not answer within" not in str(exc) or attempt == self.attempts:
                    raise


def one_slot(args: argparse.Namespace) -> None:
    budget = args.latency * 60  # 1200 s against 20 s answers, scaled
    rows = []
    for label in ("old: fixed 4, timeout 1.5 answers, retried", "adaptive: budget timeout, AIMD"):
        server = FakeOpenAI().start()
        server.slots, server.answer_delay, server.refuse_json_schema = 1, args.latency, True
        old = label.startswith("old")
        analyst = LLMAnalyst(
            base_url=server.url,
            api_key="bench",
            model=f"bench-model-{len(rows)}",
            parallelism=4,
            adaptive=not old,
            timeout=args.latency * 1.5 if old else 0,
            requests_per_minute=1_000_000,
        )
        snapshots = [snapshot(i) for i in range(args.tickers)]
        started = time.perf_counter()
        results = analyze_all(analyst=RetriesTimeouts(analyst) if old else analyst, snapshots=snapshots, budget=budget)
        seconds = time.perf_counter() - started
        time.sleep(args.latency * 2)  # let the server notice the last hang-ups before counting them
        server.stop()
        fallbacks = sum(1 for r in results if r.fallback_reason)
        rows.append(
            (label, seconds, server.count(), server.abandoned, fallbacks, server.formats().count("json_schema"))
        )
    print(
        f"{args.tickers} tickers, one slot, {args.latency * 1000:.0f} ms per answer, json_schema refused, "
        f"budget {budget:.0f} s; serial lower bound {args.tickers * args.latency:.1f} s"
    )
    print(f"{'':46} {'wall s':>7} {'requests':>8} {'abandoned':>9} {'fallbacks':>9} {'json_schema':>11}")
    for label, seconds, requests, abandoned, fallbacks, schema in rows:
        print(f"{label:46} {seconds:7.2f} {requests:8d} {abandoned:9d} {fallbacks:9d} {schema:11d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one-slot", action="store_true", help="the one-slot server, old way against adaptive")
    parser.add_argument("--tickers", type=int)
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--latency", type=float)
    args = parser.parse_args()
    if args.one_slot:
        args.tickers, args.latency = args.tickers or 17, args.latency or 0.5
        one_slot(args)
        return
    args.tickers, args.latency = args.tickers or 50, args.latency or 0.2

    server = FakeOpenAI().start()
    server.answer_delay = args.latency
    analyst = LLMAnalyst(
        base_url=server.url,
        api_key="bench",
        model="bench-model",
        parallelism=args.parallelism,
        requests_per_minute=1_000_000,
    )
    snapshots = [snapshot(i) for i in range(args.tickers)]
    started = time.perf_counter()
    results = analyze_all(analyst=analyst, snapshots=snapshots)
    seconds = time.perf_counter() - started
    server.stop()
    fallbacks = sum(1 for r in results if r.fallback_reason)
    serial = args.tickers * args.latency
    print(f"{args.tickers} tickers, parallelism {args.parallelism}, server latency {args.latency * 1000:.0f} ms")
    print(f"requests: {server.count()}, fallbacks: {fallbacks}")
    print(f"wall time: {seconds:.2f} s (one at a time would take at least {serial:.1f} s: {serial / seconds:.1f}x)")


if __name__ == "__main__":
    main()
