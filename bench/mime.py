"""What serialising a newsletter costs, with the standard generator and with shared chart parts written once.

    .venv/bin/python bench/mime.py [--messages 2000] [--charts 6] [--repeat 3]

Each message is built the way the delivery stage builds it (``message_build``: text, HTML, the inline charts
as multipart/related, the bulk-sender headers) with a ~45 KB HTML part and ``--charts`` PNGs of 4.3 KB (the
average chart at 2,000 tickers), the charts shared by every message as they are in an issue. Both ways run in the
same process, alternately, best of ``--repeat``; the ratio is what to compare on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from email.generator import BytesGenerator
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "walter_site.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--charts", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import django

    django.setup()
    from newsletters.compose import ComposedEmail
    from newsletters.messages import message_build

    rng = random.Random(7)
    charts = {f"t{i:04d}@walter": rng.randbytes(4300) for i in range(50)}
    html = "<table>" + "<tr><td>row</td><td>$123.45</td></tr>" * 1300 + "</table>"

    def build(i: int):
        chosen = dict(rng.sample(sorted(charts.items()), args.charts))
        composed = ComposedEmail(subject="NVDA leads", html=html, text="NVDA leads " * 500, images=chosen)
        return message_build(
            composed=composed, to=f"r{i}@example.com", token=f"t{i}", unsubscribe_url=f"https://x/u/{i}/"
        ).message()

    def standard(mime) -> bytes:
        fp = BytesIO()
        BytesGenerator(fp, mangle_from_=False).flatten(mime, linesep="\n")
        return fp.getvalue()

    best = {"standard generator": float("inf"), "shared parts written once": float("inf")}
    size = 0
    for _ in range(args.repeat):
        for label, serialise in (("standard generator", standard), ("shared parts written once", None)):
            t0 = time.perf_counter()
            for i in range(args.messages):
                mime = build(i)
                size = len(serialise(mime) if serialise else mime.as_bytes())
            best[label] = min(best[label], time.perf_counter() - t0)
    print(f"{args.messages} messages of {size / 1024:.0f} KB with {args.charts} charts each, best of {args.repeat}:")
    base = best["standard generator"]
    for label, seconds in best.items():
        print(
            f"  {label:<26} {seconds * 1000 / args.messages:.2f} ms a message, "
            f"{args.messages / seconds:.0f}/s ({base / seconds:.2f}x)"
        )


if __name__ == "__main__":
    main()
