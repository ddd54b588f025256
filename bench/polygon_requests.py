"""How many Polygon requests the market-data stage makes, counted at a local fake Polygon server.

    .venv/bin/python bench/polygon_requests.py [--tickers 5000]

A daily update of ``--tickers`` followed tickers that already have history (target: 1 request), and the plan for
a first start where every one of them is new (backfill by date when that is fewer requests than by ticker).
Runs on a throw-away SQLite database and the local-memory cache; nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=5000)
    parser.add_argument("--date", default="2026-11-20")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="walter-bench-")
    os.environ["WALTER_VAR_DIR"] = workdir
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir}/bench.sqlite3"
    os.environ["CACHE_URL"] = "locmemcache://bench"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "walter_site.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from markets import calendar
    from markets.models import DailyBar, Ticker
    from markets.providers.polygon import PolygonProvider
    from markets.services import backfill_plan, market_data_update
    from markets.shared_tables.database import DatabaseSharedTables
    from tests.fakes.polygon_server import FakePolygon

    call_command("migrate", verbosity=0)
    day = dt.date.fromisoformat(args.date)
    previous = calendar.previous_trading_day(day)
    symbols = [f"T{i:05d}" for i in range(args.tickers)]

    server = FakePolygon().start()
    try:
        server.add_random_walks(symbols, [previous, day])
        settings.POLYGON_BASE_URL = server.url
        settings.POLYGON_REQUESTS_PER_MINUTE = 600_000
        # Every ticker already has its history up to the previous session.
        tickers = Ticker.objects.bulk_create([Ticker(symbol=s) for s in symbols], batch_size=1000)
        DailyBar.objects.bulk_create(
            [
                DailyBar(ticker=t, date=previous, open=o, high=h, low=lo, close=c, volume=v, source="polygon")
                for t in tickers
                for (o, h, lo, c, v) in [server.bars[t.symbol][previous]]
            ],
            batch_size=1000,
        )
        provider = PolygonProvider(api_key="bench-key")
        started = time.perf_counter()
        update = market_data_update(day=day, symbols=symbols, provider=provider, shared_tables=DatabaseSharedTables())
        seconds = time.perf_counter() - started
    finally:
        server.stop()

    print(f"daily update of {args.tickers} followed tickers for {day}:")
    print(f"  HTTP requests at the server: {server.count()} ({update.plan}; target 1)")
    print(f"  tickers updated: {len(update.updated)}, stale: {len(update.stale)}, failed: {len(update.failed)}")
    print(f"  shared items written: {update.shared_items_written}; wall time {seconds:.2f} s")
    window = settings.MARKET_BACKFILL_DAYS
    for new in (10, args.tickers):
        plan, requests = backfill_plan(new=new, window=window, catch_up=0)
        minutes = requests / 5
        print(
            f"first start with {new} new tickers, {window} sessions each: {plan}, {requests} requests "
            f"({minutes:.0f} min at the free plan's 5 per minute)"
        )


if __name__ == "__main__":
    main()
