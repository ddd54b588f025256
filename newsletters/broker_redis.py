"""Redis as the broker (local, docker-compose): the receive counts and the dead-letter list Redis lacks.

SQS counts every message's receives and moves a message received too often to its dead-letter queue; RabbitMQ
dead-letters through an exchange. Kombu's Redis transport has neither (Celery's ``Reject(requeue=False)`` drops the
message there), so Walter keeps both next to the queue, in the broker's own Redis database: a counter per message,
raised before its task runs (a worker killed mid-task has counted that receive when Redis hands the message out
again after the visibility timeout), and one list of dead letters per queue, oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import redis
from django.conf import settings

# A message is redelivered within a visibility timeout (an hour) of its last receive; a week is far past that.
COUNT_KEPT_SECONDS = 7 * 24 * 3600

_clients: dict[str, redis.Redis] = {}


class RedisBrokerError(Exception):
    """The broker's Redis cannot be read or written; the message says why, in one line."""


def _client() -> redis.Redis:
    url = settings.CELERY_BROKER_URL
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    return client


def _receives_key(message_id: str) -> str:
    return f"walter:receives:{message_id}"


def _dead_letters_key() -> str:
    return f"walter:dead-letters:{settings.CELERY_TASK_DEFAULT_QUEUE}"


def receive_count(*, message_id: str) -> int:
    """Count one more receive of ``message_id``; returns the receives so far, this one included."""
    key = _receives_key(message_id)
    try:
        with _client().pipeline() as pipe:
            received, _ = pipe.incr(key).expire(key, COUNT_KEPT_SECONDS).execute()
    except redis.RedisError as exc:
        raise RedisBrokerError(f"Redis: {exc}") from exc
    return int(received)


def receive_count_forget(*, message_id: str) -> None:
    """The message is done with (acknowledged or dead-lettered): its count is of no further use."""
    try:
        _client().delete(_receives_key(message_id))
    except redis.RedisError as exc:
        raise RedisBrokerError(f"Redis: {exc}") from exc


def dead_letter_add(*, letter: dict) -> None:
    try:
        _client().rpush(_dead_letters_key(), json.dumps(letter, sort_keys=True))
    except redis.RedisError as exc:
        raise RedisBrokerError(f"Redis: {exc}") from exc


def dead_letters_move_back(*, limit: int | None, publish: Callable[[dict], None]) -> int:
    """Hand up to ``limit`` (None: all) dead letters, oldest first, to ``publish``, removing each only once it is
    published: a crash in between leaves it in the list as well (a batch is safe to run twice); how many."""
    key = _dead_letters_key()
    moved = 0
    try:
        while limit is None or moved < limit:
            raw = _client().lindex(key, 0)
            if raw is None:
                break
            publish(json.loads(raw))
            _client().lrem(key, 1, raw)
            moved += 1
    except redis.RedisError as exc:
        raise RedisBrokerError(f"Redis: {exc} (after moving {moved})") from exc
    return moved


def dead_letters_waiting() -> int:
    try:
        return int(_client().llen(_dead_letters_key()))
    except redis.RedisError as exc:
        raise RedisBrokerError(f"Redis: {exc}") from exc
