"""The chaos run's summary: a table for the terminal and the same figures as JSON under
``bench/results/chaos-<profile>-<time>.json``."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testbed.stack import ROOT
from tests.chaos.checks import Verdicts
from tests.chaos.faults import Injected
from tests.chaos.supervisor import EX_TEMPFAIL, Supervisor
from tests.chaos.traffic import Ledger

RESULTS = ROOT / "bench" / "results"


def summary(
    profile: str,
    verdicts: Verdicts,
    ledger: Ledger,
    faults: list[Injected],
    supervisor: Supervisor,
    extra: dict[str, Any],
) -> dict[str, Any]:
    exits = supervisor.exits
    exit_codes = Counter(str(e.code) for e in exits)
    crashes = supervisor.crashes()
    bugs = supervisor.bugs_logged()
    return {
        "profile": profile,
        "finished_at": datetime.now(UTC).isoformat(),
        "faults_injected": [f.as_dict() for f in faults],
        "traffic": {
            "calls": verdicts.calls_sent,
            "calls_with_notice": verdicts.calls_with_notice,
            "redelivered_events": ledger.redelivered,
            "second_events_for_a_call": ledger.second_events,
            "holds": len(ledger.holds),
            "hold_renewals": ledger.renewals,
            "requests": Counter(r.type for r in ledger.requests.values()),
            "unsent": ledger.unsent,
        },
        "events": verdicts.events,
        "duplicate_deliveries_by_id": verdicts.duplicate_deliveries,
        "recordings": {
            "stored": verdicts.recordings_stored,
            "purged": dict(verdicts.recordings_purged),
            "held_at_end": verdicts.held_at_end,
            "purging_when_held": verdicts.purging_when_held,
            "purged_between_renewed_holds": verdicts.purged_between_holds,
        },
        "retention_due_announcements_per_recording": {
            str(k): n for k, n in sorted(verdicts.due_events_per_recording.items())
        },
        "lag_after_recovery_seconds": {
            "worst": round(verdicts.worst_lag, 1),
            "slowest": verdicts.slowest,
            "median": round(sorted(verdicts.lags)[len(verdicts.lags) // 2], 1)
            if verdicts.lags
            else None,
            "purges": len(verdicts.lags),
        },
        "workers": {
            "exits_by_code": dict(exit_codes),
            "exits_after_retry_budget": exit_codes.get(str(EX_TEMPFAIL), 0),
            "restarts": len(exits),
            "stopped_from_outside": len(supervisor.stopped_outside()),
        },
        "failures": verdicts.failures()
        | {"worker_crashes": len(crashes), "bugs_logged": sum(bugs.values())},
        "details": {
            "lost": dict(verdicts.lost),
            "duplicated": dict(verdicts.duplicated),
            "held_purged": verdicts.held_purged,
            "past_due": verdicts.past_due,
            "late": verdicts.late,
            "held_unreadable": verdicts.held_unreadable,
            "held_flag_wrong": verdicts.held_flag_wrong,
            "unanswered": verdicts.unanswered,
            "erasures_stuck": verdicts.erasures_stuck,
            "deadletters": dict(verdicts.deadletters),
            "holds_unprocessed": verdicts.holds_unprocessed,
            "backlog": verdicts.backlog,
            "worker_crashes": [
                f"worker {e.slot} exit {e.code} at {e.at:%H:%M:%S}" for e in crashes
            ],
            "bugs_logged": bugs,
        },
        **extra,
    }


def table(report: dict[str, Any]) -> str:
    failures = report["failures"]
    faults = ", ".join(
        f"{f['kind']}" + (f" {f['outage_seconds']:.0f}s" if f.get("outage_seconds") else "")
        for f in report["faults_injected"]
    )
    events = report["events"]
    workers = report["workers"]
    recordings = report["recordings"]
    lag = report["lag_after_recovery_seconds"]
    traffic = report["traffic"]
    lines = [
        ("profile", report["profile"]),
        ("faults injected", f"{len(report['faults_injected'])}: {faults}"),
        (
            "traffic",
            f"{traffic['calls']} calls, {traffic['holds']} holds "
            f"({traffic['hold_renewals']} renewals), "
            f"{sum(traffic['requests'].values())} requests, "
            f"{traffic['redelivered_events'] + traffic['second_events_for_a_call']} repeats",
        ),
        ("events out", ", ".join(f"{k} {n}" for k, n in events.items())),
        (
            "repeats by CloudEvent id",
            ", ".join(f"{k} {n}" for k, n in report["duplicate_deliveries_by_id"].items() if n)
            or "0",
        ),
        (
            "recordings",
            f"{recordings['stored']} stored, purged {recordings['purged']}, "
            f"{recordings['held_at_end']} held at end",
        ),
        ("lost", failures["lost"]),
        ("duplicated (effects)", failures["duplicated"]),
        ("held purged", failures["held_purged"]),
        ("past due", failures["past_due"]),
        ("late (> 90 s)", failures["late"]),
        ("worst lag after recovery", f"{lag['worst']} s (median {lag['median']} s)"),
        ("requests unanswered", failures["unanswered"]),
        ("erasures stuck", failures["erasures_stuck"]),
        (
            "held unreadable / flag wrong",
            f"{failures['held_unreadable']} / {failures['held_flag_wrong']}",
        ),
        ("dead letters", failures["deadletters"]),
        ("retention.due per recording", report["retention_due_announcements_per_recording"]),
        ("vault leftovers (repaired)", report.get("vault_leftovers")),
        ("vault after repair", report.get("vault_after_repair")),
        ("landing copies left", report.get("landing_left")),
        ("audit chain", report.get("audit")),
        ("reconcile after repair", report.get("reconcile_after_repair")),
        (
            "worker crashes / bugs logged",
            f"{failures['worker_crashes']} / {failures['bugs_logged']}",
        ),
        (
            "worker exits",
            f"{workers['restarts']} ({workers['exits_after_retry_budget']} after the retry "
            f"budget, {workers['stopped_from_outside']} stopped from outside; "
            f"by code {workers['exits_by_code']})",
        ),
    ]
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in lines)


def run_dir(profile: str) -> Path:
    """Where this run's worker logs and evidence go (``<summary>.logs/``), kept after the run."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"chaos-{profile}-{stamp}.logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write(report: dict[str, Any], logs: Path) -> Path:
    path = logs.with_suffix(".json")
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path
