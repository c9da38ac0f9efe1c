"""A worker started while its database is away (restarting after a crash, say) says so and
exits with the "unreachable" code for its supervisor to try again - not as a bug."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.unit.conftest import settings_values
from workers.entrypoints.cli import cli

EXIT_UNREACHABLE = 4


def test_a_worker_started_while_the_database_is_away_exits_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nothing_listens = "postgresql://callvault:callvault@127.0.0.1:1/callvault"
    for name, value in settings_values(database_url=nothing_listens).items():
        monkeypatch.setenv(f"CALLVAULT_{name.upper()}", str(value))
    monkeypatch.setenv("CALLVAULT_LOG_FORMAT", "console")
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert "database unavailable" in result.output
    assert "internal error" not in result.output
