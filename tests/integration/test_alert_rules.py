"""The Prometheus alert rules are valid and behave as their unit tests say (promtool, from
Debian's prometheus package, which deploy/stack.sh installs), and each one links its runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "callvault.rules.test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
ALERTS = {
    "CallvaultPurgeLagHigh",
    "CallvaultRetentionOverdue",
    "CallvaultOldestOverdueHigh",
    "CallvaultDsrDeadlineNear",
    "CallvaultDsrDeadlineMissed",
    "CallvaultDeadLetters",
    "CallvaultDeadLetterRateRising",
    "CallvaultOutboxBacklog",
    "CallvaultReconcileFindings",
    "CallvaultWorkerDown",
    "CallvaultWorkerRestarting",
    "CallvaultNoWorkers",
    "CallvaultConsumerLagGrowing",
    "CallvaultProviderCopiesKept",
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


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces to '-'."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return anchors


def test_every_alert_is_unit_tested_and_documented() -> None:
    rules = alert_rules()
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
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]


def test_every_runbook_url_points_at_a_section_of_the_runbooks() -> None:
    anchors = github_anchors(RUNBOOKS.read_text(encoding="utf-8"))
    for rule in alert_rules():
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "docs/runbooks.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"docs/runbooks.md has no section {rule['alert']}"


def test_unit_test_file_is_not_loaded_as_a_rule_file() -> None:
    """Prometheus loads every rules/*.yml; a promtool test file there would break its reload."""
    assert RULE_TESTS.parent != RULES
    for path in rule_files():
        assert "tests" not in yaml.safe_load(path.read_text(encoding="utf-8")), path.name
