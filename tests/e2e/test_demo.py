"""The tour that `make run` tells: every stage of the lifecycle happens on the real services,
as the newcomer reads it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.e2e.harness import CALLVAULT, Callvault


def test_the_lifecycle_tour_shows_every_stage_on_the_real_stack(callvault: Callvault) -> None:
    cv = callvault
    cv.env["CALLVAULT_RETENTION_TENANTS"] = "demo-short=PT1M"
    cv.migrate()  # the demo tenant's policy is in force before the worker starts
    cv.start_worker()
    done = subprocess.run(
        [CALLVAULT, "demo", "--lifecycle", "--due-in", "8"],
        env=cv.env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert len(re.findall(r"stored +tour-\S+ +tenant default", out)) == 4
    assert len(re.findall(r"stored +tour-\S+ +tenant demo-short", out)) == 3
    assert "dead letter: error_code invalid_json" in out
    assert re.search(r"answer: completed, 1 recording\(s\) exported, ZIP of \d+ bytes", out)
    assert re.search(r"answer: completed, 1 recording\(s\) erased, 1 object version", out)
    assert "signature valid" in out
    assert len(re.findall(r"purged +tour-\S+-demo-short-\d +reason retention", out)) == 2
    assert re.search(r"demo-short-1 is past due and still stored: held by tour-\w+-hold", out)
    saved = re.search(r"check it: callvault verify-certificate (\S+)", out)
    assert saved is not None
    certificate = json.loads(Path(saved.group(1)).read_text())
    checked = subprocess.run(
        [CALLVAULT, "verify-certificate", saved.group(1)],
        env=cv.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert certificate["type"] == "erasure"
    Path(saved.group(1)).unlink()


def test_the_tour_refuses_a_worker_policy_without_the_demo_tenant(callvault: Callvault) -> None:
    done = subprocess.run(
        [CALLVAULT, "demo", "--lifecycle"],
        env=callvault.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3  # a setting is missing or wrong
    assert "CALLVAULT_RETENTION_TENANTS=demo-short=PT1M" in done.stderr
    assert "Traceback" not in done.stderr
