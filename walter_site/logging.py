"""Log context: fields (such as the daily run's id) added to every log line logged while they are bound; and the
filter that keeps email addresses out of every log line.

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

from .redaction import redact, redact_data

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("walter_log_context", default=None)


def log_context_bind(**fields: Any) -> None:
    """Add ``fields`` to every following log line in this context (until the enclosing ``log_context`` ends)."""
    _context.set({**(_context.get() or {}), **fields})


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


# What LogRecord itself sets: every other attribute came from ``extra=`` and is written by the JSON formatter.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RedactFilter(logging.Filter):
    """Email addresses out of the message, its arguments, the traceback and ``extra`` fields of every record.

    A handler filter, so it sees every record the handler writes, whichever logger (Django's, botocore's,
    anymail's) made it. Vendor texts are redacted where they are stored, too; this catches whatever a log call
    passes on unchecked, such as an exception's text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):  # the JSON formatter writes a dict message as fields: keep it one
            record.msg = redact_data(record.msg)
        else:
            record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:
            # Formatted here, once, so every formatter (plain or JSON) writes the redacted text.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRIBUTES and isinstance(value, (str, dict, list, tuple)):
                setattr(record, name, redact_data(value))
        return True


class PlainFormatter(logging.Formatter):
    """The human-readable line, with the bound context as ``[run_id=42]`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _context.get() or {}
        record.context = (" [" + " ".join(f"{n}={v}" for n, v in fields.items()) + "]") if fields else ""
        return super().format(record)
