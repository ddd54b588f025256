"""Load the pluggable adapter named by a dotted-path setting, the way Django loads EMAIL_BACKEND."""

import copy
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import get_connection
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


def email_connection(*, timeout: float | None = None) -> Any:
    """A connection of the configured email backend; with ``timeout``, one attempt whose network waits are capped.

    For a send made while a visitor waits (a confirmation, a data link): Amazon SES through anymail takes botocore's
    timeouts and retry count; SMTP takes ``timeout``; the local backends (files, memory) never wait on a network.
    """
    if timeout is None:
        return get_connection()
    if settings.EMAIL_BACKEND.startswith("anymail.backends.amazon_ses"):
        params = copy.deepcopy(settings.ANYMAIL.get("AMAZON_SES_CLIENT_PARAMS", {}))
        params["config"] = {
            **params.get("config", {}),
            "connect_timeout": timeout / 2,
            "read_timeout": timeout / 2,
            "retries": {"mode": "standard", "total_max_attempts": 1},  # botocore counts max_attempts as retries
        }
        return get_connection(client_params=params)
    return get_connection(timeout=timeout)
