"""A test double loaded into a Celery worker (``--include tests.fakes.failing_batches``): while the file named by
``BATCHES_FAIL_WHILE`` exists, every delivery batch fails before sending anything, as with a bug not fixed yet or a
dependency down. ``BATCHES_FAIL_HOW=raise`` (the default) raises; ``crash`` ends the worker process on the spot, as
an out-of-memory kill would. Each attempt is journaled to ``BATCHES_FAILED_LOG`` as ``first-delivery-id pid``."""

from __future__ import annotations

import os

from newsletters import tasks

_real_batch_deliver = tasks.batch_deliver


def _failing_batch_deliver(*, issue_id: int, delivery_ids: list[int], **kwargs):
    flag = os.environ.get("BATCHES_FAIL_WHILE", "")
    if not (flag and os.path.exists(flag)):
        return _real_batch_deliver(issue_id=issue_id, delivery_ids=delivery_ids, **kwargs)
    fd = os.open(os.environ["BATCHES_FAILED_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{min(delivery_ids)} {os.getpid()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.environ.get("BATCHES_FAIL_HOW", "raise") == "crash":
        os._exit(1)
    raise RuntimeError("the batch failed (test double: the cause is not fixed yet)")


tasks.batch_deliver = _failing_batch_deliver
