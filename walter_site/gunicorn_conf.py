"""gunicorn settings from the environment, so one image fits a small dev task and a large production one.

Used as ``gunicorn --config python:walter_site.gunicorn_conf walter_site.wsgi`` by the Dockerfile, docker-compose
and the ECS task definition alike.
"""

import gc
import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Longer than the load balancer's idle timeout (60 s), so the balancer, not gunicorn, closes idle connections.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
# Django is imported once in the master and forked, so a worker that starts (or restarts) answers at once.
preload_app = os.environ.get("GUNICORN_PRELOAD", "true").lower() in ("1", "true", "yes")
# Workers are recycled to bound slow memory growth, not for speed: at 2,000 requests a loaded worker restarted
# every few seconds and each restart showed in the p99. The jitter (half the limit by default) keeps the workers
# from restarting together; 0 turns recycling off.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "50000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", str(max_requests // 2)))
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")


def when_ready(server: object) -> None:
    """With the app preloaded, the master's objects (Django, the URL configuration, compiled templates) are moved out
    of the garbage collector's sight before any worker is forked: a worker's full collection then scans only what it
    made itself (measured: 266 ms against 23 ms on the loaded benchmark machine, a pause every worker thread waits
    through), and collections no longer write to pages the workers share with the master."""
    gc.freeze()
