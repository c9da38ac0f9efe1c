"""The keys port against a real PKCS#11 token (SoftHSM2) and against keys in this process: the
same contract holds for both - data keys sealed and opened, digests, signatures that
`verify-certificate` accepts, check values, text sealed at rest, derived secrets - and the
token keeps its keys: created non-extractable, used by label, never read. A wrong PIN, a
missing token or object is a setting error naming the setting; a session the token lost is a
transient error, and the next call works."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass

from testbed.softhsm import SoftToken
from tests.contracts import covers
from workers.adapters import crypto
from workers.adapters.keys import KeyRing, check_value, software_key_ring
from workers.adapters.pkcs11 import (
    HASH_TEMPLATE,
    MASTER_TEMPLATE,
    Token,
    _new_signing_key,
    generate,
    import_hash_keys,
    token_key_ring,
    token_of,
)
from workers.adapters.signatures import ED25519, ES256, check_certificate
from workers.app.ports.keys import Keys
from workers.domain.errors import ConfigError, IntegrityError, TransientError
from workers.domain.keyed import HmacKey
from workers.settings import Settings, load_settings

CALLVAULT = str(Path(sys.executable).parent / "callvault")
NO_SOFTWARE_KEYS = {"master_key": None, "master_keys": None, "hash_key": None, "signing_key": None}
CERTIFICATE = {"type": "erasure", "request_id": "R-1", "recordings": []}


def token_settings(token: SoftToken, **overrides: Any) -> Settings:
    return load_settings(**{**NO_SOFTWARE_KEYS, **token.settings(), **overrides})


def generated_ring(token: SoftToken, **overrides: Any) -> KeyRing:
    settings = token_settings(token, **overrides)
    generate(settings)
    return token_key_ring(settings)


def software_ring(_: SoftToken) -> KeyRing:
    return software_key_ring(
        master_keys={"m1": os.urandom(32)},
        current_master="m1",
        hash_key=os.urandom(32),
        signing_seed=os.urandom(32),
        signing_key_id="callvault-1",
    )


RINGS: dict[str, Callable[[SoftToken], KeyRing]] = {
    "in-process": software_ring,
    "pkcs11": generated_ring,
}


@pytest.fixture(params=list(RINGS))
def ring(request: pytest.FixtureRequest, soft_token: SoftToken) -> KeyRing:
    return RINGS[request.param](soft_token)


# --- the contract, for both custodians --------------------------------------------------------


@covers(Keys.new_data_key, Keys.wrap, Keys.unwrap, Keys.rewrap)
def test_a_data_key_opens_only_for_its_recording(ring: KeyRing) -> None:
    data_key = ring.new_data_key()
    wrapped, key_id = ring.wrap(data_key, "rec-1")
    assert key_id == "m1"
    assert data_key not in wrapped
    assert ring.unwrap(wrapped, "m1", "rec-1") == data_key
    assert ring.unwrap(wrapped, None, "rec-1") == data_key  # rows of early versions
    with pytest.raises(IntegrityError):
        ring.unwrap(wrapped, "m1", "rec-2")
    with pytest.raises(IntegrityError):
        ring.unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]), "m1", "rec-1")
    assert ring.rewrap(wrapped, "m1", "rec-1")[1] == "m1"


def test_digests_are_keyed_deterministic_and_batched(ring: KeyRing) -> None:
    messages = [f"phone\x1f+37061234{n:03d}".encode() for n in range(50)]
    first = ring.hasher.macs(messages)
    assert first == ring.hasher.macs(messages)
    assert len(set(first)) == 50
    assert all(len(d) == 32 for d in first)
    assert ring.hasher.macs([]) == []


@covers(Keys.sign, Keys.public_keys)
def test_certificates_verify_with_the_published_key_set(ring: KeyRing) -> None:
    certificate = ring.sign(CERTIFICATE)
    keys = ring.public_keys()
    assert certificate["algorithm"] == keys[0]["algorithm"] == ED25519  # SoftHSM2 has EdDSA
    assert check_certificate(certificate, keys) == (True, "ok")
    assert not check_certificate(certificate | {"request_id": "R-2"}, keys)[0]


@covers(Keys.checks, Keys.public_key)
def test_check_values_name_each_key_and_reveal_none(ring: KeyRing) -> None:
    checks = {(c.kind, c.key_id): c.value for c in ring.checks()}
    assert set(checks) == {("master", "m1"), ("hash", "current"), ("signing", "callvault-1")}
    assert checks[("signing", "callvault-1")] == ring.public_key()["public_key"]
    assert ring.checks() == ring.checks()


def test_text_sealed_at_rest_opens_for_its_row_only(ring: KeyRing) -> None:
    sealed = ring.sealer.seal("dispute about order 17", "H1")
    assert b"dispute" not in sealed
    assert ring.sealer.open(sealed, "H1") == "dispute about order 17"
    with pytest.raises(IntegrityError):
        ring.sealer.open(sealed, "H2")


@covers(Keys.secret)
def test_a_derived_secret_is_stable_and_per_purpose(ring: KeyRing) -> None:
    assert ring.secret("callvault console session") == ring.secret("callvault console session")
    assert ring.secret("callvault console session") != ring.secret("another purpose")
    assert len(ring.secret("callvault console session")) == 32


@covers(Keys.encrypt, Keys.decrypt, Keys.ranges, Keys.seal, Keys.open)
def test_audio_and_personal_data_open_with_their_recordings_data_key(ring: KeyRing) -> None:
    data_key = ring.new_data_key()
    audio = bytes(range(256)) * 1000  # several segments
    sealed_audio = b"".join(ring.encrypt(data_key, "rec-1", [audio[:1000], audio[1000:]]))
    assert audio[:64] not in sealed_audio
    assert b"".join(ring.decrypt(data_key, "rec-1", [sealed_audio])) == audio
    with pytest.raises(IntegrityError):
        b"".join(ring.decrypt(data_key, "rec-2", [sealed_audio]))
    reads: list[tuple[int, int]] = []

    def ciphertext(offset: int, length: int) -> list[bytes]:
        reads.append((offset, length))
        return [sealed_audio[offset : offset + length]]

    ranges = ring.ranges(data_key, "rec-1", len(audio), ciphertext)
    assert b"".join(ranges(100_000, 100_009)) == audio[100_000:100_010]
    assert b"".join(ranges(0, len(audio) - 1)) == audio
    assert sum(length for _, length in reads[:2]) < len(sealed_audio) // 2  # a range, not all
    sealed = ring.seal(data_key, "rec-1", {"name": "Ona", "email": "ona@example.com"})
    assert b"Ona" not in sealed
    assert ring.open(data_key, "rec-1", sealed) == {"name": "Ona", "email": "ona@example.com"}
    with pytest.raises(IntegrityError):
        ring.open(data_key, "rec-2", sealed)


@covers(Keys.whereabouts, Keys.retired_hash_checks)
def test_each_key_says_where_it_is_held(ring: KeyRing, request: pytest.FixtureRequest) -> None:
    where = dict(ring.whereabouts())
    assert set(where) == {"master key m1 (current)", "hash key", "signing key callvault-1"}
    in_token = request.node.callspec.params["ring"] == "pkcs11"
    assert all(place.startswith("token ") == in_token for place in where.values()), where
    assert ring.retired_hash_checks() == {}  # no hash key retired by a rotation yet


# --- the token keeps its keys --------------------------------------------------------------------


def test_generated_keys_never_leave_the_token(soft_token: SoftToken) -> None:
    settings = token_settings(soft_token)
    created = generate(settings)
    assert len(created) == 3
    assert generate(settings) == []  # idempotent: nothing is replaced
    with token_of(settings).admin() as session:
        secret_keys = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}))
        private = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
        assert {str(k.label) for k in secret_keys} == {"callvault-master-m1", "callvault-hash"}
        for key in [*secret_keys, *private]:
            assert key[Attribute.SENSITIVE]
            assert key[Attribute.NEVER_EXTRACTABLE]
            assert not key[Attribute.EXTRACTABLE]
            with pytest.raises(pkcs11.AttributeSensitive):
                key[Attribute.VALUE]
        (master,) = [k for k in secret_keys if str(k.label) == "callvault-master-m1"]
        assert not master[Attribute.SIGN]
        assert not master[Attribute.WRAP]
        assert private[0][Attribute.KEY_TYPE] == KeyType.EC_EDWARDS


def test_keys_imported_into_a_token_give_the_same_bytes(soft_token: SoftToken) -> None:
    """A key moved into a token (docs/keys.md) opens what it sealed in this process and makes
    the same digests: the formats do not depend on where the key is."""
    master, hash_key = os.urandom(32), os.urandom(32)
    token = token_of(token_settings(soft_token))
    with token.admin() as session:
        session.create_object(
            {
                **MASTER_TEMPLATE,
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: master,
                Attribute.LABEL: "callvault-master-m1",
            }
        )
        session.create_object(
            {
                **HASH_TEMPLATE,
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                Attribute.VALUE: hash_key,
                Attribute.LABEL: "callvault-hash",
            }
        )
    generate(token_settings(soft_token))  # the signing key
    ring = token_key_ring(token_settings(soft_token), token)
    in_process = software_key_ring(
        master_keys={"m1": master},
        current_master="m1",
        hash_key=hash_key,
        signing_seed=bytes(32),
        signing_key_id="callvault-1",
    )
    data_key = crypto.new_data_key()
    assert ring.unwrap(in_process.wrap(data_key, "rec-1")[0], "m1", "rec-1") == data_key
    assert in_process.unwrap(ring.wrap(data_key, "rec-1")[0], "m1", "rec-1") == data_key
    messages = [b"call\x1fpbx-1", b"email\x1fjonas@example.lt"]
    assert ring.hasher.macs(messages) == HmacKey(hash_key).macs(messages)
    hash_check = {c.kind: c.value for c in ring.checks()}["hash"]
    assert hash_check == check_value(hash_key, "hash")


def test_a_token_without_eddsa_signs_es256(soft_token: SoftToken) -> None:
    settings = token_settings(soft_token, pkcs11_signing_label="callvault-signing-p256")
    token = token_of(settings)
    with token.admin() as session:
        _new_signing_key(session, "callvault-signing-p256", False)
    generate(settings)
    ring = token_key_ring(settings, token)
    certificate = ring.sign(CERTIFICATE)
    (published,) = ring.public_keys()
    assert certificate["algorithm"] == published["algorithm"] == ES256
    assert len(base64.b64decode(published["public_key"])) == 65
    assert check_certificate(certificate, [published]) == (True, "ok")
    assert not check_certificate(certificate | {"type": "objection"}, [published])[0]


def test_the_pool_serves_many_threads_at_once(soft_token: SoftToken) -> None:
    ring = generated_ring(soft_token, pkcs11_sessions=3)
    failures: list[Exception] = []

    def work(n: int) -> None:
        try:
            for i in range(100):
                data_key = ring.new_data_key()
                wrapped, _ = ring.wrap(data_key, f"rec-{n}-{i}")
                assert ring.unwrap(wrapped, "m1", f"rec-{n}-{i}") == data_key
                ring.hasher.macs([f"{n}-{i}".encode()] * 3)
        except Exception as exc:  # noqa: BLE001 - collected, asserted in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_lost_session_is_transient_and_the_next_call_reopens(soft_token: SoftToken) -> None:
    settings = token_settings(soft_token, pkcs11_sessions=1)
    generate(settings)
    token = token_of(settings)
    ring = token_key_ring(settings, token)
    wrapped, _ = ring.wrap(b"k" * 32, "rec-1")
    with token.session() as lent:  # the token forgets the pool's session (a restarted HSM)
        lent.session.close()
    with pytest.raises(TransientError, match="did not answer"):
        ring.unwrap(wrapped, "m1", "rec-1")
    assert ring.unwrap(wrapped, "m1", "rec-1") == b"k" * 32


# --- settings that are wrong ---------------------------------------------------------------------


def test_a_wrong_pin_names_the_pin_file(soft_token: SoftToken, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("000000\n")
    with pytest.raises(ConfigError, match=r"CALLVAULT_PKCS11_PIN_FILE: the token .* refused"):
        token_key_ring(token_settings(soft_token, pkcs11_pin_file=str(wrong)))


def test_a_missing_token_module_or_key_names_its_setting(soft_token: SoftToken) -> None:
    cases = [
        ({"pkcs11_token_label": "no-such-token"}, "CALLVAULT_PKCS11_TOKEN_LABEL: no token"),
        ({"pkcs11_module": "/nowhere/libpkcs11.so"}, "CALLVAULT_PKCS11_MODULE: no file"),
        ({}, "CALLVAULT_MASTER_KEY_ID: the token .* has no master key 'm1'"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            token_key_ring(token_settings(soft_token, **overrides))
    generate(token_settings(soft_token))
    for overrides, message in [
        ({"pkcs11_hash_label": "gone"}, "CALLVAULT_PKCS11_HASH_LABEL: .* no hash key 'gone'"),
        ({"pkcs11_signing_label": "gone"}, "CALLVAULT_PKCS11_SIGNING_LABEL: .* 'gone'"),
        ({"master_key_id": "m9"}, "CALLVAULT_MASTER_KEY_ID: .* no master key 'm9'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            token_key_ring(token_settings(soft_token, **overrides))


def test_token_is_not_shown_with_its_pin(soft_token: SoftToken) -> None:
    token = token_of(token_settings(soft_token))
    assert isinstance(token, Token)
    assert soft_token.pin not in repr(token)


def test_hash_keys_imported_into_the_token_keep_every_digest(soft_token: SoftToken) -> None:
    """`keys import-to-hsm`: the hash key and a retired one move into the token; digests and
    check values stay what they were, so nothing on record needs re-keying."""
    current, retired = os.urandom(32), os.urandom(32)
    software = {
        "hash_key": base64.b64encode(current).decode(),
        "hash_keys_retired": base64.b64encode(retired).decode(),
    }
    moving = token_settings(soft_token, **software)
    imported = import_hash_keys(moving)
    label = f"callvault-hash-retired-{check_value(retired, 'hash')[:8]}"
    assert imported == [("callvault-hash", "hash key"), (label, "retired")]
    assert import_hash_keys(moving) == []
    generate(moving)  # master and signing keys, new in the token
    ring = token_key_ring(token_settings(soft_token, pkcs11_hash_labels_retired=label))
    messages = [b"phone\x1f+37061234567", b"call\x1fpbx-1"]
    assert ring.hasher.macs(messages) == HmacKey(current).macs(messages)
    assert ring.retired_hashers[0].macs(messages) == HmacKey(retired).macs(messages)
    assert {c.kind: c.value for c in ring.checks()}["hash"] == check_value(current, "hash")
    assert set(ring.retired_hash_checks()) == {check_value(retired, "hash")}


def test_keys_move_out_of_the_token_by_rotation(soft_token: SoftToken) -> None:
    """Token keys never leave it: moving out means new keys in this process beside the token's
    until `keys rotate` and `keys rehash` have moved everything to them (docs/keys.md)."""
    in_token = generated_ring(soft_token)
    wrapped, _ = in_token.wrap(b"d" * 32, "rec-1")
    old_digest = in_token.hasher.macs([b"call\x1fpbx-1"])
    master, hash_key, seed = os.urandom(32), os.urandom(32), os.urandom(32)
    beside = token_settings(
        soft_token,
        master_keys=f"m2={base64.b64encode(master).decode()}",
        master_key_id="m2",
        hash_key=base64.b64encode(hash_key).decode(),
        pkcs11_hash_labels_retired="callvault-hash",
        signing_key=base64.b64encode(seed).decode(),
        signing_key_id="callvault-2",
        signing_public_keys_retired=f"callvault-1={in_token.public_key()['public_key']}",
    )
    moving = token_key_ring(beside)
    assert moving.master_ids == ("m1", "m2")
    rewrapped, key_id = moving.rewrap(wrapped, "m1", "rec-1")
    assert key_id == "m2"
    assert moving.retired_hashers[0].macs([b"call\x1fpbx-1"]) == old_digest
    assert [k["key_id"] for k in moving.public_keys()] == ["callvault-2", "callvault-1"]
    where = dict(moving.whereabouts())
    assert where["master key m2 (current)"] == "CALLVAULT_MASTER_KEYS"
    assert where["hash key"] == "CALLVAULT_HASH_KEY"
    assert where["master key m1"].startswith(f"token '{soft_token.label}'")
    outside = software_key_ring(
        master_keys={"m2": master},
        current_master="m2",
        hash_key=hash_key,
        signing_seed=seed,
        signing_key_id="callvault-2",
    )
    assert outside.unwrap(rewrapped, "m2", "rec-1") == b"d" * 32


def test_the_cli_names_the_pin_file_in_one_line(soft_token: SoftToken, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("000000\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLVAULT_", "SOFTHSM2_"))}
    env |= soft_token.env() | {"CALLVAULT_PKCS11_PIN_FILE": str(wrong)}
    done = subprocess.run(
        [CALLVAULT, "keys", "generate"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 3
    (line,) = done.stderr.strip().splitlines()
    assert "CALLVAULT_PKCS11_PIN_FILE: the token" in line
    assert "refused the PIN" in line


def test_a_token_is_chosen_by_its_serial_too(soft_token: SoftToken) -> None:
    generate(token_settings(soft_token))
    token = token_of(token_settings(soft_token))
    serial = bytes(token.run(lambda s: s.session.token.serial)).decode().strip()
    ring = token_key_ring(token_settings(soft_token, pkcs11_token_serial=serial))
    assert ring.current_master_id == "m1"
    with pytest.raises(ConfigError, match="with serial '0000'"):
        token_key_ring(token_settings(soft_token, pkcs11_token_serial="0000"))
