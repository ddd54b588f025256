"""Run a Walter process (``manage ARGS`` or ``celery ARGS``) and, when it exits, write what it cost to
``$BENCH_STATS_DIR/<pid>.json``: SQL statements executed and peak RSS. Used by bench/daily.py. With
``BENCH_PROFILE_DIR`` set, the process also runs under cProfile and leaves ``<dir>/<role>-<pid>.prof`` (read it with
``python -m pstats``)."""

from __future__ import annotations

import atexit
import json
import os
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "walter_site.settings")

statements = 0


def _count(execute, sql, params, many, context):
    global statements
    statements += 1  # an executemany is one statement (one round trip)
    return execute(sql, params, many, context)


def _on_connection(sender, connection, **kwargs) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def _write() -> None:
    out = Path(os.environ["BENCH_STATS_DIR"]) / f"{os.getpid()}.json"
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(
        json.dumps({"role": os.environ.get("BENCH_ROLE", sys.argv[1]), "sql": statements, "rss_mb": peak_mb})
    )


def main() -> None:
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection)
    atexit.register(_write)
    if profile_dir := os.environ.get("BENCH_PROFILE_DIR"):
        import cProfile

        profiler = cProfile.Profile()
        role = os.environ.get("BENCH_ROLE", sys.argv[1])
        atexit.register(lambda: profiler.dump_stats(Path(profile_dir) / f"{role}-{os.getpid()}.prof"))
        profiler.enable()
    kind, args = sys.argv[1], sys.argv[2:]
    if kind == "manage":
        from django.core.management import execute_from_command_line

        execute_from_command_line(["manage.py", *args])
    else:
        from celery.__main__ import main as celery_main

        sys.argv = ["celery", *args]
        celery_main()


if __name__ == "__main__":
    main()
