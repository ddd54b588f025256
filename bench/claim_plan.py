"""What claiming the next batch costs half-way through a large day, with and without the sendable index, on a
delivery table analyzed and on one whose statistics are gone (as on the day it was first filled).

    .venv/bin/python bench/claim_plan.py [--database-url postgres://postgres@127.0.0.1:5432/walter_bench_daily]

Run it on the database bench/daily.py left behind (PostgreSQL). Everything happens in one transaction that is
rolled back: the database is left as it was.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROUNDS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/walter_bench_daily")
    args = parser.parse_args()
    os.environ.update({"DATABASE_URL": args.database_url, "DJANGO_SETTINGS_MODULE": "walter_site.settings"})
    import django

    django.setup()
    from django.db import connection, transaction
    from django.db.models import Q
    from django.utils import timezone

    from newsletters.models import Delivery, Issue
    from newsletters.selectors import SENDABLE

    issue = Issue.objects.order_by("-date").first()
    if issue is None or connection.vendor != "postgresql":
        sys.exit("claim_plan: needs a PostgreSQL database with an issue planned (run bench/daily.py first)")
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        ids = list(Delivery.objects.filter(issue=issue).order_by("id").values_list("id", flat=True))
        half = ids[len(ids) // 2]
        Delivery.objects.filter(issue=issue, id__lt=half).update(status="sent")
        Delivery.objects.filter(issue=issue, id__gte=half).update(status="pending", sending_at=None)
        claim = (
            Delivery.objects.filter(issue=issue)
            .filter(SENDABLE)
            .filter(Q(sending_at__isnull=True) | Q(sending_at__lt=timezone.now()))
            .select_related("subscriber")
            .order_by("id")
            .select_for_update(skip_locked=True, of=("self",))
        )[:300]
        sql, params = claim.query.sql_with_params()
        print(f"issue {issue.date}: {len(ids):,} deliveries, the first {len(ids) // 2:,} sent; claiming 300")

        def timed(label: str) -> None:
            seconds = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                cursor.execute(f"EXPLAIN (ANALYZE) {sql}", params)
                plan = [row[0] for row in cursor.fetchall()]
                seconds.append(time.perf_counter() - started)
            scan = next((line.strip() for line in plan if "Scan" in line), "")
            print(f"  {label:<40} median {statistics.median(seconds) * 1000:7.1f} ms  ({scan.split('  (')[0]})")

        for indexed in (False, True):
            cursor.execute("SAVEPOINT before_index_change")
            if not indexed:
                cursor.execute("DROP INDEX IF EXISTS delivery_sendable_idx")
            cursor.execute(f"ANALYZE {table}")
            timed(f"{'with' if indexed else 'without'} the index, analyzed")
            cursor.execute("DELETE FROM pg_statistic WHERE starelid = %s::regclass", [Delivery._meta.db_table])
            timed(f"{'with' if indexed else 'without'} the index, no statistics")
            cursor.execute("ROLLBACK TO SAVEPOINT before_index_change")
        transaction.set_rollback(True)


if __name__ == "__main__":
    main()
