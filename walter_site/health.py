"""Health checks for load balancers and orchestrators: ``/healthz`` (the process answers) and ``/readyz`` (it can
reach its database and cache). No authentication and nothing secret in the answer: failures are named, and their
details go to the log, where connection strings and host names belong.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger("walter.health")


def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers: touches no database, cache or outside system, so nothing slow can hold it up."""
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _cache() -> None:
    key = f"walter:readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=10)
    try:
        if cache.get(key) != "1":
            raise RuntimeError("the cache did not return what was stored")
    finally:
        cache.delete(key)


CHECKS: dict[str, Callable[[], None]] = {"database": _database, "cache": _cache}


def readyz(request: HttpRequest) -> JsonResponse:
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception:
            logger.exception("readiness check %s failed", name)
            results[name] = "unavailable"
    ready = all(v == "ok" for v in results.values())
    response = JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": results}, status=200 if ready else 503
    )
    response["Cache-Control"] = "no-store"
    return response


PATHS = {"/healthz": healthz, "/readyz": readyz}


class HealthCheckMiddleware:
    """Answers the health paths before ALLOWED_HOSTS is enforced: load balancers probe the container by its IP."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = PATHS.get(request.path_info.rstrip("/") or "/")
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)
