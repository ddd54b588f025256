"""A full run_daily at scale, with 0 (in-process) and N Celery workers, on PostgreSQL.

    .venv/bin/python bench/daily.py --subscribers 100000 --tickers 2000 [--workers 0,1,2,4]
        [--database-url postgres://postgres@127.0.0.1:5432/walter_bench_daily] [--redis redis://127.0.0.1:6379/1]
        [--reuse-database]

The Polygon provider (through `massive`) against the local fake Polygon server, the LLM analyst against the local
fake OpenAI-compatible server answering in 200 ms, email to Django's dummy backend (a sink), the archive on local
disk, pacing off. The database is dropped and created anew. First the session before --date is fetched (every
ticker is new: the backfill), then --date is run once per worker count, its deliveries removed between runs (the
market data and the analyses stay: the later runs are reruns of the same day; the deliveries' table is vacuumed
between runs, as autovacuum would between days). Prints, per run, the wall time of
each stage, the peak RSS and SQL statements of every process, Polygon requests, LLM calls and emails per second.
Redis database 1 is flushed (the broker and the shared cache of the workers). With --reuse-database the database
of an earlier run is kept as it is (same --subscribers and --tickers): no populate, no backfill, only the day's runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def recreate_database(url: str) -> None:
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        db.execute(f'CREATE DATABASE "{name}"')


def populate(subscribers: int, symbols: list[str], low: int, high: int) -> None:
    from markets.models import Ticker
    from subscriptions.models import Subscriber

    rng = random.Random(7)
    tickers = Ticker.objects.bulk_create([Ticker(symbol=s, name=f"{s} Corp") for s in symbols], batch_size=2000)
    ids = [t.id for t in tickers]
    Through = Subscriber.tickers.through
    for start in range(0, subscribers, 10_000):
        chunk = [
            Subscriber(email=f"reader{i:06d}@example.com", status=Subscriber.Status.ACTIVE)
            for i in range(start, min(subscribers, start + 10_000))
        ]
        Subscriber.objects.bulk_create(chunk, batch_size=2000)
        created = Subscriber.objects.filter(email__in=[s.email for s in chunk]).values_list("id", flat=True)
        Through.objects.bulk_create(
            [
                Through(subscriber_id=sid, ticker_id=t)
                for sid in created
                for t in rng.sample(ids, rng.randint(low, high))
            ],
            batch_size=5000,
        )
    from django.db import connection

    if connection.vendor == "postgresql":
        # A list that grew over months has statistics (autovacuum keeps them); one loaded in a minute has none yet.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--tickers", type=int, default=2_000)
    parser.add_argument("--tickers-each", default="3-8")
    parser.add_argument("--workers", default="0,1,2,4", help="worker counts to run, comma-separated")
    parser.add_argument("--date", default="2026-11-20")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/walter_bench_daily")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/1")
    parser.add_argument("--llm-delay", type=float, default=0.2)
    parser.add_argument(
        "--reuse-database",
        action="store_true",
        help="keep the database of an earlier run with the same --subscribers and --tickers (no populate, no backfill)",
    )
    args = parser.parse_args()
    low, high = (int(x) for x in args.tickers_each.split("-"))
    workdir = Path(tempfile.mkdtemp(prefix="walter-bench-daily-"))

    if not args.reuse_database:
        recreate_database(args.database_url)
    os.environ.update(
        {
            "DATABASE_URL": args.database_url,
            "WALTER_VAR_DIR": str(workdir / "var"),
            "ARCHIVE_DIR": str(workdir / "var" / "archive"),
            "LOG_LEVEL": "INFO",
            "DJANGO_SETTINGS_MODULE": "walter_site.settings",
        }
    )
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    from markets import calendar
    from tests.fakes.openai_server import FakeOpenAI
    from tests.fakes.polygon_server import FakePolygon

    day = dt.date.fromisoformat(args.date)
    previous = calendar.previous_trading_day(day)
    symbols = [f"T{i:04d}" for i in range(args.tickers)]
    polygon = FakePolygon().start()
    polygon.add_random_walks(symbols, calendar.trading_days_ending(day, 430))
    llm = FakeOpenAI().start()
    llm.answer_delay = args.llm_delay

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    if not args.reuse_database:
        populate(args.subscribers, symbols, low, high)
    print(f"database: {args.subscribers:,} subscribers, {args.tickers:,} tickers ({time.monotonic() - started:.0f} s)")

    stats_dir = workdir / "stats"
    stats_dir.mkdir()
    env = {
        **os.environ,
        "BENCH_STATS_DIR": str(stats_dir),
        "MARKET_DATA_PROVIDER": "markets.providers.polygon.PolygonProvider",
        "POLYGON_API_KEY": "bench",
        "POLYGON_BASE_URL": polygon.url,
        "POLYGON_REQUESTS_PER_MINUTE": "600000",
        "NEWSLETTER_ANALYST": "newsletters.analysts.llm.LLMAnalyst",
        "LLM_BASE_URL": llm.url,
        "LLM_API_KEY": "bench",
        "LLM_MODEL": "fake-model",
        "LLM_REQUESTS_PER_MINUTE": "600000",
        "LLM_PARALLELISM": "8",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        "SES_MAX_SEND_RATE": "0",
        "CACHE_URL": args.redis,
        "CELERY_QUEUE": "walter-bench",
    }
    env.pop("DJANGO_SETTINGS_MODULE")
    wrapper = [sys.executable, str(ROOT / "bench" / "_instrumented.py")]

    def run_daily(date: dt.date, workers: int, *extra: str) -> tuple[float, str]:
        run_env = {**env, "CELERY_BROKER_URL": args.redis if workers else "", "BENCH_ROLE": "run_daily"}
        t0 = time.monotonic()
        done = subprocess.run(
            [*wrapper, "manage", "run_daily", "--date", date.isoformat(), *extra],
            cwd=ROOT,
            env=run_env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(done.stdout[-2000:], done.stderr[-2000:])
        return time.monotonic() - t0, done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""

    def polygon_counts() -> tuple[int, int, int]:
        """All requests, those for prices, those for news."""
        return polygon.count(), polygon.count("/v2/aggs/"), polygon.count("/v2/reference/news")

    def report(label: str, wall: float, polygon_before: tuple[int, int, int], llm_before: int) -> None:
        from newsletters.models import DailyRun

        run = DailyRun.objects.order_by("-id").first()
        processes = [json.loads(p.read_text()) for p in sorted(stats_dir.glob("*.json"))]
        for p in stats_dir.glob("*.json"):
            p.unlink()
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in run.durations.items())
        delivery = run.durations.get("delivery") or 0
        print(f"== {label}: {wall:.1f} s end to end; {stages}")
        print(f"   {run.summary}")
        from django.db.models import Max, Min

        from newsletters.models import Delivery

        span = Delivery.objects.filter(issue__date=run.date, status="sent").aggregate(
            first=Min("sending_at"), last=Max("sent_at")
        )
        sending = (span["last"] - span["first"]).total_seconds() if span["first"] else 0
        requests, prices, news = (now - then for now, then in zip(polygon_counts(), polygon_before, strict=True))
        print(
            f"   Polygon requests {requests} (prices {prices}, news {news}, the rest upcoming events and the directory), "
            f"LLM calls {llm.count() - llm_before}, "
            f"emails/s {run.emails_sent / delivery if delivery else 0:.0f} over the delivery stage, "
            f"{run.emails_sent / sending if sending else 0:.0f} from the first claim to the last sent"
        )
        for p in processes:
            print(f"   {p['role']:<10} peak RSS {p['rss_mb']:.0f} MB, SQL statements {p['sql']:,}")

    if not args.reuse_database:
        # The first run: every ticker is new (backfill); data and analysis only.
        before = (polygon_counts(), llm.count())
        wall, _ = run_daily(previous, 0, "--stage", "data")
        report(f"first start, {previous} (backfill)", wall, *before)

    broker = redis.Redis.from_url(args.redis)
    from django.db import connection

    from newsletters.models import Delivery, Issue

    for workers in [int(w) for w in args.workers.split(",")]:
        Issue.objects.filter(date=day).delete()
        if connection.vendor == "postgresql":
            # The previous run's deliveries leave dead rows in the table and its indexes. Production's autovacuum
            # clears them between one day and the next; a PostgreSQL with autovacuum off (as on a CI machine)
            # never would, and each later row here would run on a table bloated by all the earlier ones.
            with connection.cursor() as cursor:
                cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(Delivery._meta.db_table)}")
        shutil.rmtree(workdir / "var" / "archive", ignore_errors=True)
        broker.flushdb()
        procs = [
            subprocess.Popen(
                [
                    *wrapper,
                    "celery",
                    "-A",
                    "walter_site",
                    "worker",
                    "-P",
                    "solo",
                    "-n",
                    f"bench{n}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    "INFO",
                ],
                cwd=ROOT,
                env={**env, "CELERY_BROKER_URL": args.redis, "BENCH_ROLE": f"worker{n}"},
                stdout=(workdir / f"worker{n}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
            for n in range(workers)
        ]
        # Measure sending, not start-up: the run starts once every worker is ready.
        deadline = time.monotonic() + 120
        while not all("ready" in (workdir / f"worker{n}.log").read_text() for n in range(workers)):
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        before = (polygon_counts(), llm.count())
        wall, _ = run_daily(day, workers)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=120)
        report(f"{day} with {workers} workers" if workers else f"{day} in-process (0 workers)", wall, *before)
        for n in range(workers):
            for line in (workdir / f"worker{n}.log").read_text().splitlines():
                if "issue content" in line or "ERROR" in line:
                    print(f"   worker{n}: {line[:160]}")

    polygon.stop()
    llm.stop()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
