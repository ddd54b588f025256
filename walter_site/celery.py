"""The Celery app: ``celery -A walter_site worker`` runs delivery batches and on-demand sends.

Its settings are the ``CELERY_*`` names in walter_site/settings.py. With ``CELERY_BROKER_URL`` empty nothing is
ever sent to a broker: the daily job and on-demand sends run in the process that asks for them.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "walter_site.settings")

app = Celery("walter_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
