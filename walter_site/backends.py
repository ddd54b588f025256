"""Load the pluggable adapter named by a dotted-path setting, the way Django loads EMAIL_BACKEND."""

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


def load_backend(setting_name: str, **kwargs: Any) -> Any:
    """Instantiate the class named by ``settings.<setting_name>``."""
    dotted_path = getattr(settings, setting_name, "")
    if not dotted_path:
        raise ImproperlyConfigured(f"{setting_name} is not set")
    try:
        backend_class = import_string(dotted_path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{setting_name}={dotted_path!r} cannot be imported: {exc}") from exc
    return backend_class(**kwargs)
