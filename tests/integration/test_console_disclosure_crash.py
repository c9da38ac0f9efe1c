"""A disclosure is one transaction: a process killed between the steps a disclosure used to
take (the export's row, then the register entry) leaves neither - nor an audit entry; one
that lives leaves all three. Real PostgreSQL and object store, a real SIGKILL."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

from testbed.stack import ROOT, Instance
from tests.integration.test_port_contracts import recording
from workers.adapters.postgres import PostgresDatabase
from workers.bootstrap import bootstrap
from workers.settings import load_settings

# The console's own wiring, as `callvault serve` builds it; with "kill", the process dies
# (SIGKILL) as it writes the register entry - after the export's row, before the commit.
DISCLOSE = """
import os, signal, sys
from workers.adapters.postgres import console_repositories
from workers.app.console.disclosures import DisclosureRequest
from workers.app.console.model import Principal, Role
from workers.bootstrap import bootstrap
from workers.settings import load_settings

if sys.argv[1] == "kill":
    def die(self, disclosure):
        os.kill(os.getpid(), signal.SIGKILL)
    console_repositories.PostgresDisclosures.add = die
container = bootstrap(load_settings())
console = container.console
dpo = Principal("dpo", Role.DPO, "session", frozenset({"*"}))
request = DisclosureRequest("Telia", "telecom_provider", "Art. 28", "INC-9", (sys.argv[2],))
console.disclosures.disclose(dpo, request)
"""


def run(instance: Instance, how: str, recording_id: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", DISCLOSE, how, recording_id],
        env=instance.env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode in (0, -9), done.stderr.decode()[-2000:]
    return done.returncode


def written(db: PostgresDatabase) -> dict[str, int]:
    with db.connection() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM exports WHERE request_id LIKE 'disclosure:%') AS exports,"
            " (SELECT count(*) FROM disclosures) AS register,"
            " (SELECT count(*) FROM audit_log WHERE action = 'disclosure') AS audit"
        ).fetchone()
    assert row is not None
    return {k: int(v) for k, v in row.items()}


def test_a_disclosure_killed_half_way_leaves_nothing_and_one_that_lives_leaves_everything(
    instance: Instance,
) -> None:
    migrated = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "callvault"), "migrate"],
        env=instance.migration_env,
        capture_output=True,
        timeout=300,
    )
    assert migrated.returncode == 0, migrated.stderr
    container = bootstrap(load_settings(**instance.settings_kwargs()))
    db = container.database
    try:
        stored = replace(recording("crash-1"), tenant="shop-lt")
        with db.unit_of_work() as uow:
            uow.recordings.add(stored, frozenset())
            uow.commit()
        assert run(instance, "kill", stored.recording_id) == -9
        assert written(db) == {"exports": 0, "register": 0, "audit": 0}
        assert run(instance, "live", stored.recording_id) == 0
        assert written(db) == {"exports": 1, "register": 1, "audit": 1}
    finally:
        container.close()
