"""A minimal scheduler for the local docker-compose stack: run a command at 08:00 New York time on weekdays.

In AWS, EventBridge Scheduler starts ``python manage.py run_daily`` as an ECS task at that time; locally this
loop does the same in a container, so both run the identical command. Market holidays need no special case:
run_daily itself exits at once when there was no session.

    python -m walter_site.scheduler python manage.py run_daily
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from zoneinfo import ZoneInfo

WEEKDAYS = range(0, 5)


def next_run(now: dt.datetime, *, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The first weekday at ``at`` in ``zone`` strictly after ``now`` (an aware datetime)."""
    local = now.astimezone(zone)
    day = local.date()
    while True:
        candidate = dt.datetime.combine(day, at, tzinfo=zone)
        if candidate.weekday() in WEEKDAYS and candidate > local:
            return candidate
        day += dt.timedelta(days=1)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m walter_site.scheduler COMMAND [ARG ...]", file=sys.stderr)
        return 2
    zone = ZoneInfo(os.environ.get("SCHEDULE_TIME_ZONE", "America/New_York"))
    at = dt.time.fromisoformat(os.environ.get("SCHEDULE_AT", "08:00"))
    while True:
        when = next_run(dt.datetime.now(dt.UTC), at=at, zone=zone)
        print(f"scheduler: next run {when.isoformat()}: {' '.join(argv)}", flush=True)
        time.sleep(max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds()))
        status = subprocess.call(argv)
        print(f"scheduler: exit status {status}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
