"""The delivery queue's dead letters: batches received 5 times without finishing, set aside until the cause is fixed.

Nothing is lost while a batch waits there: its deliveries stay pending in the database (a rerun of run_daily would
also send them). ``requeue_dead_letters`` and the admin's button put the batches back on the delivery queue, with
either broker: SQS keeps the dead letters itself (a redrive policy); with Redis, the worker counts each message's
receives and moves it aside itself (see broker_redis for why).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from kombu.exceptions import OperationalError

logger = logging.getLogger("walter.dead_letters")

# As the delivery queue's maxReceiveCount in infra/walter.yml: the same batch fails as often on either broker.
MAX_RECEIVES = 5


class DeadLetterError(Exception):
    """The dead letters cannot be had; the message says why, in one line."""


@dataclass
class Requeued:
    moved: int = 0
    waiting: int = 0  # what the dead letters still hold (for --dry-run: all of it)


def broker_kind() -> str:
    """Which broker carries the tasks: "sqs", "redis", or "" (none: everything runs in-process)."""
    url = settings.CELERY_BROKER_URL
    if url.startswith("sqs://"):
        return "sqs"
    if url.startswith(("redis://", "rediss://")):
        return "redis"
    return ""


def _redis_move_back(limit: int | None) -> int:
    from celery import current_app

    from . import broker_redis

    with current_app.connection_for_write(settings.CELERY_BROKER_URL) as connection:

        def republish(letter: dict) -> None:
            # A new message (a new id, counted from zero), as SQS's receive count starts again for a requeued one.
            current_app.send_task(
                letter["task"],
                args=letter["args"],
                kwargs=letter["kwargs"],
                queue=letter["queue"],
                connection=connection,
            )

        return broker_redis.dead_letters_move_back(limit=limit, publish=republish)


def dead_letters_requeue(*, limit: int | None = None, dry_run: bool = False) -> Requeued:
    """Move up to ``limit`` dead letters back to the delivery queue (none with ``dry_run``)."""
    # The adapters are imported when used: boto3 and redis cost every web and worker process memory otherwise.
    from . import broker_redis, broker_sqs

    kind = broker_kind()
    try:
        if kind == "sqs":
            moved = 0 if dry_run else broker_sqs.dead_letters_move_back(limit=limit)
            return Requeued(moved=moved, waiting=broker_sqs.dead_letters_waiting())
        if kind == "redis":
            moved = 0 if dry_run else _redis_move_back(limit)
            return Requeued(moved=moved, waiting=broker_redis.dead_letters_waiting())
    except (broker_sqs.SQSError, broker_redis.RedisBrokerError) as exc:
        raise DeadLetterError(str(exc)) from exc
    except OperationalError as exc:  # kombu could not publish to the broker
        raise DeadLetterError(f"the broker: {exc}") from exc
    raise DeadLetterError(
        "no broker is configured (CELERY_BROKER_URL): batches run in-process and there are no dead letters"
        if not settings.CELERY_BROKER_URL
        else "dead letters are kept only with the SQS or Redis broker"
    )


@dataclass(frozen=True)
class Received:
    """One receive of a task message, as the worker sees it."""

    task: str
    message_id: str  # Celery's task id and its retry number: Task.retry sends a new message under the same id
    args: list
    kwargs: dict
    queue: str


def message_receive(*, received: Received) -> bool:
    """Count one receive of a message; True when it was received more than MAX_RECEIVES times and has been put
    with the dead letters instead (its task must not run: the caller acknowledges it).

    Only Redis needs counting here; SQS counts receives itself and never hands out a message past its limit.
    """
    if broker_kind() != "redis":
        return False
    from . import broker_redis

    receives = broker_redis.receive_count(message_id=received.message_id)
    if receives <= MAX_RECEIVES:
        return False
    broker_redis.dead_letter_add(
        letter={
            "task": received.task,
            "args": received.args,
            "kwargs": received.kwargs,
            "queue": received.queue,
            "id": received.message_id,
            "receives": receives - 1,
            "dead_since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )
    broker_redis.receive_count_forget(message_id=received.message_id)
    logger.error(
        "task %s (message %s) received %s times without finishing: moved to the dead letters",
        received.task,
        received.message_id,
        receives - 1,
    )
    return True


def message_done(*, received: Received) -> None:
    """The message's task finished (it is acknowledged): forget its receive count."""
    if broker_kind() == "redis":
        from . import broker_redis

        broker_redis.receive_count_forget(message_id=received.message_id)


def redelivers_failures() -> bool:
    """Whether a task that failed must ask for its message back: Celery's late acknowledgement of a failure
    (``task_acks_on_failure_or_timeout`` off) rejects the message, which SQS keeps for its redrive and counts, but
    Redis drops."""
    return broker_kind() == "redis"
