"""Chaos: two supervised workers under steady mixed traffic while the broker, the database and
the object store fail and workers are killed; afterwards every promise is checked from outside.

It restarts shared services, so it runs alone or last (``make test`` runs it in its own pytest
invocation after the others; ``make chaos`` runs the long profile). The summary is printed and
written to ``bench/results/chaos-<profile>-<time>.json``."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from testbed.stack import Instance
from tests.chaos import checks, report
from tests.chaos.faults import Injector, Stack
from tests.chaos.profiles import Profile, chosen
from tests.chaos.supervisor import Supervisor
from tests.chaos.traffic import Traffic
from tests.e2e.harness import Callvault
from workers.domain.model import object_key_for

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]


def test_promises_hold_under_faults(
    stack: dict[str, str], instance: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = chosen()
    instance.env.update(
        {
            "CALLVAULT_RETENTION": profile.retention,
            "CALLVAULT_RETRY_BUDGET": profile.retry_budget,
            "CALLVAULT_DB_TIMEOUT": profile.db_timeout,
            "CALLVAULT_SCHEDULER_INTERVAL": "PT1S",
            "CALLVAULT_METRICS_INTERVAL": "PT2S",
            "CALLVAULT_RECONCILE_INTERVAL": "PT1H",
            "CALLVAULT_TOPIC_PARTITIONS": "4",
        }
    )
    logs = report.run_dir(profile.name)
    cv = Callvault(instance, logs)
    cv.migrate()  # applies the short retention policy before any worker starts
    services = Stack(
        Path(stack["CALLVAULT_STACK_ROOT"]),
        stack["CALLVAULT_PG_ADMIN_URL"],
        stack["CALLVAULT_KAFKA_BOOTSTRAP"],
    )
    supervisor = Supervisor(cv.env, logs)
    traffic = Traffic(instance, cv.settings, profile, seed=int(time.time()))
    try:
        supervisor.start()
        supervisor.wait_ready(180)
        injector = Injector(services, supervisor)
        traffic.start()
        for fault in profile.faults:
            _wait_until(lambda f=fault: traffic.elapsed() >= f.at)
            injector.inject(fault)
        traffic.join()
        settled_after = _settle(instance, traffic, profile)
        outcome = _examine(cv, instance, traffic, injector, supervisor, profile, settled_after)
        checks.dump_evidence(instance, outcome.pop("outputs"), logs)
    finally:
        traffic.stop()
        supervisor.stop()
        services.restore()
        shutil.rmtree(traffic.files, ignore_errors=True)
    with capsys.disabled():
        print(f"\n\ncallvault chaos run ({profile.name}), worker logs in {logs}")
        print(report.table(outcome))
        print(f"  written to {report.write(outcome, logs)}\n")
    failures = {k: n for k, n in outcome["failures"].items() if n}
    assert not failures, f"broken promises: {failures}; details: {outcome['details']}"
    assert outcome["audit"] == "intact"
    assert outcome["reconcile_after_repair"] == "clean"
    assert outcome["vault_after_repair"] == "one version per stored recording"
    assert outcome["landing_left"] == 0


def _wait_until(check: Any, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def _settle(instance: Instance, traffic: Traffic, profile: Profile) -> float | None:
    """Seconds until nothing was left to do after traffic stopped (``None``: never)."""
    began = time.monotonic()
    while time.monotonic() - began < profile.settle_seconds:
        try:
            snap = checks.snapshot(instance)
        except Exception:  # noqa: BLE001 - the database may still be recovering: ask again
            snap = None
        if snap is not None and checks.settled(snap, traffic.ledger, datetime.now(UTC)):
            return time.monotonic() - began
        time.sleep(2)
    return None


def _examine(
    cv: Callvault,
    instance: Instance,
    traffic: Traffic,
    injector: Injector,
    supervisor: Supervisor,
    profile: Profile,
    settled_after: float | None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    snap = checks.snapshot(instance)
    outputs = checks.read_outputs(cv.settings, instance)
    landing = checks.landing_left(cv.settings)
    supervisor.stop()  # reconcile and repair with no worker running
    _, before = checks.cli(cv.env, "reconcile", "--json", "--orphan-grace", "PT0S")
    _, repaired = checks.cli(
        cv.env, "reconcile", "--repair", "--yes", "--json", "--orphan-grace", "PT0S"
    )
    code, after = checks.cli(cv.env, "reconcile", "--json", "--orphan-grace", "PT0S")
    audit_code, audit = checks.cli(cv.env, "audit", "verify", "--json")
    verdicts = checks.Judge(
        traffic.ledger, snap, outputs, injector.done, profile.purge_within_seconds, now
    ).judge()
    extra = {
        "settled_after_seconds": None if settled_after is None else round(settled_after, 1),
        "vault_leftovers": len(before.get("orphan_objects", []))
        if isinstance(before, dict)
        else before,
        "reconcile_before_repair": before,
        "repaired": repaired.get("repaired") if isinstance(repaired, dict) else repaired,
        "reconcile_after_repair": "clean" if code == 0 else after,
        "audit": "intact" if audit_code == 0 and audit.get("intact") else audit,
        "audit_entries": audit.get("entries") if isinstance(audit, dict) else None,
        "vault_after_repair": _vault_after_repair(cv, snap),
        "landing_left": landing,
    }
    summary = report.summary(
        profile.name, verdicts, traffic.ledger, injector.done, supervisor, extra
    )
    return summary | {"outputs": outputs}


def _vault_after_repair(cv: Callvault, snap: checks.Snapshot) -> str | dict[str, list[str]]:
    versions = checks.vault_versions(cv.settings)
    wrong: dict[str, list[str]] = {"extra": [], "missing": [], "left_after_purge": []}
    expected = set()
    for row in snap.rows.values():
        key = object_key_for(row.recording_id)
        expected.add(key)
        found = versions.get(key, [])
        if row.status == "purged" and found:
            wrong["left_after_purge"].append(key)
        elif row.status != "purged" and found != [row.object_version]:
            (wrong["missing"] if row.object_version not in found else wrong["extra"]).append(key)
    wrong["extra"] += sorted(set(versions) - expected)
    return "one version per stored recording" if not any(wrong.values()) else wrong
