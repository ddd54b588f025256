"""Shared fixtures: every test writes its outbox, archive and locks under its own temporary folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.core.files.storage import storages

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
            "OPTIONS": {"location": str(var / "archive")},
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
def outbox(isolated_var: Path) -> Path:
    return isolated_var / "outbox"


@pytest.fixture
def archive_dir(isolated_var: Path) -> Path:
    return isolated_var / "archive"


@pytest.fixture
def trading_day() -> dt.date:
    return TRADING_DAY
