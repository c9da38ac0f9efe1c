"""The Prometheus alert rules, rendered as every Prometheus gets them (render-rules.sh), are
valid and behave as their unit tests say (promtool, from Debian's prometheus package, which
deploy/stack.sh installs); each one links its runbook by an absolute URL, and selects the
workers by the job label it is given, never a hard-coded one."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.alerting import RULE_SOURCES, RUNBOOK_URL, render_rules

ROOT = Path(__file__).resolve().parents[2]
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
    "CallvaultAuditCheckpointStale",
    "CallvaultFollowUpsFailed",
    "CallvaultProviderCopiesKept",
    "CallvaultPartitionDefaultRows",
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


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rules rendered into ``rules/`` and the unit tests beside them in ``tests/`` (they
    name ``../rules/callvault.rules.yml``), as in the repository."""
    root = tmp_path_factory.mktemp("alerting")
    render_rules(root / "rules")
    (root / "tests").mkdir()
    shutil.copy(RULE_TESTS, root / "tests" / RULE_TESTS.name)
    return root


def rule_files() -> list[Path]:
    return sorted(RULE_SOURCES.glob("*.yml"))


def test_rule_files_are_valid(promtool: str, rendered: Path) -> None:
    files = sorted((rendered / "rules").glob("*.yml"))
    assert [f.name for f in files] == [f.name for f in rule_files()], "no rule files rendered"
    done = run(promtool, "check", "rules", *map(str, files))
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_pass_their_unit_tests(promtool: str, rendered: Path) -> None:
    done = run(promtool, "test", "rules", str(rendered / "tests" / RULE_TESTS.name))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_the_job_and_the_runbook_url_are_parameters(tmp_path: Path) -> None:
    sources = "".join(p.read_text(encoding="utf-8") for p in rule_files())
    assert 'job="callvault"' not in sources
    assert "@JOB@" in sources
    (rules,) = render_rules(
        tmp_path, job="shop-callvault-worker", runbook_url="https://wiki.shop.example/cv.md"
    )
    text = rules.read_text(encoding="utf-8")
    assert "@" not in text.replace("@example", "")
    assert 'up{job="shop-callvault-worker"}' in text
    for rule in yaml.safe_load(text)["groups"][0]["rules"]:
        assert (
            rule["annotations"]["runbook_url"]
            == f"https://wiki.shop.example/cv.md#{rule['alert'].lower()}"
        )


@pytest.mark.parametrize(
    ("job", "url"),
    [
        ("callvault", "docs/runbooks.md"),  # relative: not a link anyone can follow
        ("callvault", "https://x.example/a b"),
        ("callvault", "https://x.example/a|b"),
        ('a"b', "https://x.example/runbooks.md"),
    ],
)
def test_render_refuses_what_would_break_the_rules(tmp_path: Path, job: str, url: str) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        render_rules(tmp_path, job=job, runbook_url=url)


def alert_rules(directory: Path = RULE_SOURCES) -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted(directory.glob("*.yml"))
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


def test_every_runbook_url_points_at_a_section_of_the_runbooks(rendered: Path) -> None:
    anchors = github_anchors(RUNBOOKS.read_text(encoding="utf-8"))
    for rule in alert_rules(rendered / "rules"):
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == RUNBOOK_URL, rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"docs/runbooks.md has no section {rule['alert']}"


def test_unit_test_file_is_not_loaded_as_a_rule_file() -> None:
    """Prometheus loads every rules/*.yml; a promtool test file there would break its reload."""
    assert RULE_TESTS.parent != RULE_SOURCES
    for path in rule_files():
        assert "tests" not in yaml.safe_load(path.read_text(encoding="utf-8")), path.name
