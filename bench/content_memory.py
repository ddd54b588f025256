"""Peak RSS, step by step, of what a worker does before its first batch: read the history of every followed
ticker, make the snapshots, read the analyses, build the issue's content (cards and charts).

    .venv/bin/python bench/content_memory.py --date 2026-11-20
        [--database-url postgres://postgres@127.0.0.1:5432/walter_bench_daily]

Run it on a database bench/daily.py left behind (its --date): a fresh process, nothing fetched, nothing sent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", required=True)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/walter_bench_daily")
    args = parser.parse_args()
    os.environ.update(
        {
            "DATABASE_URL": args.database_url,
            "DJANGO_SETTINGS_MODULE": "walter_site.settings",
            # The analyses bench/daily.py stored are the LLM analyst's: read those.
            "NEWSLETTER_ANALYST": "newsletters.analysts.llm.LLMAnalyst",
            "LLM_MODEL": "fake-model",
            "LLM_BASE_URL": "http://127.0.0.1:9/",
            "LLM_API_KEY": "bench",
            "MARKET_DATA_PROVIDER": "markets.providers.polygon.PolygonProvider",
            "POLYGON_API_KEY": "bench",
        }
    )
    import django

    django.setup()
    from markets.providers import get_provider
    from markets.selectors import load_history, ticker_snapshots
    from newsletters.compose import issue_content_build
    from newsletters.selectors import stored_analyses
    from subscriptions.selectors import followed_symbols

    day = dt.date.fromisoformat(args.date)
    print(f"{'Django and the apps':<24} peak RSS {peak_mb():5.0f} MB")
    symbols = sorted(followed_symbols())

    def step(label: str, work):
        started = time.monotonic()
        result = work()
        print(f"{label:<24} peak RSS {peak_mb():5.0f} MB  ({time.monotonic() - started:.1f} s)", flush=True)
        return result

    step(f"load_history ({len(symbols)})", lambda: load_history(symbols, day))
    snapshots = step("ticker_snapshots", lambda: ticker_snapshots(symbols, day, demo=get_provider().is_demo))
    analyses = step("stored_analyses", lambda: stored_analyses(day=day, symbols=symbols))
    content = step("issue_content_build", lambda: issue_content_build(day=day, snapshots=snapshots, analyses=analyses))
    charts = sum(len(png) for png in content.charts.values()) / 2**20
    cards = sum(len(card.html) + len(card.text) for card in content.cards.values()) / 2**20
    print(f"content: {len(content.cards)} cards ({cards:.1f} MB of HTML and text), {charts:.1f} MB of charts")


if __name__ == "__main__":
    main()
