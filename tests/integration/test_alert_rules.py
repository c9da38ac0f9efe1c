"""The Prometheus alert rules are valid and behave as their unit tests say (promtool, from
Debian's prometheus package, which deploy/stack.sh installs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "callvault.rules.test.yml"
ALERTS = {
    "CallvaultPurgeLagHigh",
    "CallvaultOverdueRecordings",
    "CallvaultOldestOverdueHigh",
    "CallvaultDsrDeadlineNear",
    "CallvaultDsrDeadlineMissed",
    "CallvaultDeadLetters",
    "CallvaultWorkerDown",
    "CallvaultNoWorkers",
    "CallvaultConsumerLagGrowing",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not installed (Debian package 'prometheus'; `make up` installs it)"
        )
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT, timeout=120)


def rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yml"))


def test_rule_files_are_valid(promtool: str) -> None:
    files = rule_files()
    assert files, "no rule files under deploy/prometheus/rules"
    done = run(promtool, "check", "rules", *map(str, files))
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    done = run(promtool, "test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_is_unit_tested_and_documented() -> None:
    rules = [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert {r["alert"] for r in rules} == ALERTS
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == ALERTS, f"alerts never seen firing in a unit test: {ALERTS - tested}"
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_unit_test_file_is_not_loaded_as_a_rule_file() -> None:
    """Prometheus loads every rules/*.yml; a promtool test file there would break its reload."""
    assert RULE_TESTS.parent != RULES
    for path in rule_files():
        assert "tests" not in yaml.safe_load(path.read_text(encoding="utf-8")), path.name
