"""What redaction costs: the log filter per record, and serving a view-in-browser copy without its personal links.

    .venv/bin/python bench/privacy.py [--records 100000] [--repeat 3]

Prints the best of ``--repeat`` runs, after a warm-up, of: the console handler's filters on a log line without an
address (the common case) and with one in its arguments and traceback; and ``public_copy`` on a 100 KB email
with 20 ticker cards and the three footer links. Targets: the filter on a line without an address within a few
microseconds (writing the line costs more); the served copy within a few milliseconds, small beside reading the
archived copy from S3 (tens of milliseconds).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import best_of

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "walter_site.settings")

import django

django.setup()

from newsletters.links import view_url  # noqa: E402
from newsletters.views import public_copy  # noqa: E402
from subscriptions.links import preferences_url, unsubscribe_url  # noqa: E402
from walter_site.logging import LogContextFilter, RedactFilter  # noqa: E402


def records(n: int, *, address: bool) -> list[logging.LogRecord]:
    try:
        raise ValueError("refused ada@example.com" if address else "refused")
    except ValueError:
        exc_info = sys.exc_info()
    made = []
    for i in range(n):
        args = (f"reader{i}@example.com" if address else f"delivery {i}",)
        record = logging.LogRecord("walter.bench", logging.WARNING, __file__, 1, "send to %s failed", args, None)
        record.exc_info = exc_info if address else None
        made.append(record)
    return made


def sample_email() -> str:
    card = (
        '<tr><td class="card"><h2>AAPL <a href="https://www.example.com/quote/AAPL">Apple Inc.</a></h2>'
        + '<p style="margin:0;font-size:14px">Price 231.40 ▲ 1.25% · RSI 61.2 · SMA50 224.10</p>' * 40
        + '<img src="/email/x/images/chart-AAPL@walter" width="600" height="160" alt="AAPL chart"></td></tr>'
    )
    footer = (
        f'<p><a href="{view_url("3b0e7c9e-0000-4000-8000-000000000000")}">View in browser</a> &middot; '
        f'<a href="{preferences_url(42)}">Manage tickers</a> &middot; <a href="{unsubscribe_url(42)}">Unsubscribe</a></p>'
        "<p>Sent to ada@example.com &middot; Walter, 1 Example Street</p>"
    )
    return f"<!DOCTYPE html><html><body><table>{card * 20}<tr><td>{footer}</td></tr></table></body></html>"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    filters = [LogContextFilter(), RedactFilter()]

    for address in (False, True):
        batches = [records(options.records, address=address) for _ in range(options.repeat + 1)]

        def filter_all(batches=batches) -> None:
            for record in batches.pop():
                for f in filters:
                    f.filter(record)

        seconds = best_of(options.repeat, filter_all)
        label = "with an address and a traceback" if address else "without an address"
        print(f"log filter, {label}: {seconds / options.records * 1e6:.2f} µs per record")

    html = sample_email()
    seconds = best_of(options.repeat, lambda: public_copy(html, email="ada@example.com"))
    print(f"public_copy of a {len(html.encode()) // 1024} KB email: {seconds * 1000:.3f} ms")


if __name__ == "__main__":
    main()
