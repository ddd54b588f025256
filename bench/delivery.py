"""The delivery stage at scale: plan + render + archive + send for N subscribers.

    .venv/bin/python bench/delivery.py --subscribers 10000 [--tickers-each 3-8] [--holders 0.5] [--database-url URL]

Builds a throw-away database (SQLite under a temporary folder unless --database-url is given) with N active
subscribers following 3-8 of the demo tickers each (a share ``--holders`` of them giving shares for some of those,
so their emails carry the portfolio line), runs the data and analysis stages once, then measures:

- rendering on one core: compose the personal email, build the MIME message with its charts, serialise it;
- end to end: plan the deliveries, then claim → render → archive (local disk) → send (Django's locmem backend,
  its outbox emptied after every batch so it does not grow) → mark sent, exactly as run_daily does;
- SQL queries per 1,000 subscribers during the end-to-end part, and the process's peak RSS. A batch costs its
  claim and its tickers; each window of ``--concurrency`` messages costs one statement (it records the window
  before last and marks this one sending), so the count falls as the concurrency grows: at most two windows are
  ever ambiguous after a kill.

Pacing is off (SES_MAX_SEND_RATE=0): the figure is what Walter can do, not what an SES account allows.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(args: argparse.Namespace, workdir: Path) -> None:
    os.environ["WALTER_VAR_DIR"] = str(workdir / "var")
    os.environ["ARCHIVE_DIR"] = str(workdir / "var" / "archive")
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    os.environ["SES_MAX_SEND_RATE"] = "0"
    os.environ["SES_SEND_CONCURRENCY"] = str(args.concurrency)
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "walter_site.settings")
    import django

    django.setup()


def populate(n: int, low: int, high: int, holders: float) -> None:
    from decimal import Decimal

    from markets.providers.demo import DEMO_UNIVERSE
    from markets.services import ticker_ensure
    from subscriptions.models import Holding, Subscriber

    rng = random.Random(7)
    held_rng = random.Random(11)  # its own draws: the tickers followed stay those of runs without holdings
    tickers = [ticker_ensure(symbol=s) for s in sorted(DEMO_UNIVERSE)]
    Through = Subscriber.tickers.through
    for start in range(0, n, 5000):
        chunk = [
            Subscriber(email=f"reader{i:06d}@example.com", status=Subscriber.Status.ACTIVE)
            for i in range(start, min(n, start + 5000))
        ]
        Subscriber.objects.bulk_create(chunk, batch_size=1000)
        created = Subscriber.objects.filter(email__in=[s.email for s in chunk]).values_list("id", flat=True)
        follows = [(sid, t) for sid in created for t in rng.sample(tickers, rng.randint(low, high))]
        Through.objects.bulk_create([Through(subscriber_id=sid, ticker_id=t.id) for sid, t in follows], batch_size=2000)
        holding = {sid for sid in created if held_rng.random() < holders}
        Holding.objects.bulk_create(
            [
                Holding(subscriber_id=sid, ticker_id=t.id, shares=Decimal(held_rng.randint(1, 40000)) / 100)
                for sid, t in follows
                if sid in holding and held_rng.random() < 0.7
            ],
            batch_size=2000,
        )


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--tickers-each", default="3-8", help="how many tickers each subscriber follows: LOW-HIGH")
    parser.add_argument(
        "--holders", type=float, default=0.5, help="the share of subscribers who give shares for some tickers"
    )
    parser.add_argument("--render-sample", type=int, default=2_000, help="emails rendered for the one-core figure")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="sending connections (32: an account sending about 150 a second); one statement a window of them",
    )
    parser.add_argument("--database-url", default="", help="default: a new SQLite file in a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    low, high = (int(x) for x in args.tickers_each.split("-"))

    workdir = Path(tempfile.mkdtemp(prefix="walter-bench-"))
    try:
        configure(args, workdir)
        run(args, low, high)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, low: int, high: int) -> None:
    from django.conf import settings
    from django.core import mail
    from django.core.management import call_command
    from django.db import connection

    from markets import calendar
    from newsletters.compose import PersonalLinks, email_compose
    from newsletters.delivery import deliveries_plan, deliveries_send, issue_ensure
    from newsletters.messages import message_build
    from newsletters.models import Delivery
    from newsletters.services import issue_content_for
    from subscriptions.links import preferences_url, unsubscribe_url
    from subscriptions.models import Subscriber
    from subscriptions.selectors import followed_symbols, follows_by_subscriber

    call_command("migrate", verbosity=0)
    if Delivery.objects.exists() and not args.database_url:
        raise SystemExit("the bench database is not empty")
    n = args.subscribers
    started = time.perf_counter()
    populate(n, low, high, args.holders)
    print(
        f"subscribers: {n:,} following {low}-{high} of the demo tickers each, {args.holders:.0%} of them with "
        f"holdings (set up in {time.perf_counter() - started:.1f}s)"
    )

    day = calendar.latest_completed_session()
    call_command("run_daily", "--date", day.isoformat(), "--stage", "data", verbosity=0)
    call_command("run_daily", "--date", day.isoformat(), "--stage", "analysis", verbosity=0)
    started = time.perf_counter()
    content = issue_content_for(day=day, symbols=followed_symbols())
    print(f"issue content (cards, frame, {len(content.charts)} charts): {time.perf_counter() - started:.2f}s")

    # Rendering on one core.
    sample = list(Subscriber.objects.order_by("id").values_list("id", "email")[: args.render_sample])
    symbols, holdings = follows_by_subscriber([sid for sid, _ in sample])
    cpu, wall = time.process_time(), time.perf_counter()
    size = 0
    for sid, address in sample:
        links = PersonalLinks(
            view="https://w.example/v", preferences=preferences_url(sid), unsubscribe=unsubscribe_url(sid)
        )
        composed = email_compose(
            content=content, symbols=symbols[sid], email=address, links=links, holdings=holdings.get(sid)
        )
        message = message_build(composed=composed, to=address, token=f"bench-{sid}", unsubscribe_url=links.unsubscribe)
        size += len(message.message().as_bytes())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"rendering: {len(sample) / cpu:,.0f} emails/s per core ({len(sample):,} emails, {cpu:.2f}s CPU, "
        f"{wall:.2f}s wall; average message {size / len(sample) / 1024:.0f} KB with its charts)"
    )

    # End to end, as run_daily's delivery stage does it.
    counter = QueryCounter()
    issue = issue_ensure(day=day, demo=True)
    with connection.execute_wrapper(counter):
        started = time.perf_counter()
        planned = deliveries_plan(issue=issue)
        plan_seconds = time.perf_counter() - started
        stage = deliveries_send(issue=issue, content=content, on_progress=lambda k: mail.outbox.clear())
        total = time.perf_counter() - started
    sent = Delivery.objects.filter(issue=issue, status=Delivery.Status.SENT).count()
    assert stage.sent == sent == n, f"sent {stage.sent}, recorded {sent}, expected {n}"
    print(
        f"end to end: {n / total:,.0f} emails/s ({n:,} planned in {plan_seconds:.1f}s, sent in {total:.1f}s; "
        f"batch {settings.DELIVERY_BATCH_SIZE}, {args.concurrency} sending connections, {os.cpu_count()} cores)"
    )
    print(
        f"SQL queries: {counter.count:,} in all, {counter.count / (n / 1000):.1f} per 1,000 subscribers ({planned:,} planned; "
        f"windows of {args.concurrency}, at most {2 * args.concurrency} deliveries ambiguous after a kill)"
    )
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
