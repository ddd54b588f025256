"""What every management command shares: reading its options into values, with one readable line when they are bad."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import CommandError


def date_option(value: str, flag: str = "--date") -> dt.date:
    """``value`` as a date (YYYY-MM-DD), or a CommandError naming ``flag``."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{flag} {value!r} is not a valid date; use YYYY-MM-DD, for example 2026-11-20") from None
