"""Production settings: refuse to start half-configured, read secrets from Secrets Manager, pass check --deploy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from django.core.exceptions import ImproperlyConfigured
from moto import mock_aws
from moto.server import ThreadedMotoServer

from walter_site.secrets import secrets_into_environ

ROOT = Path(__file__).resolve().parent.parent
STRONG_KEY = "k7Qz0v9Xb2Lw8Rt5Yp3Nc6Md1Fg4Hj7Ks0Ad9Sf2Gh5Jk8Lz3Xc6Vb1Nm4Qw7Er0Ty"


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A clean environment: only what a production task would get, nothing from the developer's shell."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "WALTER_VAR_DIR": str(tmp_path / "var"),
        "WALTER_ENV": "production",
        "SECRET_KEY": STRONG_KEY,
        "ALLOWED_HOSTS": "walter.example.com",
        "DATABASE_URL": "postgres://walter@db.internal:5432/walter",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_check_deploy_reports_nothing_with_production_settings(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues (0 silenced)" in result.stdout


@pytest.mark.slow
def test_check_deploy_flags_the_local_defaults(tmp_path):
    env = production_env(tmp_path, WALTER_ENV="local", SECRET_KEY="short")
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # HSTS off locally


@pytest.mark.slow
@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"])
def test_production_refuses_to_start_without(tmp_path, missing):
    result = manage(production_env(tmp_path, **{missing: ""}), "check")
    assert result.returncode != 0
    assert f"WALTER_ENV=production needs {missing}" in result.stderr


@pytest.mark.slow
def test_local_defaults_need_no_environment_at_all(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WALTER_VAR_DIR": str(tmp_path / "var")}
    result = manage(env, "check")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_production_secrets_come_from_secrets_manager(tmp_path):
    """The secret supplies SECRET_KEY and DATABASE_URL; the task's environment has only the secret's id."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "secretsmanager",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_secret(
            Name="walter/prod/app",
            SecretString=json.dumps(
                {"SECRET_KEY": STRONG_KEY, "DATABASE_URL": "postgres://walter@db.internal:5432/walter"}
            ),
        )
        env = production_env(
            tmp_path,
            SECRET_KEY=None,
            DATABASE_URL=None,
            AWS_SECRETS_MANAGER_SECRET_ID="walter/prod/app",
            AWS_ENDPOINT_URL_SECRETS_MANAGER=endpoint,
            DATABASE_PASSWORD="from-the-database-secret",
        )
        code = (
            "from django.conf import settings; db = settings.DATABASES['default'];"
            "print(db['HOST'], db['PASSWORD'], len(settings.SECRET_KEY))"
        )
        result = manage(env, "shell", "-v", "0", "-c", code)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["db.internal", "from-the-database-secret", str(len(STRONG_KEY))]

        missing = manage({**env, "AWS_SECRETS_MANAGER_SECRET_ID": "walter/prod/nope"}, "check")
        assert missing.returncode != 0
        assert "cannot read the secret 'walter/prod/nope' from AWS Secrets Manager: ResourceNotFoundException" in (
            missing.stderr
        )
    finally:
        server.stop()


@mock_aws
def test_secret_is_merged_and_the_environment_wins():
    client = boto3.client("secretsmanager", region_name="us-east-1")
    client.create_secret(
        Name="walter/dev/app",
        SecretString=json.dumps({"SECRET_KEY": "from-secret", "POLYGON_API_KEY": "pk", "SES_MAX_SEND_RATE": 20}),
    )
    environ = {"SECRET_KEY": "from-environment"}
    added = secrets_into_environ("walter/dev/app", region="us-east-1", environ=environ)
    assert sorted(added) == ["POLYGON_API_KEY", "SES_MAX_SEND_RATE"]
    assert environ == {"SECRET_KEY": "from-environment", "POLYGON_API_KEY": "pk", "SES_MAX_SEND_RATE": "20"}


@mock_aws
@pytest.mark.parametrize("secret", ["not json", '["a", "list"]', '{"NESTED": {"a": 1}}'])
def test_a_secret_that_is_not_a_flat_json_object_is_a_clear_error(secret):
    client = boto3.client("secretsmanager", region_name="us-east-1")
    client.create_secret(Name="walter/dev/bad", SecretString=secret)
    with pytest.raises(ImproperlyConfigured, match="walter/dev/bad"):
        secrets_into_environ("walter/dev/bad", region="us-east-1", environ={})


def test_collectstatic_with_production_settings_writes_the_manifest_production_serves(tmp_path):
    static_root = tmp_path / "static"
    env = production_env(tmp_path, STATIC_ROOT=str(static_root), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((static_root / "staticfiles.json").read_text())
    hashed = manifest["paths"]["admin/css/base.css"]
    assert hashed != "admin/css/base.css" and (static_root / hashed).exists()
    assert (static_root / f"{hashed}.gz").exists()


def test_a_local_checkout_serves_static_files_without_collectstatic(client, settings):
    from walter_site import settings as local  # as loaded, before the test suite's own overrides

    # The local default storage needs no manifest, and whitenoise finds the files where they are.
    assert not local.PRODUCTION and local.WHITENOISE_USE_FINDERS
    assert local.STORAGES["staticfiles"]["BACKEND"] == "django.contrib.staticfiles.storage.StaticFilesStorage"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": local.STORAGES["staticfiles"]}
    assert client.get("/admin/login/").status_code == 200


@pytest.mark.parametrize(("rate", "connections"), [("14", 4), ("200", 40), ("1000", 64)])
def test_sending_connections_follow_the_send_rate(tmp_path, rate, connections):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WALTER_VAR_DIR": str(tmp_path / "var")}
    code = "from django.conf import settings; print(settings.SES_SEND_CONCURRENCY)"
    result = manage({**env, "SES_MAX_SEND_RATE": rate}, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) == connections


@pytest.mark.parametrize(("max_age", "reused"), [(None, True), ("0", False)])
def test_a_web_thread_keeps_its_database_connection_between_requests(tmp_path, max_age, reused):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WALTER_VAR_DIR": str(tmp_path / "var")}
    if max_age is not None:
        env["DATABASE_CONN_MAX_AGE"] = max_age
    code = (
        "from io import BytesIO; from django.core.handlers.wsgi import WSGIHandler; from django.db import connection\n"
        "app = WSGIHandler()\n"
        "def readyz():\n"
        "    environ = {'REQUEST_METHOD': 'GET', 'PATH_INFO': '/readyz', 'SERVER_NAME': 'localhost', "
        "'SERVER_PORT': '80', 'wsgi.input': BytesIO(), 'wsgi.url_scheme': 'http'}\n"
        "    body = app(environ, lambda status, headers: None)\n"
        "    b''.join(body)\n"
        "    used = connection.connection\n"
        "    body.close()\n"
        "    return used\n"
        "first, second = readyz(), readyz()\n"
        "print(first is not None and first is second)"
    )
    result = manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == str(reused)


def test_dotenv_sets_the_var_folder_and_importing_settings_creates_nothing(tmp_path):
    # A copy of the settings package beside its own .env, imported in a clean interpreter.
    shutil.copytree(Path(__file__).resolve().parent.parent / "walter_site", tmp_path / "walter_site")
    var = tmp_path / "elsewhere" / "var"
    (tmp_path / ".env").write_text(f"WALTER_VAR_DIR={var}\nAWS_DEFAULT_REGION=eu-west-1\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", "import walter_site.settings as s; print(s.VAR_DIR); print(s.AWS_REGION)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(var), "eu-west-1"]
    assert not var.exists() and not (tmp_path / "staticfiles").exists()


def test_every_setting_read_from_the_environment_is_in_env_example_with_a_comment():
    import re

    root = Path(__file__).resolve().parent.parent
    sources = "".join(
        (root / "walter_site" / name).read_text() for name in ("settings.py", "gunicorn_conf.py", "scheduler.py")
    )
    read = set(re.findall(r'env\.\w+\("([A-Z][A-Z0-9_]+)"', sources))
    read |= set(re.findall(r'os\.environ\.get\("([A-Z][A-Z0-9_]+)"', sources))
    example = (root / ".env.example").read_text()
    documented = {m.group(1): m.group(2) for m in re.finditer(r"^# ([A-Z][A-Z0-9_]+)=(.*)$", example, re.M)}
    assert len(read) > 100
    assert sorted(read - set(documented)) == [], "add these to .env.example, each with a one-line comment"
    uncommented = [name for name, rest in documented.items() if "#" not in rest]
    assert uncommented == [], "give each setting in .env.example a one-line comment"
    groups = re.findall(r"^# --- (.+)$", example, re.M)
    readme = (root / "README.md").read_text()
    for group in groups:
        assert f"### {group.split(' (')[0]}" in readme, f"the README's Configuration has no group {group!r}"
