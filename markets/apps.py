from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate


def _demo_ticker_directory(sender: AppConfig, using: str = "default", **kwargs) -> None:
    """In the demo the directory is the demo provider's fixed list: load it with the tables, so a fresh clone's
    subscribe form works offline before any daily run. A real provider's list waits for its first refresh."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    from .models import ListedTicker
    from .services import ticker_directory_refresh

    if using != DEFAULT_DB_ALIAS:
        return
    try:
        provider_class = import_string(settings.MARKET_DATA_PROVIDER)
    except ImportError:
        return  # the misconfiguration is reported where the provider is used
    if getattr(provider_class, "is_demo", False) and not ListedTicker.objects.exists():
        ticker_directory_refresh(provider=provider_class())


class MarketsConfig(AppConfig):
    name = "markets"
    verbose_name = "Markets"

    def ready(self) -> None:
        post_migrate.connect(_demo_ticker_directory, sender=self)
