"""Email addresses out of texts that outlive the message: stored errors, log lines, alerts.

Staff find a person in the admin, which forgets them on erasure; a copy of their address in a run record, a
CloudWatch line or an alert email would not be forgotten. Outside systems (SES, anymail, SMTP servers) put the
recipient in their error texts, so every such text goes through :func:`redact` before it is kept.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "<address>"

# Wider than a valid address on purpose: a local part with quotes, international domains, and the
# percent-encoded "@" of an address inside a URL are all someone's address.
_LOCAL = r"""(?:"[^"\r\n]{0,256}"|[\w.!#$%&'*+/=?^`{|}~-]{1,256})"""
_DOMAIN = r"[\w-]{1,63}(?:\.[\w-]{1,63})*"
ADDRESS = re.compile(rf"{_LOCAL}(?:@|%40){_DOMAIN}", re.IGNORECASE)


def redact(text: str, replacement: str = REPLACEMENT) -> str:
    """``text`` with every email address replaced by ``replacement``."""
    if "@" not in text and "%40" not in text.upper():
        return text  # the common case, without running the pattern
    return ADDRESS.sub(replacement, text)


def redact_data(value: Any) -> Any:
    """The same for JSON-like data (a run's errors): strings anywhere in dicts and lists, keys included."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v) for v in value]
    return value
