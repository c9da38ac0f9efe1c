"""The keys port: everything handlers do with secrets, without holding them.

A recording's audio is encrypted under its own data key; the data key is stored only wrapped
by a master key (named by its id, so master keys can be rotated); identifiers are looked up
by keyed digests; deletion certificates and audit checkpoints are signed. Where the master,
hash and signing keys live is the adapter's business: in this process
(:mod:`workers.adapters.keys`) or inside a PKCS#11 token (:mod:`workers.adapters.pkcs11`),
where they never leave it - handlers see the same operations either way."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ...domain.keyed import Mac

KeyKind = Literal["master", "hash", "signing"]


@dataclass(frozen=True)
class KeyCheck:
    """A key's check value: equal values mean the same key; the value reveals nothing else."""

    kind: KeyKind
    key_id: str
    value: str


class Keys(Protocol):
    @property
    def hasher(self) -> Mac:
        """The hash key in force: identifier and call digests, recording ids."""
        ...

    @property
    def retired_hashers(self) -> tuple[Mac, ...]:
        """Hash keys replaced by a rotation: they only recognise calls purged or discarded
        before it (tombstones and discards keep digests that cannot be re-computed)."""
        ...

    @property
    def current_master_id(self) -> str: ...

    @property
    def master_ids(self) -> tuple[str, ...]:
        """Every configured master key's id, the current one included."""
        ...

    @property
    def signing_key_id(self) -> str: ...

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

    def ranges(
        self,
        data_key: bytes,
        recording_id: str,
        size: int,
        read: Callable[[int, int], Iterable[bytes]],
    ) -> Callable[[int, int], Iterator[bytes]]:
        """Plaintext ranges of a recording of ``size`` bytes whose ciphertext ``read(offset,
        length)`` returns: the ciphertext's header is read at once (:class:`ObjectMissing`
        when the object is absent); each range ``(first, last)`` (inclusive) then reads and
        authenticates only the segments that hold it."""
        ...

    def seal(self, data_key: bytes, recording_id: str, value: dict[str, Any]) -> bytes: ...

    def open(self, data_key: bytes, recording_id: str, sealed: bytes) -> dict[str, Any]: ...

    def sign(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the signing key's id, the algorithm and the signature added."""
        ...

    def public_key(self) -> dict[str, str]:
        """The current signing key's public half: ``key_id``, ``algorithm``, ``public_key``."""
        ...

    def public_keys(self) -> list[dict[str, str]]:
        """The key set that verifies every certificate: the current key and retired ones."""
        ...

    def checks(self) -> list[KeyCheck]:
        """Check values of the configured keys (master keys, hash key, signing keys)."""
        ...

    def retired_hash_checks(self) -> dict[str, Mac]:
        """Check value to key, of every retired hash key."""
        ...

    def whereabouts(self) -> list[tuple[str, str]]:
        """Each key in use and where it is held, for ``callvault keys check``."""
        ...

    def secret(self, purpose: str) -> bytes:
        """A secret for ``purpose`` (the console's cookies) that every process holding the same
        keys derives alike, and that reveals nothing about them."""
        ...
