"""The analysis stage's concurrency: 50 tickers against a model server that takes 200 ms per answer.

    .venv/bin/python bench/analysis.py [--tickers 50] [--parallelism 8] [--latency 0.2]

Runs the real LLM analyst (the `openai` client over HTTP) against the local fake OpenAI-compatible server, through
the same concurrent path as `run_daily`, and prints the wall time next to what one request at a time would take.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=50)
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()

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
