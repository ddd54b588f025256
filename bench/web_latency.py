"""How fast the web answers while visitors flood ticker search and Polygon is slow, on a real gunicorn.

    .venv/bin/python bench/web_latency.py [--seconds 5] [--clients 24] [--delay 5]

Starts gunicorn as in production (1 worker x 4 threads here; GUNICORN_WORKERS/THREADS), on a throw-away SQLite
database whose ticker directory is loaded from the local fake Polygon server, and Polygon at its free plan's 5
requests a minute. Then every answer of the fake server is delayed ``--delay`` seconds, ``--clients`` threads search
distinct queries for ``--seconds``, and /healthz and / are probed meanwhile. Prints latencies and how many requests
reached Polygon from the web (target: /healthz well under 100 ms, 0 requests). Nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, timeout: float = 60.0) -> tuple[int, float]:
    """Status and seconds taken for one GET on a fresh connection."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": "127.0.0.1"})
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection.close()


def site_env(workdir: Path, polygon_url: str) -> dict[str, str]:
    """The environment of a site on a throw-away SQLite database, with Polygon at ``polygon_url``."""
    return {
        **os.environ,
        "WALTER_VAR_DIR": str(workdir),
        "DATABASE_URL": f"sqlite:///{workdir}/web.sqlite3",
        "CACHE_URL": "locmemcache://web-latency",
        "POLYGON_API_KEY": "bench-key",
        "POLYGON_BASE_URL": polygon_url,
        "MARKET_DATA_PROVIDER": "markets.providers.polygon.PolygonProvider",
        "TICKER_SEARCH_LIMIT_PER_MINUTE": "1000000",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }


def manage(env: dict[str, str], *args: str, **kwargs) -> subprocess.Popen:
    """``manage.py <args>`` in its own process (Popen: callers may wait for it, or kill it)."""
    return subprocess.Popen([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, **kwargs)


def start_site(workdir: Path, polygon_url: str) -> tuple[subprocess.Popen, int, dict[str, str]]:
    """A migrated site with its ticker directory loaded, served by gunicorn on a free port."""
    port = free_port()
    env = {
        **site_env(workdir, polygon_url),
        "PORT": str(port),
        "GUNICORN_WORKERS": os.environ.get("GUNICORN_WORKERS", "1"),
        "GUNICORN_THREADS": os.environ.get("GUNICORN_THREADS", "4"),
    }
    if manage(env, "migrate", "-v0").wait() != 0:
        raise RuntimeError("migrate failed")
    loading = {**env, "POLYGON_REQUESTS_PER_MINUTE": "600000"}
    if manage(loading, "refresh_tickers", stdout=subprocess.DEVNULL).wait() != 0:
        raise RuntimeError("refresh_tickers failed")
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log = (workdir / "gunicorn.log").open("w")
    site = subprocess.Popen(
        [
            str(gunicorn),
            "--config",
            "python:walter_site.gunicorn_conf",
            "--access-logfile",
            "/dev/null",
            "walter_site.wsgi",
        ],
        env={**env, "POLYGON_REQUESTS_PER_MINUTE": "5"},
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if get(port, "/healthz", timeout=1.0)[0] == 200:
                return site, port, env
        except OSError:
            pass
        if time.monotonic() > deadline or site.poll() is not None:
            site.terminate()
            raise RuntimeError(f"gunicorn did not start; see {workdir / 'gunicorn.log'}")
        time.sleep(0.1)


def attempt(port: int, path: str, timeout: float) -> tuple[int, float]:
    """Like `get`, with a timeout or refused connection recorded as status 0 after the time it took."""
    started = time.monotonic()
    try:
        return get(port, path, timeout=timeout)
    except OSError:
        return 0, time.monotonic() - started


def flood(port: int, *, seconds: float, clients: int, timeout: float = 30.0) -> dict[str, list]:
    """Distinct searches from ``clients`` threads for ``seconds``, /healthz and / probed meanwhile."""
    stop = threading.Event()
    results: dict[str, list] = {"search": [], "healthz": [], "home": []}
    lock = threading.Lock()

    def searcher(n: int) -> None:
        i = 0
        while not stop.is_set():
            outcome = attempt(port, f"/api/tickers/search?q=z{n:02d}{i % 100:02d}", timeout)
            with lock:
                results["search"].append(outcome)
            i += 1

    def prober() -> None:
        while not stop.is_set():
            for key, path in (("healthz", "/healthz"), ("home", "/")):
                outcome = attempt(port, path, timeout)
                with lock:
                    results[key].append(outcome)
            time.sleep(0.05)

    threads = [threading.Thread(target=searcher, args=(n,), daemon=True) for n in range(clients)]
    threads.append(threading.Thread(target=prober, daemon=True))
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=timeout + 5)
    return results


def stop_site(site: subprocess.Popen) -> None:
    site.terminate()
    try:
        site.wait(timeout=10)
    except subprocess.TimeoutExpired:  # threads stuck in a request outlive gunicorn's graceful stop
        site.kill()
        site.wait(timeout=10)


def summary(outcomes: list[tuple[int, float]]) -> str:
    times = sorted(t * 1000 for _, t in outcomes)
    if not times:
        return "none"
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    statuses = sorted({s for s, _ in outcomes})
    return (
        f"{len(times)} requests, median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms, "
        f"status {statuses}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--delay", type=float, default=5.0, help="Seconds the fake Polygon takes to answer.")
    args = parser.parse_args()

    from tests.fakes.polygon_server import FakePolygon, Reply

    polygon = FakePolygon().start()
    polygon.names.update({f"Z{i:04d}": f"Zeta Company {i}" for i in range(2500)})
    workdir = Path(tempfile.mkdtemp(prefix="walter-web-latency-"))
    site, port, _env = start_site(workdir, polygon.url)
    try:
        loaded = polygon.count()
        polygon.script("/", *[Reply(body={}, delay=args.delay) for _ in range(10_000)])
        results = flood(port, seconds=args.seconds, clients=args.clients)
        print(
            f"gunicorn {os.environ.get('GUNICORN_WORKERS', '1')} worker(s) x {os.environ.get('GUNICORN_THREADS', '4')}"
        )
        print(f"directory loaded in {loaded} Polygon requests; then Polygon answers in {args.delay:g} s")
        print(f"search   ({args.clients} clients): {summary(results['search'])}")
        print(f"/healthz meanwhile: {summary(results['healthz'])}")
        print(f"/        meanwhile: {summary(results['home'])}")
        print(f"Polygon requests from the web: {polygon.count() - loaded}")
    finally:
        stop_site(site)
        polygon.stop()


if __name__ == "__main__":
    main()
