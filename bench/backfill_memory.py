"""Peak RSS, step by step, of a first start's data stage: every followed ticker new, backfilled by date.

    .venv/bin/python bench/backfill_memory.py [--tickers 2000]
        [--database-url postgres://postgres@127.0.0.1:5432/walter_bench_backfill] [--redis redis://127.0.0.1:6379/1]

The database is dropped and created anew. The fake Polygon server (MARKET_BACKFILL_DAYS sessions for each ticker,
by default 400) runs in this process; `market_data_update` runs in a child process, which prints its peak RSS after
each step: the 400 grouped requests stored, the ANALYZE, `load_history`, the latest indicators, the shared-table
publish of every whole series.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY = "2026-11-20"


def peak_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (which holds the fake server's bars).
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(tickers: int) -> None:
    import django

    django.setup()
    from markets import indicators, services

    started = time.monotonic()
    print(f"{'Django and the apps':<36} peak RSS {peak_mb():5.0f} MB", flush=True)

    def steps(module, name: str, label: str) -> None:
        work = getattr(module, name, None)
        if work is None:  # an earlier version of the code, measured for comparison
            return

        @functools.wraps(work)
        def measured(*args, **kwargs):
            result = work(*args, **kwargs)
            print(f"{label:<36} peak RSS {peak_mb():5.0f} MB  ({time.monotonic() - started:.1f} s)", flush=True)
            return result

        setattr(module, name, measured)

    # Each step ends where the next begins: what the update did before load_history is the grouped fetch and store.
    steps(services, "_bars_analyze", "fetched and stored (grouped, by date)")
    steps(services, "load_history", "load_history")
    steps(indicators, "compute_latest", "latest indicators")
    steps(services, "shared_data_publish_pending", "shared-table publish (whole series)")
    symbols = [f"T{i:04d}" for i in range(tickers)]
    update = services.market_data_update(day=dt.date.fromisoformat(DAY), symbols=symbols)
    print(
        f"{update.plan}: {len(update.backfilled)} backfilled, {update.requests} requests, {getattr(update, 'bars_stored', '?')} bars, "
        f"{update.shared_items_written:,} shared items, {time.monotonic() - started:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=2000)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/walter_bench_backfill")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/1")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.update(
        {"DATABASE_URL": args.database_url, "CACHE_URL": args.redis, "DJANGO_SETTINGS_MODULE": "walter_site.settings"}
    )
    if args.child:
        child(args.tickers)
        return

    from bench.daily import recreate_database

    recreate_database(args.database_url)
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache
    from django.core.management import call_command

    from markets import calendar
    from tests.fakes.polygon_server import FakePolygon

    call_command("migrate", verbosity=0)
    cache.clear()
    polygon = FakePolygon().start()
    symbols = [f"T{i:04d}" for i in range(args.tickers)]
    polygon.add_random_walks(
        symbols, calendar.trading_days_ending(dt.date.fromisoformat(DAY), settings.MARKET_BACKFILL_DAYS + 5)
    )
    env = {
        **os.environ,
        "MARKET_DATA_PROVIDER": "markets.providers.polygon.PolygonProvider",
        "POLYGON_API_KEY": "bench",
        "POLYGON_BASE_URL": polygon.url,
        "POLYGON_REQUESTS_PER_MINUTE": "600000",
    }
    try:
        subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], env=env, check=True)
    finally:
        polygon.stop()
    print(f"Polygon requests: {polygon.count()}")


if __name__ == "__main__":
    main()
