"""CPU time per request of the web endpoints, in one process, without a server or a load generator.

    .venv/bin/python bench/web_cpu.py [PATH ...]     (default: /healthz, /, /api/tickers/search?q=app)

The production settings (as bench/web.sh sets them) on a throw-away SQLite database with the demo data; each path is
served through Django's WSGI handler 300 times, best of 15 rounds taken in turn, in CPU seconds of this process. On a
machine shared with other jobs this moves far less than bench/web.sh's requests per second, so it is the figure to
compare code by; bench/web.sh adds gunicorn's and wrk's share of each request, the same for every endpoint.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REQUESTS = 300
ROUNDS = 15


def main(paths: list[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="walter-web-cpu-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="walter_site.settings",
        WALTER_ENV="production",
        SECRET_KEY="bench-only-not-a-secret",
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"sqlite:///{work}/web.sqlite3",
        WALTER_VAR_DIR=str(work / "var"),
        STATIC_ROOT=str(work / "static"),
        LOG_LEVEL="ERROR",
        SECURE_SSL_REDIRECT="false",
        BEHIND_PROXY="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        SUBSCRIBE_LIMIT_PER_IP="1000000000",
        TICKER_SEARCH_LIMIT_PER_MINUTE="1000000000",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    call_command("seed_demo", "--quiet")
    from walter_site.wsgi import application

    def serve(path: str) -> None:
        path_info, _, query = path.partition("?")
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1:8000",
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.input": BytesIO(),
            "wsgi.url_scheme": "http",
        }
        statuses = []
        body = application(environ, lambda status, headers: statuses.append(status))
        b"".join(body)
        body.close()
        if not statuses[0].startswith("200"):
            raise SystemExit(f"{path} answered {statuses[0]}")

    def batch(path: str) -> None:
        for _ in range(REQUESTS):
            serve(path)

    for path in paths:
        batch(path)  # warm-up: the page's first render, the connection, the caches
    best = {path: float("inf") for path in paths}
    for _ in range(ROUNDS):  # in turn, so a busy minute on the machine falls on every path alike
        for path in paths:
            started = time.process_time()
            batch(path)
            best[path] = min(best[path], (time.process_time() - started) / REQUESTS)
    for path in paths:
        print(
            f"{path:<30} {best[path] * 1e6:6.0f} µs CPU a request   {best[paths[0]] / best[path]:.2f} of {paths[0]}'s rate"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ["/healthz", "/", "/api/tickers/search?q=app"])
