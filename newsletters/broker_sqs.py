"""Amazon SQS, the production broker: its dead-letter queue, filled by the delivery queue's redrive policy.

SQS counts the receives of every message itself and moves a batch received 5 times (``maxReceiveCount`` in
infra/walter.yml) to the dead-letter queue. Requeueing copies each message, body and attributes as they are, back
to the delivery queue and only then deletes it from the dead-letter queue, so a crash in between duplicates a batch
(harmless: the deliveries' status makes a batch safe to run twice) and never loses one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings


class SQSError(Exception):
    """The queues cannot be read or written; the message says which and why, in one line."""


def _client():
    if not (settings.CELERY_SQS_QUEUE_URL and settings.CELERY_SQS_DEAD_LETTER_QUEUE_URL):
        raise SQSError("set CELERY_SQS_QUEUE_URL and CELERY_SQS_DEAD_LETTER_QUEUE_URL")
    # The broker URL's host, when it has one, is a local SQS over HTTP, as kombu's transport reads it.
    host = urlsplit(settings.CELERY_BROKER_URL).netloc.rpartition("@")[2]
    return boto3.client(
        "sqs",
        region_name=settings.AWS_REGION,
        endpoint_url=f"http://{host}" if host else None,
        config=Config(retries={"mode": "standard", "max_attempts": 5}),
    )


def dead_letters_move_back(*, limit: int | None) -> int:
    """Move up to ``limit`` (None: all) messages from the dead-letter queue to the delivery queue; how many."""
    client = _client()
    source, target = settings.CELERY_SQS_DEAD_LETTER_QUEUE_URL, settings.CELERY_SQS_QUEUE_URL
    moved = 0
    try:
        while limit is None or moved < limit:
            want = 10 if limit is None else min(10, limit - moved)
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
                moved += 1
    except (BotoCoreError, ClientError) as exc:
        raise SQSError(f"SQS: {exc} (after moving {moved})") from exc
    return moved


def dead_letters_waiting() -> int:
    """What the dead-letter queue holds, visible or being looked at."""
    client = _client()
    try:
        attributes = client.get_queue_attributes(
            QueueUrl=settings.CELERY_SQS_DEAD_LETTER_QUEUE_URL,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
    except (BotoCoreError, ClientError) as exc:
        raise SQSError(f"SQS: {exc}") from exc
    return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
        attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
    )
