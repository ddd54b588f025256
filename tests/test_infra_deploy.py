"""Deployment as code: the CloudFormation template lints clean, and the Dockerfile, docker-compose and the ECS
task definitions run the same commands with the same health check."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from markets.shared_tables.dynamodb import KEY_SCHEMAS
from newsletters.observability import METRICS
from walter_site.scheduler import next_run

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "walter.yml"
NEW_YORK = ZoneInfo("America/New_York")


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (!Ref, !Sub, ...) read as {"Ref": ...}, {"Fn::Sub": ...}."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node):
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def container(resources: dict, task: str) -> dict:
    (definition,) = resources[task]["Properties"]["ContainerDefinitions"]
    return definition


# --- the template ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cfn_lint_reports_nothing():
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "json", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['Rule']['Id']} {f['Message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_stage_is_a_parameter(template):
    assert template["Parameters"]["Stage"]["AllowedValues"] == ["dev", "prod"]


def test_shared_tables_match_the_contract(resources):
    tables = {
        r["Properties"]["TableName"]["Fn::Sub"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::DynamoDB::Table"
    }
    assert set(tables) == {f"{base}-${{Stage}}" for base in KEY_SCHEMAS}
    for base, (partition, sort) in KEY_SCHEMAS.items():
        table = tables[f"{base}-${{Stage}}"]
        assert table["KeySchema"] == [
            {"AttributeName": partition, "KeyType": "HASH"},
            {"AttributeName": sort, "KeyType": "RANGE"},
        ]
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_archive_bucket_is_private_encrypted_and_ages_out(resources):
    bucket = resources["ArchiveBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] == "AES256"
    lifecycle = bucket["LifecycleConfiguration"]["Rules"][0]
    assert lifecycle["Status"] == "Enabled" and lifecycle["Transitions"] and lifecycle["ExpirationInDays"]


def test_daily_run_is_scheduled_at_eight_new_york_on_weekdays(resources):
    schedule = resources["DailySchedule"]["Properties"]
    assert schedule["ScheduleExpression"] == "cron(0 8 ? * MON-FRI *)"
    assert schedule["ScheduleExpressionTimezone"] == "America/New_York"
    assert schedule["Target"]["Arn"] == {"Ref": "DailyStateMachine"}
    assert json.loads(schedule["Target"]["Input"]) == {"attempt": 1}
    machine = resources["DailyStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"]["TaskDefinitionArn"] == {"Ref": "DailyTaskDefinition"}
    run = machine["Definition"]["States"]["RunDaily"]
    assert run["Resource"] == "arn:aws:states:::ecs:runTask.sync"  # waits for the task to stop
    assert run["Parameters"]["TaskDefinition"] == "${TaskDefinitionArn}"
    assert container(resources, "DailyTaskDefinition")["Command"] == ["python", "manage.py", "run_daily"]


def _run_state_machine(definition: dict, exit_codes: list[int | None]) -> tuple[str, int, int]:
    """Play the daily state machine with each run's exit code (None: the task could not start).

    A small interpreter of the states the definition uses; returns the final state's type, the number of task
    runs and the seconds waited.
    """

    def path(data: dict, expression: str):
        value = data
        for part in re.findall(r"[A-Za-z_]+|\[\d+\]", expression.removeprefix("$.")):
            if part.startswith("["):
                index = int(part[1:-1])
                if not isinstance(value, list) or index >= len(value):
                    raise KeyError(expression)
                value = value[index]
            else:
                value = value[part]
        return value

    def matches(rule: dict, data: dict) -> bool:
        try:
            value = path(data, rule["Variable"])
        except (KeyError, TypeError):
            return rule.get("IsPresent") is False
        if "IsPresent" in rule:
            return rule["IsPresent"] is True
        if "NumericEquals" in rule:
            return value == rule["NumericEquals"]
        if "NumericGreaterThanEquals" in rule:
            return value >= rule["NumericGreaterThanEquals"]
        raise AssertionError(f"comparison not played: {rule}")

    states, name, data = definition["States"], definition["StartAt"], {"attempt": 1}
    runs = waited = 0
    for _ in range(100):
        state = states[name]
        kind = state["Type"]
        if kind in ("Succeed", "Fail"):
            return kind, runs, waited
        if kind == "Task":
            code = exit_codes[runs]
            runs += 1
            if code is None:
                data = {**data, "error": {"Error": "States.TaskFailed"}}
                name = state["Catch"][0]["Next"]
                continue
            data = {**data, state["ResultPath"].removeprefix("$."): {"Containers": [{"ExitCode": code}]}}
        elif kind == "Choice":
            name = next((c["Next"] for c in state["Choices"] if matches(c, data)), state["Default"])
            continue
        elif kind == "Wait":
            waited += state["Seconds"]
        elif kind == "Pass":
            (key,) = state["Parameters"]
            expression = state["Parameters"][key]
            (argument,) = re.fullmatch(r"States\.MathAdd\((\$\.\w+), 1\)", expression).groups()
            data = {key.removesuffix(".$"): path(data, argument) + 1}
        name = state["Next"]
    raise AssertionError("the state machine did not stop")


@pytest.mark.parametrize(
    ("exit_codes", "outcome", "runs"),
    [
        ([0], "Succeed", 1),  # a normal day, or a closed market
        ([1, 1, 0], "Succeed", 3),  # market data published late: the third run sends the issue
        ([None, 0], "Succeed", 2),  # the task could not start
        ([1, 1, 1, 1, 0], "Fail", 4),  # still failing after four runs: give up, the alarm has fired
    ],
)
def test_a_failed_daily_run_is_run_again_after_a_pause(resources, exit_codes, outcome, runs):
    definition = resources["DailyStateMachine"]["Properties"]["Definition"]
    final, ran, waited = _run_state_machine(definition, exit_codes)
    assert (final, ran) == (outcome, runs)
    assert waited >= 600 * (ran - 1)  # time for the provider to publish, not a tight loop


def test_bounces_and_complaints_reach_the_webhook(resources):
    destination = resources["MailEventDestination"]["Properties"]["EventDestination"]
    assert sorted(destination["MatchingEventTypes"]) == ["bounce", "complaint"]
    assert destination["SnsDestination"]["TopicARN"] == {"Ref": "MailEventsTopic"}
    subscription = resources["MailEventsWebhookSubscription"]["Properties"]
    assert subscription["Protocol"] == "https"
    assert subscription["Endpoint"] == {"Fn::Sub": "https://${DomainName}/webhooks/ses/"}
    # The webhook accepts only the topics it is told about: without this, it would refuse every event.
    environment = {e["Name"]: e["Value"] for e in container(resources, "WebTaskDefinition")["Environment"]}
    assert environment["SES_EVENTS_TOPIC_ARNS"] == {"Ref": "MailEventsTopic"}


def test_alarm_watches_the_metric_the_run_emits(resources):
    alarm = resources["RunFailedAlarm"]["Properties"]
    assert alarm["MetricName"] in METRICS
    assert alarm["Namespace"] == "Walter"
    assert alarm["Dimensions"] == [{"Name": "Stage", "Value": {"Ref": "Stage"}}]
    assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}]


def test_each_task_has_its_own_role_without_wildcards(resources):
    roles = {
        container_task: resources[container_task]["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
        for container_task in ("WebTaskDefinition", "DailyTaskDefinition")
    }
    assert len(set(roles.values())) == 2
    for role in [*roles.values(), "TaskExecutionRole", "SchedulerRole", "DailyStateMachineRole"]:
        for policy in resources[role]["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                assert statement["Resource"] != "*", f"{role}: {statement['Action']}"
                assert "*" not in json.dumps(statement["Action"]), f"{role}: {statement['Action']}"
    web_actions = json.dumps(resources["WebTaskRole"]["Properties"]["Policies"])
    assert "dynamodb:PutItem" not in web_actions and "s3:PutObject" not in web_actions


def test_secrets_come_from_secrets_manager_and_every_variable_is_documented(resources):
    documented = (ROOT / ".env.example").read_text()
    settings_text = (ROOT / "walter_site" / "settings.py").read_text()
    for task in ("WebTaskDefinition", "DailyTaskDefinition"):
        definition = container(resources, task)
        names = {e["Name"] for e in definition["Environment"]}
        assert {"WALTER_ENV", "AWS_SECRETS_MANAGER_SECRET_ID", "ALLOWED_HOSTS", "DATABASE_URL"} <= names
        assert "SECRET_KEY" not in names  # only ever from the secret
        for name in names | {s["Name"] for s in definition["Secrets"]}:
            assert re.search(rf"^# {name}=", documented, re.M), f"{name} is not in .env.example"
            assert f'"{name}"' in settings_text or name.startswith("GUNICORN_"), name


# --- Dockerfile, docker-compose and the task definitions agree ------------------------------------------------------


def test_dockerfile_essentials():
    instructions = dockerfile_instructions()
    froms = [args for op, args in instructions if op == "FROM"]
    assert len(froms) >= 2 and froms[-1].startswith("python:3.11-slim")  # multi-stage, slim runtime
    final_stage = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    users = [args for op, args in final_stage if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(op == "HEALTHCHECK" and "/healthz" in args and "curl" not in args for op, args in final_stage)
    assert any(op == "RUN" and "collectstatic" in args for op, args in final_stage)


def docker_cmd() -> list[str]:
    return json.loads([args for op, args in dockerfile_instructions() if op == "CMD"][-1])


def docker_healthcheck() -> list[str]:
    args = [args for op, args in dockerfile_instructions() if op == "HEALTHCHECK"][-1]
    return json.loads(args.split("CMD", 1)[1].strip())


def test_web_command_is_the_same_everywhere(resources, compose):
    assert docker_cmd()[0] == "gunicorn"
    assert compose["services"]["web"]["command"] == docker_cmd()
    assert container(resources, "WebTaskDefinition")["Command"] == docker_cmd()


def test_daily_command_is_the_same_everywhere(resources, compose):
    daily = container(resources, "DailyTaskDefinition")["Command"]
    scheduler = compose["services"]["scheduler"]["command"]
    assert scheduler[:3] == ["python", "-m", "walter_site.scheduler"]
    assert scheduler[3:] == daily


def test_health_check_is_the_same_everywhere(resources, compose):
    assert docker_healthcheck()[0] == "python"
    assert compose["services"]["web"]["healthcheck"]["test"] == ["CMD", *docker_healthcheck()]
    assert container(resources, "WebTaskDefinition")["HealthCheck"]["Command"] == ["CMD", *docker_healthcheck()]
    assert resources["WebTargetGroup"]["Properties"]["HealthCheckPath"] in ("/healthz", "/readyz")


def test_compose_has_the_local_stack(compose):
    assert {"web", "scheduler", "db", "redis"} <= set(compose["services"])
    assert compose["services"]["web"]["environment"]["DATABASE_URL"].startswith("postgres://")
    assert compose["services"]["web"]["environment"]["CACHE_URL"].startswith("redis://")


def test_gunicorn_settings_come_from_the_environment(monkeypatch):
    import importlib

    import walter_site.gunicorn_conf as conf

    monkeypatch.setenv("GUNICORN_WORKERS", "5")
    monkeypatch.setenv("GUNICORN_THREADS", "3")
    monkeypatch.setenv("GUNICORN_TIMEOUT", "90")
    importlib.reload(conf)
    assert (conf.workers, conf.threads, conf.timeout) == (5, 3, 90)


def test_gunicorn_hides_the_preloaded_app_from_the_garbage_collector():
    import gc

    import walter_site.gunicorn_conf as conf

    gc.unfreeze()
    try:
        conf.when_ready(server=None)
        assert gc.get_freeze_count() > 1000  # Django and the app, loaded by this test process
    finally:
        gc.unfreeze()


# --- the local scheduler ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-20T07:59:00-05:00", "2026-11-20T08:00:00-05:00"),  # Friday before eight: today
        ("2026-11-20T08:00:00-05:00", "2026-11-23T08:00:00-05:00"),  # Friday at eight: Monday
        ("2026-11-21T12:00:00-05:00", "2026-11-23T08:00:00-05:00"),  # Saturday: Monday
        ("2026-03-06T14:00:00+00:00", "2026-03-09T08:00:00-04:00"),  # across the switch to daylight time
    ],
)
def test_scheduler_next_run(now, expected):
    when = next_run(dt.datetime.fromisoformat(now), at=dt.time(8, 0), zone=NEW_YORK)
    assert when == dt.datetime.fromisoformat(expected)
    assert when.utcoffset() == dt.datetime.fromisoformat(expected).utcoffset()


def test_every_dotted_path_the_stack_configures_imports():
    from django.utils.module_loading import import_string

    text = TEMPLATE.read_text() + (ROOT / ".env.example").read_text() + (ROOT / "README.md").read_text()
    paths = set(re.findall(r"\b((?:anymail|storages|markets|newsletters)\.[a-z_.]+\.[A-Z]\w+)", text))
    assert "anymail.backends.amazon_ses.EmailBackend" in paths
    for path in sorted(paths):
        import_string(path)  # a typo here would only show on the first production run
