"""Every management command of the project answers --help."""

from __future__ import annotations

import pytest
from django.core.management import call_command, get_commands

PROJECT_APPS = ("markets", "subscriptions", "newsletters", "walter_site")
PROJECT_COMMANDS = sorted(name for name, app in get_commands().items() if app in PROJECT_APPS)


def test_the_project_has_its_commands():
    assert {"run_daily", "seed_demo", "demo_report"} <= set(PROJECT_COMMANDS)


@pytest.mark.parametrize("name", PROJECT_COMMANDS)
def test_help_runs(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        call_command(name, "--help")
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
