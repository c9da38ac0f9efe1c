"""The alert rules as a Prometheus loads them: deploy/prometheus/render-rules.sh fills in the
workers' job label and the runbooks' URL (the templates' @JOB@ and @RUNBOOK_URL@)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .stack import ROOT

RULE_SOURCES = ROOT / "deploy" / "prometheus" / "rules"
RENDER_RULES = ROOT / "deploy" / "prometheus" / "render-rules.sh"
RUNBOOK_URL = "https://docs.example/callvault/runbooks.md"  # what the rules' tests expect


def render_rules(
    dest: Path, *, job: str = "callvault", runbook_url: str = RUNBOOK_URL
) -> list[Path]:
    """Render every rule file into ``dest``; returns the rendered files."""
    env = {**os.environ, "CALLVAULT_PROMETHEUS_JOB": job, "CALLVAULT_RUNBOOK_URL": runbook_url}
    subprocess.run(
        ["sh", str(RENDER_RULES), str(RULE_SOURCES), str(dest)],
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return sorted(dest.glob("*.yml"))
