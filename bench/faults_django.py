"""The parts of ``bench/faults.py`` that run inside Django, as their own processes (the harness itself stays out of
the database so it can drop and copy it):

    python bench/faults_django.py seed --subscribers N --symbols A,B,C --seed S
    python bench/faults_django.py wishes --plan FILE --interval SECONDS [--after JOURNAL]

``seed`` creates N confirmed subscribers (``reader0000@example.com`` ...) following 1-4 of the symbols each.
``wishes`` reads ``unsubscribe ADDRESS`` / ``erase ADDRESS`` lines and carries them out through
``subscriptions.services``, one every ``interval`` seconds (from when ``JOURNAL`` holds a first message, so Django's
start-up does not eat the sending window), printing ``<time> <action> <address>`` once each has
committed, so the harness can check that no message reached them afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def address(i: int) -> str:
    return f"reader{i:04d}@example.com"


def seed(subscribers: int, symbols: list[str], seed: int) -> None:
    from subscriptions.models import Subscriber
    from subscriptions.services import subscriber_create

    rng = random.Random(seed)
    for i in range(subscribers):
        chosen = rng.sample(symbols, rng.randint(1, min(4, len(symbols))))
        subscriber_create(email=address(i), symbols=chosen, status=Subscriber.Status.ACTIVE)


def wishes(plan: Path, interval: float, after: Path | None) -> None:
    from subscriptions.models import Subscriber
    from subscriptions.services import subscriber_erase, subscriber_set_status

    deadline = time.monotonic() + 300
    while after is not None and time.monotonic() < deadline and not (after.exists() and after.stat().st_size):
        time.sleep(0.002)
    for line in plan.read_text().splitlines():
        action, email = line.split()
        subscriber = Subscriber.objects.filter(email=email).first()
        if subscriber is None:
            continue
        if action == "erase":
            subscriber_erase(subscriber=subscriber)
        else:
            subscriber_set_status(subscriber=subscriber, status=Subscriber.Status.UNSUBSCRIBED)
        # Printed after the commit: from this moment no message may be handed over for this address.
        print(f"{time.time():.6f} {action} {email}", flush=True)
        time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    seeding = sub.add_parser("seed")
    seeding.add_argument("--subscribers", type=int, required=True)
    seeding.add_argument("--symbols", required=True)
    seeding.add_argument("--seed", type=int, default=7)
    wishing = sub.add_parser("wishes")
    wishing.add_argument("--plan", type=Path, required=True)
    wishing.add_argument("--interval", type=float, default=0.03)
    wishing.add_argument("--after", type=Path, help="Start once this journal holds a first message.")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "walter_site.settings")
    import django

    django.setup()
    if args.command == "seed":
        seed(args.subscribers, args.symbols.split(","), args.seed)
    else:
        wishes(args.plan, args.interval, args.after)


if __name__ == "__main__":
    main()
