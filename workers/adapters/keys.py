"""The key ring: master keys by id (wrapping data keys), the hash key (identifier digests)
and the signing key (deletion certificates), read from settings - the environment or
``CALLVAULT_*_FILE`` files. The one place that holds secrets; handlers reach it through
:class:`workers.app.ports.keys.Keys`.

Several master keys may be configured at once: new data keys are wrapped under the current
one, and a data key wrapped under another is unwrapped with the key its row names, until
``callvault keys rotate`` has re-wrapped it. Retired hash keys only recognise calls purged or
discarded before a hash-key rotation; retired signing keys are published as public keys only.
Each key has a *check value* (an HMAC of a fixed text under the key; for a signing key, its
public key) that ``callvault migrate`` stores, so that a process started with another key
refuses to start instead of answering requests wrongly."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..app.ports.keys import KeyCheck
from ..domain.errors import ConfigError, IntegrityError
from ..settings import Settings
from . import crypto
from .signatures import ED25519 as ALGORITHM
from .signatures import signed


def check_value(key: bytes, kind: str) -> str:
    """A value that tells whether two parties hold the same key, and nothing about the key."""
    return hmac.new(key, f"callvault key check v1 {kind}".encode(), hashlib.sha256).hexdigest()


class KeyRing:
    def __init__(
        self,
        *,
        master_keys: dict[str, bytes],
        current_master: str,
        hash_key: bytes,
        signing_seed: bytes,
        signing_key_id: str,
        retired_hash_keys: Iterable[bytes] = (),
        retired_signing_keys: dict[str, str] | None = None,
    ) -> None:
        if current_master not in master_keys:
            raise ConfigError(f"the current master key {current_master!r} is not configured")
        retired = dict(retired_signing_keys or {})
        if signing_key_id in retired:
            raise ConfigError(
                f"invalid settings - CALLVAULT_SIGNING_PUBLIC_KEYS_RETIRED names the current "
                f"signing key id {signing_key_id!r}"
            )
        self._masters = dict(master_keys)
        self._current = current_master
        self._hash_key = hash_key
        self._retired_hash_keys = tuple(retired_hash_keys)
        self._signer = Ed25519PrivateKey.from_private_bytes(signing_seed)
        self._retired_signing = retired
        self.signing_key_id = signing_key_id

    @property
    def hash_key(self) -> bytes:
        return self._hash_key

    @property
    def retired_hash_keys(self) -> tuple[bytes, ...]:
        return self._retired_hash_keys

    @property
    def current_master_id(self) -> str:
        return self._current

    @property
    def master_ids(self) -> tuple[str, ...]:
        return tuple(self._masters)

    def new_data_key(self) -> bytes:
        return crypto.new_data_key()

    def wrap(self, data_key: bytes, recording_id: str) -> tuple[bytes, str]:
        master = self._masters[self._current]
        return crypto.wrap_key(master, data_key, recording_id), self._current

    def unwrap(self, wrapped: bytes, master_key_id: str | None, recording_id: str) -> bytes:
        """The data key; ``master_key_id`` ``None`` (rows of early versions): whichever
        configured master key authenticates it."""
        if master_key_id is None:
            for key_id in (self._current, *(k for k in self._masters if k != self._current)):
                try:
                    return crypto.unwrap_key(self._masters[key_id], wrapped, recording_id)
                except IntegrityError:
                    continue
            raise IntegrityError("no configured master key unwraps this data key")
        master = self._masters.get(master_key_id)
        if master is None:
            raise IntegrityError(f"master key {master_key_id!r} is not configured")
        return crypto.unwrap_key(master, wrapped, recording_id)

    def rewrap(
        self, wrapped: bytes, master_key_id: str | None, recording_id: str
    ) -> tuple[bytes, str]:
        """The data key wrapped under the current master key instead."""
        return self.wrap(self.unwrap(wrapped, master_key_id, recording_id), recording_id)

    def encrypt(
        self, data_key: bytes, recording_id: str, chunks: Iterable[bytes]
    ) -> Iterator[bytes]:
        return crypto.encrypt_stream(data_key, recording_id, chunks)

    def decrypt(
        self, data_key: bytes, recording_id: str, chunks: Iterable[bytes]
    ) -> Iterator[bytes]:
        return crypto.decrypt_stream(data_key, recording_id, chunks)

    def seal(self, data_key: bytes, recording_id: str, value: dict[str, Any]) -> bytes:
        return crypto.seal_json(data_key, recording_id, value)

    def open(self, data_key: bytes, recording_id: str, sealed: bytes) -> dict[str, Any]:
        return crypto.open_json(data_key, recording_id, sealed)

    def sign(self, body: dict[str, Any]) -> dict[str, Any]:
        """Sign the RFC 8785 canonical form of ``body`` plus the key id and algorithm."""
        return signed(body, self.signing_key_id, ALGORITHM, self._signer.sign)

    def public_key(self) -> dict[str, str]:
        raw = self._signer.public_key().public_bytes_raw()
        return {
            "key_id": self.signing_key_id,
            "algorithm": ALGORITHM,
            "public_key": crypto.b64(raw),
        }

    def public_keys(self) -> list[dict[str, str]]:
        """The key set that verifies every certificate: the current key and retired ones."""
        retired = [
            {"key_id": key_id, "algorithm": ALGORITHM, "public_key": public}
            for key_id, public in sorted(self._retired_signing.items())
        ]
        return [self.public_key(), *retired]

    def checks(self) -> list[KeyCheck]:
        """The check values of the keys in use (retired hash keys aside)."""
        found = [
            KeyCheck("master", key_id, check_value(key, "master"))
            for key_id, key in self._masters.items()
        ]
        found.append(KeyCheck("hash", "current", check_value(self._hash_key, "hash")))
        found.append(KeyCheck("signing", self.signing_key_id, self.public_key()["public_key"]))
        found += [KeyCheck("signing", k, v) for k, v in self._retired_signing.items()]
        return found

    def retired_hash_checks(self) -> dict[str, bytes]:
        """Check value to key, of every retired hash key."""
        return {check_value(key, "hash"): key for key in self._retired_hash_keys}


def key_ring(settings: Settings) -> KeyRing:
    """The key ring that ``settings`` describe."""
    return KeyRing(
        master_keys=settings.master_keys_by_id(),
        current_master=settings.master_key_id,
        hash_key=settings.key("hash_key"),
        signing_seed=settings.key("signing_key"),
        signing_key_id=settings.signing_key_id,
        retired_hash_keys=settings.retired_hash_keys(),
        retired_signing_keys=settings.retired_signing_keys(),
    )
