from __future__ import annotations

from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class WalterSiteConfig(AppConfig):
    name = "walter_site"
    verbose_name = "Walter"

    def ready(self) -> None:
        from . import csrf_tokens

        csrf_tokens.install()
        # The local defaults write under VAR_DIR (SQLite, outbox, archive, locks), and whitenoise looks in
        # STATIC_ROOT first: a fresh checkout has neither. Made at start-up, not when settings are imported.
        Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
        if not settings.PRODUCTION:
            Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
