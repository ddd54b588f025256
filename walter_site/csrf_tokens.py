"""CSRF secrets and masks from one read of the system's random source.

Django draws each of a token's 32 characters with ``secrets.choice``: one ``getrandom`` system call per character,
64 for a visitor without a CSRF cookie (a new secret and its mask). On this site's virtual machines a system call
is expensive, and those 64 calls were the largest single cost of the subscribe page once its template was rendered
once per process (`walter_site.page_cache`). ``random_string`` gives the same thing, each character uniform over
the alphabet from the operating system's CSPRNG, from one read.
"""

from __future__ import annotations

import secrets

from django.middleware import csrf
from django.utils.crypto import get_random_string


def random_string(length: int, allowed_chars: str) -> str:
    """``length`` characters, each uniform over ``allowed_chars`` (at most 256 of them), from one random read."""
    alphabet = len(allowed_chars)
    if not 0 < alphabet <= 256:
        return get_random_string(length, allowed_chars)
    # Bytes at or above the largest multiple of the alphabet's size are dropped: keeping them would favour the
    # first characters (rejection sampling, as secrets.choice does with bits).
    usable = 256 - 256 % alphabet
    chosen: list[str] = []
    while len(chosen) < length:
        # A few spare bytes make a second read rare (62 characters: 3 % of bytes are dropped).
        for byte in secrets.token_bytes(length + 8):
            if byte < usable:
                chosen.append(allowed_chars[byte % alphabet])
                if len(chosen) == length:
                    break
    return "".join(chosen)


def install() -> None:
    """Django's CSRF middleware draws its secrets and masks through ``random_string`` (called once, at start-up)."""
    csrf.get_random_string = random_string
