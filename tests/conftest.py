"""Shared fixtures: every test writes its outbox, archive and locks under its own temporary folder."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.files.storage import storages
from hypothesis import settings as hypothesis_settings

# Locally the property tests try new examples on every run; CI (which sets CI=true) replays a fixed set, so that a
# landing never hangs on a draw no one has seen before. Whatever they find locally becomes a test of its own.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    hypothesis_settings.load_profile("ci")

# A Friday session with a full demo history behind it.
TRADING_DAY = dt.date(2026, 11, 20)


@pytest.fixture(autouse=True)
def isolated_var(settings, tmp_path: Path) -> Path:
    var = tmp_path / "var"
    var.mkdir()
    settings.VAR_DIR = var
    settings.EMAIL_FILE_PATH = str(var / "outbox")
    # pytest-django swaps in the locmem backend; the embedded default writes .eml files, so test that.
    settings.EMAIL_BACKEND = "newsletters.email_backends.EmlFileBackend"
    # Pacing is tested on its own with a virtual clock; elsewhere nothing should wait in real time.
    settings.SES_MAX_SEND_RATE = 0
    settings.STORAGES = {
        **settings.STORAGES,
        "archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(var / "archive"), "allow_overwrite": True},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # storages caches backends by alias; start each test from the settings above.
    storages._storages = {}
    storages._backends = None
    yield var
    storages._storages = {}
    storages._backends = None


@pytest.fixture
def fresh_cache():
    """Rate limits and cached lookups from an earlier test must not leak into this one."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def outbox(isolated_var: Path) -> Path:
    return isolated_var / "outbox"


@pytest.fixture
def archive_dir(isolated_var: Path) -> Path:
    return isolated_var / "archive"


@pytest.fixture
def trading_day() -> dt.date:
    return TRADING_DAY


# -- Amazon Web Services, faked by moto: in-process, or moto_server on loopback -----------------------------


@pytest.fixture
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_server(aws_env, tmp_path):
    port = free_port()
    executable = Path(sys.executable).with_name("moto_server")
    log = (tmp_path / "moto.log").open("w")
    process = subprocess.Popen([str(executable), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


# -- the OpenAI-compatible model server, faked on loopback --------------------------------------------------------


@pytest.fixture
def openai_server():
    from django.core.cache import cache

    from tests.fakes.openai_server import FakeOpenAI

    fake = FakeOpenAI().start()
    cache.clear()
    yield fake
    fake.stop()
    cache.clear()


@pytest.fixture
def llm_settings(settings, openai_server):
    """The LLM analyst, pointed at the fake server, with a budget that never waits."""
    settings.NEWSLETTER_ANALYST = "newsletters.analysts.llm.LLMAnalyst"
    settings.LLM_BASE_URL = openai_server.url
    settings.LLM_API_KEY = "test"
    settings.LLM_MODEL = "fake-model"
    settings.LLM_REQUESTS_PER_MINUTE = 600_000
    settings.LLM_PARALLELISM = 4
    return settings
