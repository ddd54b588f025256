"""The delivery queue's dead letters (SQS): batches that failed 5 times, put back once the cause is fixed.

Nothing is lost while a batch waits there: its deliveries stay pending in the database (a rerun of run_daily
would also send them). Requeueing copies each message, body and attributes as they are, back to the delivery queue
and only then deletes it from the dead-letter queue, so a crash in between duplicates a batch (harmless: the
deliveries' status makes a batch safe to run twice) and never loses one.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings


class DeadLetterError(Exception):
    """The queues cannot be read or written; the message says which and why, in one line."""


@dataclass
class Requeued:
    moved: int = 0
    waiting: int = 0  # what the dead-letter queue still holds (for --dry-run: all of it)


def _client():
    if not settings.CELERY_BROKER_URL.startswith("sqs://"):
        raise DeadLetterError(
            "dead letters exist only with the SQS broker; with Redis a failing batch is dropped and its deliveries "
            "stay pending for the next run_daily"
        )
    if not (settings.CELERY_SQS_QUEUE_URL and settings.CELERY_SQS_DEAD_LETTER_QUEUE_URL):
        raise DeadLetterError("set CELERY_SQS_QUEUE_URL and CELERY_SQS_DEAD_LETTER_QUEUE_URL")
    # The broker URL's host, when it has one, is a local SQS over HTTP, as kombu's transport reads it.
    host = urlsplit(settings.CELERY_BROKER_URL).netloc.rpartition("@")[2]
    return boto3.client(
        "sqs",
        region_name=settings.AWS_REGION,
        endpoint_url=f"http://{host}" if host else None,
        config=Config(retries={"mode": "standard", "max_attempts": 5}),
    )


def dead_letters_requeue(*, limit: int | None = None, dry_run: bool = False) -> Requeued:
    """Move up to ``limit`` dead letters back to the delivery queue (none with ``dry_run``)."""
    client = _client()
    source, target = settings.CELERY_SQS_DEAD_LETTER_QUEUE_URL, settings.CELERY_SQS_QUEUE_URL
    result = Requeued()
    try:
        if not dry_run:
            while limit is None or result.moved < limit:
                want = 10 if limit is None else min(10, limit - result.moved)
                answer = client.receive_message(
                    QueueUrl=source,
                    MaxNumberOfMessages=want,
                    WaitTimeSeconds=1,
                    VisibilityTimeout=60,
                    MessageAttributeNames=["All"],
                )
                messages = answer.get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    copy = {"QueueUrl": target, "MessageBody": message["Body"]}
                    if message.get("MessageAttributes"):
                        copy["MessageAttributes"] = message["MessageAttributes"]
                    client.send_message(**copy)
                    client.delete_message(QueueUrl=source, ReceiptHandle=message["ReceiptHandle"])
                    result.moved += 1
        attributes = client.get_queue_attributes(
            QueueUrl=source, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        result.waiting = int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )
    except (BotoCoreError, ClientError) as exc:
        raise DeadLetterError(f"SQS: {exc} (after moving {result.moved})") from exc
    return result
