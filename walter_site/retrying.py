"""How long to wait before trying an outside system again: one place for the Polygon provider and the LLM analyst.

``Retry-After`` is parsed by urllib3's own parser (seconds or an HTTP date); OpenAI-compatible servers may add the
finer ``retry-after-ms``. Between other retries the wait doubles from half a second up to a cap.
"""

from __future__ import annotations

from collections.abc import Mapping

from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

_parser = Retry(0)


def retry_after_seconds(headers: Mapping[str, str], default: float) -> float:
    """The server's own wait in seconds (never negative), or ``default`` when it gives none that can be read.

    ``headers`` must look names up without regard to case, as urllib3's and httpx's header maps do.
    """
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, _parser.parse_retry_after(value))
        except InvalidHeader:
            pass
    return default


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 8.0) -> float:
    """The wait before retry number ``attempt`` (1, 2, ...): 0.5 s, 1 s, 2 s, ... up to ``cap``."""
    return min(cap, base * 2 ** (attempt - 1))
