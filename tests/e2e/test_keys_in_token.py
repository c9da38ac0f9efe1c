"""callvault with its keys in a PKCS#11 token (SoftHSM2), with processes as operators run
them: `keys generate` creates the keys in the token, the worker stores calls, the console
plays them, the master key and the hash key are rotated to new token keys, an erasure's
certificate verifies with the published key set - and no process holds a key in its
environment or settings, only the token's library, label and PIN file. And an install with its
keys in the settings moves them into a token as docs/keys.md says."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.softhsm import KEY_SETTINGS, SoftToken
from testbed.stack import Instance, stop_processes
from tests.e2e.console_harness import PASSWORD, Console, cli, dsr, serve, store_calls
from tests.e2e.harness import Callvault, make_wav
from tests.e2e.test_probes import readyz_becomes
from workers.adapters.signatures import check_certificate

SECRETS = (*KEY_SETTINGS, "CALLVAULT_SESSION_SECRET")
FIRST, SECOND = make_wav(1.0, tone=330), make_wav(1.0, tone=550)
PHONE = "+370 612 34567"


def keyless(instance: Instance, token: SoftToken) -> dict[str, str]:
    """The instance's settings with the token's instead of any key."""
    env = {k: v for k, v in {**os.environ, **instance.env}.items() if k not in SECRETS}
    return {**env, **token.env()}


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def play(console: Console, recording_id: str) -> bytes:
    path = f"/api/v1/recordings/{recording_id}/audio?purpose=quality"
    answer = console.as_role("qa", "GET", path)
    assert answer.status == 200, answer.body
    body: bytes = answer.body
    return body


@pytest.fixture
def in_token(instance: Instance, soft_token: SoftToken, tmp_path: Path) -> Iterator[Callvault]:
    """An instance with the token's settings instead of keys; its processes stopped after."""
    cv = Callvault(instance, tmp_path)
    cv.env = keyless(instance, soft_token)
    try:
        yield cv
    finally:
        cv.stop_all()


def test_store_play_rotate_and_erase_with_keys_in_a_token(
    in_token: Callvault, soft_token: SoftToken, tmp_path: Path
) -> None:
    cv = in_token
    generated = cli(cv, "keys", "generate").stdout
    assert "created master key 'callvault-master-m1' (AES-256)" in generated
    assert "signing key 'callvault-signing' (Ed25519)" in generated
    cv.migrate()
    cv.start_worker()
    ready = readyz_becomes(int(cv.env["CALLVAULT_METRICS_PORT"]), 200)
    assert ready["pkcs11"] == "ok"  # a supervisor sees the token too
    ids = store_calls(cv, {"hsm-1": {"audio": FIRST}, "hsm-2": {"audio": SECOND}})
    cli(cv, "user", "add", "qa", "--role", "qa", "--tenant", "*", stdin=PASSWORD + "\n")
    token = cli(cv, "token", "create", "qa").stdout.strip()
    console = serve(cv)
    console.tokens["qa"] = token
    assert play(console, ids["hsm-1"]) == FIRST

    # no key in any process's environment: only where the token is
    for process in cv.workers:  # the worker and serve
        environment = environment_of(process.pid)
        assert not set(SECRETS) & set(environment)
        assert environment["CALLVAULT_KEYS_BACKEND"] == "pkcs11"
        assert soft_token.pin not in json.dumps(environment)
    where = cli(cv, "keys", "check").stdout
    assert where.count(f"token '{soft_token.label}'") == 3, where

    # the master key: a new token key becomes current, the data keys are re-wrapped under it
    cv.env["CALLVAULT_MASTER_KEY_ID"] = "m2"
    assert "callvault-master-m2" in cli(cv, "keys", "generate").stdout
    rotated = cli(cv, "keys", "rotate").stdout
    assert "re-wrapped 2 data key(s) under master key m2" in rotated
    assert "retired master key(s) m1" in rotated

    # the hash key: a new token key, the old one retired (the workers and serve stopped)
    stop_processes(cv.workers)
    cv.workers.clear()
    cv.env |= {
        "CALLVAULT_PKCS11_HASH_LABEL": "callvault-hash-2",
        "CALLVAULT_PKCS11_HASH_LABELS_RETIRED": "callvault-hash",
    }
    assert "hash key 'callvault-hash-2'" in cli(cv, "keys", "generate").stdout
    rehashed = cli(cv, "keys", "rehash").stdout
    assert "re-keyed the digests of 2 recording(s)" in rehashed
    cv.start_worker()
    console = serve(cv)
    console.tokens["qa"] = token
    assert play(console, ids["hsm-1"]) == FIRST
    assert play(console, ids["hsm-2"]) == SECOND

    # erasure finds both by the caller's number under the new hash key; the certificate,
    # signed in the token, verifies with the published key set
    erased = dsr(cv, "erasure", {"phone_numbers": [PHONE]})
    assert {r["recording_id"] for r in erased["recordings"]} == set(ids.values())
    certificate = tmp_path / "certificate.json"
    certificate.write_text(json.dumps(erased))
    key_set = tmp_path / "keys.json"
    key_set.write_text(cli(cv, "public-key").stdout)
    assert json.loads(key_set.read_text())["keys"][0]["algorithm"] == "Ed25519"
    verified = cli(cv, "verify-certificate", str(certificate), "--keys", str(key_set))
    assert "certificate valid: 2 recording(s)" in verified.stdout
    assert cli(cv, "audit", "verify").stdout.startswith("audit chain intact")


def test_an_install_moves_its_keys_into_a_token(
    callvault: Callvault, soft_token: SoftToken
) -> None:
    """docs/keys.md's procedure: the hash key is imported, the master and signing keys are
    rotated to keys generated in the token, and then no key is left in the settings - while
    what was stored before stays playable, findable and provably erased."""
    cv = callvault
    cv.start_worker()
    ids = store_calls(cv, {"move-1": {"audio": FIRST}})
    old_public = json.loads(cli(cv, "public-key").stdout)["keys"][0]["public_key"]
    del cv.env["CALLVAULT_SIGNING_KEY"]
    cv.env |= soft_token.env() | {
        "CALLVAULT_MASTER_KEYS": f"m1={cv.env.pop('CALLVAULT_MASTER_KEY')}",
        "CALLVAULT_MASTER_KEY_ID": "m2",
        "CALLVAULT_SIGNING_KEY_ID": "callvault-2",
        "CALLVAULT_SIGNING_PUBLIC_KEYS_RETIRED": f"callvault-1={old_public}",
    }
    generated = cli(cv, "keys", "generate").stdout
    assert "callvault-master-m2" in generated
    assert "hash key" not in generated  # the settings give it: it is imported instead
    assert "imported hash key as 'callvault-hash'" in cli(cv, "keys", "import-to-hsm").stdout
    del cv.env["CALLVAULT_HASH_KEY"]
    restart(cv)
    ids |= store_calls(cv, {"move-2": {"audio": SECOND}})  # under the token's m2
    rotated = cli(cv, "keys", "rotate").stdout
    assert "re-wrapped 1 data key(s) under master key m2" in rotated
    assert "retired master key(s) m1" in rotated
    del cv.env["CALLVAULT_MASTER_KEYS"]
    restart(cv)
    assert not set(SECRETS) & set(environment_of(cv.workers[0].pid))

    erased = dsr(cv, "erasure", {"phone_numbers": [PHONE]})
    assert {r["recording_id"] for r in erased["recordings"]} == set(ids.values())
    assert erased["certificate"]["key_id"] == "callvault-2"
    key_set = json.loads(cli(cv, "public-key").stdout)["keys"]
    assert [k["key_id"] for k in key_set] == ["callvault-2", "callvault-1"]
    assert check_certificate(erased["certificate"], key_set) == (True, "ok")


def restart(cv: Callvault) -> None:
    stop_processes(cv.workers)
    cv.workers.clear()
    cv.start_worker()
