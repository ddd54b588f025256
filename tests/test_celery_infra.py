"""The delivery queue as deployed: SQS with its dead-letter queue, the worker service and its scaling, least privilege,
docker-compose's workers, requeue_dead_letters; and the whole flow once on kombu's SQS transport (moto_server)."""

from __future__ import annotations

import collections
import json
import time

import boto3
import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import TRADING_DAY
from tests.test_celery_workers import cluster_factory, populate  # noqa: F401 - the fixture, shared
from tests.test_infra_deploy import ROOT, TEMPLATE, CfnLoader, container

WORKER_COMMAND = ["celery", "-A", "walter_site", "worker", "--loglevel", "INFO"]


@pytest.fixture(scope="module")
def resources() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)["Resources"]


def test_a_batch_received_five_times_goes_to_the_dead_letter_queue_which_alarms(resources):
    queue = resources["DeliveryQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeliveryDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    # Longer than any task: CELERY_TASK_TIME_LIMIT defaults to 3/4 of CELERY_VISIBILITY_TIMEOUT (3600).
    assert queue["VisibilityTimeout"] == 3600
    alarm = resources["DeadLetterAlarm"]["Properties"]
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeliveryDeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}]


def test_workers_run_the_same_command_everywhere_and_scale_from_zero(resources):
    worker = container(resources, "WorkerTaskDefinition")
    assert worker["Command"] == WORKER_COMMAND
    assert worker["StopTimeout"] == 120, "time for Celery's warm shutdown to finish the batch in hand"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["worker"]["command"] == WORKER_COMMAND
    assert compose["x-walter"]["environment"]["CELERY_BROKER_URL"] == "redis://redis:6379/1"

    target = resources["WorkerScalingTarget"]["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, {"Ref": "MaxWorkers"})
    spec = resources["WorkerScalingPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    metrics = {m["Id"]: m for m in spec["CustomizedMetricSpecification"]["Metrics"]}
    assert metrics["backlog"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert "backlog / workers" in metrics["backlog_per_worker"]["Expression"]
    assert spec["TargetValue"] == {"Ref": "BacklogPerWorker"}

    for task in ("WebTaskDefinition", "DailyTaskDefinition", "WorkerTaskDefinition"):
        env = {e["Name"]: e["Value"] for e in container(resources, task)["Environment"]}
        assert env["CELERY_BROKER_URL"] == "sqs://" and env["CELERY_SQS_QUEUE_URL"] == {"Ref": "DeliveryQueue"}


def sqs_statements(resources, role: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = collections.defaultdict(set)
    for policy in resources[role]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                if action.startswith("sqs:"):
                    found[statement["Resource"]["Fn::GetAtt"][0]].add(action)
    return found


def test_each_role_gets_only_the_queue_actions_it_uses(resources):
    assert sqs_statements(resources, "WebTaskRole") == {
        "DeliveryQueue": {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    }
    daily = sqs_statements(resources, "DailyTaskRole")
    assert daily["DeliveryQueue"] == {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert "sqs:ReceiveMessage" in daily["DeliveryDeadLetterQueue"]
    worker = sqs_statements(resources, "WorkerTaskRole")
    assert set(worker) == {"DeliveryQueue"} and "sqs:ReceiveMessage" in worker["DeliveryQueue"]
    for policy in resources["WorkerTaskRole"]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Resource"] != "*" and "*" not in json.dumps(statement["Action"]), statement
    for task, role in [("WorkerTaskDefinition", "WorkerTaskRole")]:
        assert resources[task]["Properties"]["TaskRoleArn"] == {"Fn::GetAtt": [role, "Arn"]}


# --- requeue_dead_letters ----------------------------------------------------------------------------------------


@pytest.fixture
def queues(moto_server, settings):
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_server)
    dlq = sqs.create_queue(QueueName="walter-test-delivery-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    main = sqs.create_queue(
        QueueName="walter-test-delivery",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})},
    )["QueueUrl"]
    settings.CELERY_BROKER_URL = "sqs://" + moto_server.removeprefix("http://")
    settings.CELERY_SQS_QUEUE_URL, settings.CELERY_SQS_DEAD_LETTER_QUEUE_URL = main, dlq
    return sqs, main, dlq


def bodies(sqs, url: str) -> list[str]:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0)
    return sorted(m["Body"] for m in got.get("Messages", []))


def test_requeue_dead_letters_moves_them_back_untouched(queues, capsys):
    sqs, main, dlq = queues
    for n in range(3):
        sqs.send_message(QueueUrl=dlq, MessageBody=f"batch-{n}")
    call_command("requeue_dead_letters", "--dry-run")
    assert "3 batches wait in the dead letters; nothing moved" in capsys.readouterr().out
    call_command("requeue_dead_letters", "--limit", "2")
    assert "Requeued 2 batches; 1 left" in capsys.readouterr().out
    call_command("requeue_dead_letters")
    assert "Requeued 1 batches; 0 left" in capsys.readouterr().out
    assert bodies(sqs, main) == ["batch-0", "batch-1", "batch-2"]


def test_requeue_dead_letters_fails_in_one_line_without_a_broker_that_keeps_them(settings):
    settings.CELERY_BROKER_URL = ""
    with pytest.raises(CommandError, match="no broker is configured") as failure:
        call_command("requeue_dead_letters")
    assert "\n" not in str(failure.value)
    settings.CELERY_BROKER_URL = "amqp://127.0.0.1:5672//"
    with pytest.raises(CommandError, match="only with the SQS or Redis broker"):
        call_command("requeue_dead_letters")
    with pytest.raises(CommandError, match="--limit must be 1 or more"):
        call_command("requeue_dead_letters", "--limit", "0")


def test_requeue_dead_letters_reports_an_unreachable_queue(queues, settings):
    settings.CELERY_SQS_DEAD_LETTER_QUEUE_URL = queues[2] + "-missing"
    with pytest.raises(CommandError, match=r"^SQS: ") as failure:
        call_command("requeue_dead_letters")
    assert "\n" not in str(failure.value)


# --- the whole flow on kombu's SQS transport -----------------------------------------------------------------------


@pytest.mark.slow
def test_workers_on_sqs_send_every_subscriber_the_issue_once(cluster_factory, queues, settings):  # noqa: F811
    _, main, dlq = queues
    emails = populate(200)
    cluster = cluster_factory(batch=25, delay=0, visibility=120)
    cluster.env.update(
        {
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,  # sqs://127.0.0.1:PORT, moto_server's
            "CELERY_QUEUE": "walter-test-delivery",
            "CELERY_SQS_QUEUE_URL": main,
            "CELERY_SQS_DEAD_LETTER_QUEUE_URL": dlq,
            "SQS_WAIT_TIME_SECONDS": "1",
        }
    )
    cluster.worker()
    cluster.worker()
    run = cluster.manage("run_daily", "--date", TRADING_DAY.isoformat())
    out, _ = run.communicate(timeout=240)
    assert run.returncode == 0, out + cluster.worker_logs()
    counts = collections.Counter(address for address, _, _ in cluster.handed())
    assert set(counts) == set(emails) and max(counts.values()) == 1
    assert "emails 200 sent" in out


@pytest.mark.slow
def test_a_batch_that_keeps_failing_lands_in_the_dead_letter_queue_after_five_receives(
    cluster_factory,  # noqa: F811
    queues,
    settings,
):
    sqs, main, dlq = queues
    # A short lease, so that SQS hands the failing batch out again within the test.
    sqs.set_queue_attributes(QueueUrl=main, Attributes={"VisibilityTimeout": "1"})
    cluster = cluster_factory(batch=25, delay=0, visibility=120)
    cluster.env.update(
        {
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CELERY_QUEUE": "walter-test-delivery",
            "CELERY_SQS_QUEUE_URL": main,
            "CELERY_SQS_DEAD_LETTER_QUEUE_URL": dlq,
            "SQS_WAIT_TIME_SECONDS": "1",
        }
    )
    # A batch of an issue that does not exist fails every time it is received.
    queue_batch = cluster.manage(
        "shell", "-c", "from newsletters.tasks import deliver_batch; deliver_batch.delay(999999, [1, 2, 3], None)"
    )
    assert queue_batch.wait(timeout=60) == 0, queue_batch.stdout.read()
    cluster.worker()

    def waiting(url: str) -> int:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    deadline = time.monotonic() + 90
    while waiting(dlq) == 0:
        assert time.monotonic() < deadline, "the batch never reached the dead-letter queue" + cluster.worker_logs()
        time.sleep(0.5)
    failures = (cluster.logs / "worker0.log").read_text().count("Issue.DoesNotExist")
    assert failures >= 5, "received (and failed) five times first"
    cluster.stop()
    assert waiting(main) == 0

    call_command("requeue_dead_letters")
    assert waiting(dlq) == 0 and waiting(main) == 1, "back on the delivery queue after the fix"
