"""Log context: fields (such as the daily run's id) added to every log line logged while they are bound.

A ``contextvars.ContextVar`` rather than a thread-local, so the binding follows the code that runs the job and
never leaks into another request or thread. The handler's filter copies the bound fields onto each record; the
JSON formatter then writes them as keys, the plain formatter as ``[run_id=42]`` after the logger name.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("walter_log_context", default=None)


def log_context_bind(**fields: Any) -> None:
    """Add ``fields`` to every following log line in this context (until the enclosing ``log_context`` ends)."""
    _context.set({**(_context.get() or {}), **fields})


def log_context_fields() -> dict[str, Any]:
    return dict(_context.get() or {})


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind ``fields`` for the block; whatever is bound inside it is forgotten when it ends."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class LogContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class PlainFormatter(logging.Formatter):
    """The human-readable line, with the bound context as ``[run_id=42]`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _context.get() or {}
        record.context = (" [" + " ".join(f"{n}={v}" for n, v in fields.items()) + "]") if fields else ""
        return super().format(record)
