"""Celery tasks: thin wrappers that take ids from the broker and call the services that do the work."""

from __future__ import annotations

import logging

from celery import shared_task

from .dispatch import BatchBusy, batch_deliver, run_complete_if_done

logger = logging.getLogger("walter.tasks")


@shared_task(bind=True, max_retries=None)
def deliver_batch(self, issue_id: int, delivery_ids: list[int], run_id: int | None = None) -> None:
    """Send one batch of an issue's deliveries; the worker that finishes the last batch of a --no-wait run records
    the run."""
    try:
        stage = batch_deliver(issue_id=issue_id, delivery_ids=delivery_ids)
    except BatchBusy as busy:
        # Not an error: someone else holds (part of) the batch. Look again once their claim has run out.
        logger.info("batch of %s deliveries busy: %s; again in %.0f s", len(delivery_ids), busy, busy.wait)
        raise self.retry(countdown=busy.wait) from None
    logger.info(
        "batch of %s deliveries: %s sent, %s failed, %s skipped%s",
        len(delivery_ids),
        stage.sent,
        stage.failed,
        stage.skipped,
        f", stopped: {stage.stopped}" if stage.stopped else "",
    )
    if run_id is not None:
        run_complete_if_done(run_id=run_id)


@shared_task(bind=True)
def send_job(self, job_id: int) -> None:
    """An on-demand send ("send me the latest issue now"), through the job record the page polls."""
    from .jobs import send_job_run

    send_job_run(job_id=job_id)
