"""The keys port: everything handlers do with secrets, without holding them.

A recording's audio is encrypted under its own data key; the data key is stored only wrapped
by a master key (named by its id, so master keys can be rotated); identifiers are looked up
by keyed digests; deletion certificates are signed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

KeyKind = Literal["master", "hash", "signing"]


@dataclass(frozen=True)
class KeyCheck:
    """A key's check value: equal values mean the same key; the value reveals nothing else."""

    kind: KeyKind
    key_id: str
    value: str


class Keys(Protocol):
    @property
    def hash_key(self) -> bytes: ...

    @property
    def retired_hash_keys(self) -> tuple[bytes, ...]:
        """Hash keys replaced by a rotation: they only recognise calls purged or discarded
        before it (tombstones and discards keep digests that cannot be re-computed)."""
        ...

    @property
    def current_master_id(self) -> str: ...

    def new_data_key(self) -> bytes: ...

    def wrap(self, data_key: bytes, recording_id: str) -> tuple[bytes, str]:
        """The data key wrapped by the current master key, and that key's id."""
        ...

    def unwrap(self, wrapped: bytes, master_key_id: str | None, recording_id: str) -> bytes: ...

    def rewrap(
        self, wrapped: bytes, master_key_id: str | None, recording_id: str
    ) -> tuple[bytes, str]:
        """The data key wrapped under the current master key instead, and that key's id."""
        ...

    def encrypt(
        self, data_key: bytes, recording_id: str, chunks: Iterable[bytes]
    ) -> Iterator[bytes]: ...

    def decrypt(
        self, data_key: bytes, recording_id: str, chunks: Iterable[bytes]
    ) -> Iterator[bytes]: ...

    def seal(self, data_key: bytes, recording_id: str, value: dict[str, Any]) -> bytes: ...

    def open(self, data_key: bytes, recording_id: str, sealed: bytes) -> dict[str, Any]: ...

    def sign(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the signing key's id, the algorithm and the signature added."""
        ...

    def checks(self) -> list[KeyCheck]:
        """Check values of the configured keys (master keys, hash key, signing keys)."""
        ...

    def retired_hash_checks(self) -> dict[str, bytes]:
        """Check value to key, of every retired hash key."""
        ...
