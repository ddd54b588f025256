"""Celery tasks: thin wrappers that take ids from the broker and call the services that do the work."""

from __future__ import annotations

import logging
import multiprocessing

from celery import shared_task
from celery.exceptions import Reject, Retry
from celery.signals import worker_shutting_down

from .dead_letters import MAX_RECEIVES, Received, message_done, message_receive, redelivers_failures
from .dispatch import BatchBusy, batch_deliver, run_complete_if_done

logger = logging.getLogger("walter.tasks")

# Made when the worker imports its tasks, before the pool forks: a child process sees the main process set it.
_shutting_down = multiprocessing.Event()


@worker_shutting_down.connect
def _stop_sending(sig: str = "", **kwargs: object) -> None:
    """SIGTERM (ECS replacing the task): the batch in hand stops handing out messages, records those in flight,
    and puts the rest back on the queue for another worker, well within ECS's 30 s before SIGKILL."""
    _shutting_down.set()


class WorkerStop:
    """The delivery's stop flag inside a worker (``deliveries_send(stop=...)``): up once shutdown has begun."""

    reason = "the worker is shutting down"

    def __bool__(self) -> bool:
        return _shutting_down.is_set()


def _received(task) -> Received:
    request = task.request
    return Received(
        task=task.name,
        message_id=f"{request.id}:{request.retries}",
        args=list(request.args or ()),
        kwargs=dict(request.kwargs or {}),
        queue=(request.delivery_info or {}).get("routing_key") or task.app.conf.task_default_queue,
    )


@shared_task(bind=True, max_retries=None)
def deliver_batch(self, issue_id: int, delivery_ids: list[int], run_id: int | None = None) -> None:
    """Send one batch of an issue's deliveries; the worker that finishes the last batch of a --no-wait run records
    the run. A batch that fails (or kills its worker) on every receive goes to the dead letters after 5."""
    received = _received(self)
    if message_receive(received=received):
        return  # acknowledged here, kept with the dead letters; its deliveries stay pending
    try:
        _deliver_batch(self, issue_id, delivery_ids, run_id)
    except Retry:
        message_done(received=received)  # a new message carries the batch on (busy, or interrupted)
        raise
    except Exception as exc:
        if not redelivers_failures():
            raise  # SQS: rejected, kept, received again after the visibility timeout
        logger.exception(
            "batch of %s deliveries failed (message %s, at most %s receives); back on the queue",
            len(delivery_ids),
            received.message_id,
            MAX_RECEIVES,
        )
        raise Reject(exc, requeue=True) from exc
    message_done(received=received)


def _deliver_batch(task, issue_id: int, delivery_ids: list[int], run_id: int | None) -> None:
    try:
        stage = batch_deliver(issue_id=issue_id, delivery_ids=delivery_ids, stop=WorkerStop(), run_id=run_id)
    except BatchBusy as busy:
        # Not an error: someone else holds (part of) the batch. Look again once their claim has run out.
        logger.info("batch of %s deliveries busy: %s; again in %.0f s", len(delivery_ids), busy, busy.wait)
        raise task.retry(countdown=busy.wait) from None
    logger.info(
        "batch of %s deliveries: %s sent, %s failed, %s skipped%s",
        len(delivery_ids),
        stage.sent,
        stage.failed,
        stage.skipped,
        f", stopped: {stage.stopped}" if stage.stopped else "",
    )
    if stage.interrupted:
        # What this worker did not hand over is still pending or claimed: the same batch again, for another worker.
        logger.info("batch of %s deliveries interrupted (%s); queued again", len(delivery_ids), stage.interrupted)
        raise task.retry(countdown=0)
    if run_id is not None:
        run_complete_if_done(run_id=run_id)


@shared_task(bind=True)
def send_job(self, job_id: int) -> None:
    """An on-demand send ("send me the latest issue now"), through the job record the page polls."""
    from .jobs import send_job_run

    send_job_run(job_id=job_id)
