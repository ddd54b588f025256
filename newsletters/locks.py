"""One daily run at a time: a lock the operating system or database releases when the holder dies.

PostgreSQL: a session advisory lock. Elsewhere: an exclusive lock on a file under var/. Both vanish with a
crashed or killed process, so a crash never blocks tomorrow's run, and an overlapping cron start never double-sends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection


class LockHeld(Exception):
    pass


# PostgreSQL advisory locks are re-entrant within one database session, so a second holder in this same process
# would get the lock again; the names held here make the lock exclusive within the process too.
_held: set[str] = set()
_held_guard = threading.Lock()


@contextlib.contextmanager
def _held_in_process(name: str) -> Iterator[None]:
    with _held_guard:
        if name in _held:
            raise LockHeld(name)
        _held.add(name)
    try:
        yield
    finally:
        with _held_guard:
            _held.discard(name)


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold the lock ``name`` for the block, or raise LockHeld at once when another holder has it."""
    with _held_in_process(name), _exclusive_between_processes(name):
        yield


@contextlib.contextmanager
def _exclusive_between_processes(name: str) -> Iterator[None]:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [_key(name)])
            if not cursor.fetchone()[0]:
                raise LockHeld(name)
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_key(name)])
        return
    path = Path(settings.VAR_DIR) / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LockHeld(name) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
