"""The integration examples of docs/integration.md run against the stack as written: the
telephony producer stores a call, the DSR portal gets an export it can check and an erasure
whose certificate it verifies - each given only the settings its side holds (Kafka, and the
landing bucket for the producer; never callvault's keys or database)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from testbed.stack import ROOT
from tests.e2e.harness import CALLVAULT, Callvault, make_wav

EXAMPLES = ROOT / "docs" / "examples"
PRODUCER_SETTINGS = (
    "CALLVAULT_KAFKA_BOOTSTRAP",
    "CALLVAULT_S3_ENDPOINT",
    "CALLVAULT_S3_ACCESS_KEY",
    "CALLVAULT_S3_SECRET_KEY",
    "CALLVAULT_S3_REGION",
    "CALLVAULT_LANDING_BUCKET",
    "CALLVAULT_TOPIC_CALLS_ENDED",
)
PORTAL_SETTINGS = (
    "CALLVAULT_KAFKA_BOOTSTRAP",
    "CALLVAULT_TOPIC_DSR_REQUESTS",
    "CALLVAULT_TOPIC_DSR_RESULTS",
)
# a Python in which callvault cannot be imported: the examples must not need it
WITHOUT_CALLVAULT = (
    "import runpy, sys; sys.modules['workers'] = None; sys.argv = sys.argv[1:]; "
    "sys.path.insert(0, sys.argv[0].rpartition('/')[0]); runpy.run_path(sys.argv[0], "
    "run_name='__main__')"
)


def run_example(
    script: str, args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_CALLVAULT, str(EXAMPLES / script), *args],
        env={"PATH": os.environ["PATH"], **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def only(cv: Callvault, names: tuple[str, ...]) -> dict[str, str]:
    return {name: cv.instance.env[name] for name in names if name in cv.instance.env}


def last_json(text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return value


def test_producer_and_dsr_portal_examples_run_against_the_stack(
    callvault: Callvault, tmp_path: Path
) -> None:
    cv = callvault
    cv.start_worker()
    audio = make_wav(0.3)
    (tmp_path / "call.wav").write_bytes(audio)

    produced = run_example(
        "telephony_producer.py",
        [
            "--audio",
            "call.wav",
            "--call-id",
            "pbx1-example-0001",
            "--caller",
            "+370 612 34567",
            "--callee",
            "+370 521 44500",
            "--customer-email",
            "Jonas@Example.lt",
        ],
        only(cv, PRODUCER_SETTINGS),
        tmp_path,
    )
    assert produced.returncode == 0, produced.stderr
    assert last_json(produced.stdout)["call_id"] == "pbx1-example-0001"
    (stored,) = cv.read("recordings_stored", lambda seen: len(seen) == 1)
    assert stored["data"]["sha256"] == hashlib.sha256(audio).hexdigest()

    portal = only(cv, PORTAL_SETTINGS) | {"DSR_PORTAL_GROUP": f"portal-{cv.instance.name}"}
    access = run_example(
        "dsr_portal.py",
        ["access", "--phone", "8 612 34567", "--out", "export.zip"],
        portal,
        tmp_path,
    )
    assert access.returncode == 0, access.stderr
    answer = last_json(access.stdout)
    assert (answer["status"], answer["outcomes"]) == ("completed", ["exported"])
    assert answer["export_checked"] is True
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        names = set(archive.namelist())
        letters = {"manifest.json", "letter.html", "letter.pdf"}  # the caller's answer
        assert letters <= names
        (audio_file,) = names - letters
        assert archive.read(audio_file) == audio  # byte-identical

    key = json.loads(
        subprocess.run(
            [CALLVAULT, "public-key"], env=cv.env, capture_output=True, check=True, timeout=60
        ).stdout
    )["keys"][0]["public_key"]  # the key set: the current key first
    erasure = run_example(
        "dsr_portal.py",
        [
            "erasure",
            "--email",
            " jonas@example.LT ",
            "--public-key",
            key,
            "--certificate-out",
            "certificate.json",
        ],
        portal,
        tmp_path,
    )
    assert erasure.returncode == 0, erasure.stderr
    answer = last_json(erasure.stdout)
    assert (answer["status"], answer["outcomes"], answer["certificate_valid"]) == (
        "completed",
        ["erased"],
        True,
    )
    (purged,) = cv.read("recordings_purged", lambda seen: len(seen) == 1)
    assert purged["data"]["reason"] == "erasure"

    # the stand-alone verifier: valid as received, invalid once a field is changed
    verified = run_example("verify_certificate.py", ["certificate.json", key], {}, tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "1 recording(s) erased" in verified.stdout
    certificate = json.loads((tmp_path / "certificate.json").read_text())
    certificate["recordings"][0]["versions_deleted"] += 1
    (tmp_path / "forged.json").write_text(json.dumps(certificate))
    forged = run_example("verify_certificate.py", ["forged.json", key], {}, tmp_path)
    assert forged.returncode == 1
    assert "NOT valid" in forged.stderr
