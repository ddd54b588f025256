# Loaded with Django so that tasks enqueued from the web or a command use the configured app.
from .celery import app as celery_app

__all__ = ["celery_app"]
