"""The key ring: master keys by id (wrapping data keys), the hash key (identifier digests)
and the signing key (deletion certificates), read from settings. The one place that holds
secrets; handlers reach it through :class:`workers.app.keys.Keys`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..domain.errors import ConfigError, IntegrityError
from . import crypto

ALGORITHM = "Ed25519"


class KeyRing:
    def __init__(
        self,
        *,
        master_keys: dict[str, bytes],
        current_master: str,
        hash_key: bytes,
        signing_seed: bytes,
        signing_key_id: str,
    ) -> None:
        if current_master not in master_keys:
            raise ConfigError(f"the current master key {current_master!r} is not configured")
        self._masters = dict(master_keys)
        self._current = current_master
        self._hash_key = hash_key
        self._signer = Ed25519PrivateKey.from_private_bytes(signing_seed)
        self.signing_key_id = signing_key_id

    @property
    def hash_key(self) -> bytes:
        return self._hash_key

    @property
    def current_master_id(self) -> str:
        return self._current

    def new_data_key(self) -> bytes:
        return crypto.new_data_key()

    def wrap(self, data_key: bytes, recording_id: str) -> tuple[bytes, str]:
        master = self._masters[self._current]
        return crypto.wrap_key(master, data_key, recording_id), self._current

    def unwrap(self, wrapped: bytes, master_key_id: str | None, recording_id: str) -> bytes:
        key_id = master_key_id or self._current
        master = self._masters.get(key_id)
        if master is None:
            raise IntegrityError(f"master key {key_id!r} is not configured")
        return crypto.unwrap_key(master, wrapped, recording_id)

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
        signed = {**body, "key_id": self.signing_key_id, "algorithm": ALGORITHM}
        signature = self._signer.sign(rfc8785.dumps(signed))
        return signed | {"signature": crypto.b64(signature)}

    def public_key(self) -> dict[str, str]:
        raw = self._signer.public_key().public_bytes_raw()
        return {
            "key_id": self.signing_key_id,
            "algorithm": ALGORITHM,
            "public_key": crypto.b64(raw),
        }
