"""Key rotation end to end, with processes as operators run them: recordings stored under the
old master key and under the new one play back through the console's audio route, export and
purge after `callvault keys rotate`, with the old key removed; a worker started with a key
that does not match the database refuses to start and says which setting is wrong."""

from __future__ import annotations

import base64
import os
import subprocess

import psycopg

from testbed.stack import stop_processes
from tests.e2e.console_harness import cli, download_zip, dsr, start_console, store_calls
from tests.e2e.harness import CALLVAULT, Callvault, make_wav

BEFORE, AFTER = make_wav(1.0, tone=330), make_wav(1.0, tone=550)
PHONE = "+370 612 34567"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def restart_workers(cv: Callvault) -> None:
    stop_processes(cv.workers)
    cv.workers.clear()
    cv.start_worker()


def refusal(cv: Callvault, **settings: str) -> subprocess.CompletedProcess[str]:
    """`callvault worker` with other settings: it must stop before it consumes anything."""
    env = {**cv.env, **settings}
    return subprocess.run(
        [CALLVAULT, "worker"], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_master_key_rotation_with_recordings_before_and_after(callvault: Callvault) -> None:
    cv = callvault
    old, new = cv.env.pop("CALLVAULT_MASTER_KEY"), new_key()
    cv.env.update(CALLVAULT_MASTER_KEYS=f"m1={old}")
    cv.start_worker()
    ids = store_calls(cv, {"rot-before": {"audio": BEFORE}})

    # 1. the new key becomes current, the old one stays configured
    cv.env.update(CALLVAULT_MASTER_KEYS=f"m1={old},m2={new}", CALLVAULT_MASTER_KEY_ID="m2")
    cv.migrate()  # registers the new key's check value
    restart_workers(cv)
    ids |= store_calls(cv, {"rot-after": {"audio": AFTER}})
    # 2. re-wrap while the worker runs
    rotated = cli(cv, "keys", "rotate")
    assert "re-wrapped 1 data key(s) under master key m2" in rotated.stdout
    assert "retired master key(s) m1" in rotated.stdout
    # 3. the old key leaves the settings
    cv.env.update(CALLVAULT_MASTER_KEYS=f"m2={new}")
    restart_workers(cv)
    console = start_console(cv)
    for call_id, audio in (("rot-before", BEFORE), ("rot-after", AFTER)):
        path = f"/api/v1/recordings/{ids[call_id]}/audio?purpose=quality"
        played = console.as_role("qa", "GET", path)
        assert played.status == 200
        assert played.body == audio
    export = dsr(cv, "access", {"phone_numbers": [PHONE]})["export"]
    archive = download_zip(export["url"])
    assert archive.read(f"recordings/{ids['rot-before']}.wav") == BEFORE
    assert archive.read(f"recordings/{ids['rot-after']}.wav") == AFTER
    erased = dsr(cv, "erasure", {"phone_numbers": [PHONE]})
    assert {r["outcome"] for r in erased["recordings"]} == {"erased"}
    assert len(erased["recordings"]) == 2
    assert cli(cv, "audit", "verify").stdout.startswith("audit chain intact")
    with psycopg.connect(cv.instance.database_url) as conn:
        (details,) = conn.execute(
            "SELECT details FROM audit_log WHERE action = 'keys_rewrapped'"
        ).fetchone() or (None,)
    assert details == {"recording_ids": [ids["rot-before"]], "from": ["m1"], "to": "m2"}

    # a worker still configured with only the old key, or another hash key, refuses to start
    stale = refusal(cv, CALLVAULT_MASTER_KEYS=f"m1={old}", CALLVAULT_MASTER_KEY_ID="m1")
    assert stale.returncode == 3
    assert "wrapped under master key 'm2', which is not configured" in stale.stderr
    wrong_hash = refusal(cv, CALLVAULT_HASH_KEY=new_key())
    assert wrong_hash.returncode == 3
    assert "CALLVAULT_HASH_KEY is not the key" in wrong_hash.stderr
    # and so does the console with another signing key under the published id
    served = subprocess.run(
        [CALLVAULT, "serve"],
        env={**cv.env, "CALLVAULT_SIGNING_KEY": new_key()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert served.returncode == 3  # a setting is wrong
    assert "CALLVAULT_SIGNING_KEY: key id 'callvault-1' was published" in served.stderr
