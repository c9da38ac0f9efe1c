"""The key ring: master keys by id (wrapping data keys and sealing staff's free text), the hash
key (identifier digests) and the signing key (certificates and audit checkpoints). Handlers
reach it through :class:`workers.app.ports.keys.Keys`.

Each key is held by a *custodian*: this process (the bytes from settings - the environment or
``CALLVAULT_*_FILE`` files; ``CALLVAULT_KEYS_BACKEND=local``, the default) or a PKCS#11 token
(:mod:`workers.adapters.pkcs11`), where a key is an object that never leaves it. The ring
does the same with either: the data key is sealed with AES-256-GCM under the master key (the
recording id bound as associated data; the same bytes whichever custodian holds the key),
digests are HMAC-SHA256, signatures Ed25519 (ES256 in a token without EdDSA).

Several master keys may be configured at once: new data keys are wrapped under the current
one, and a data key wrapped under another is unwrapped with the key its row names, until
``callvault keys rotate`` has re-wrapped it. Retired hash keys only recognise calls purged or
discarded before a hash-key rotation; retired signing keys are published as public keys only.
Each key has a *check value* (an HMAC of a fixed text under the key; a token's master key: its
standard key check value, ``kcv:`` and the first three bytes of AES-ECB of a zero block; a
signing key: its public key) that ``callvault migrate`` stores, so that a process started with
another key refuses to start instead of answering requests wrongly."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..app.ports.keys import KeyCheck
from ..domain.errors import ConfigError, IntegrityError
from ..domain.keyed import HmacKey, Mac
from ..settings import Settings
from . import crypto
from .signatures import ED25519, ES256, signed

SESSION_PURPOSE = "callvault console session"


def check_value(key: bytes, kind: str) -> str:
    """A value that tells whether two parties hold the same key, and nothing about the key."""
    return hmac.new(key, check_text(kind), hashlib.sha256).hexdigest()


def check_text(kind: str) -> bytes:
    return f"callvault key check v1 {kind}".encode()


def mac_check_value(mac: Mac) -> str:
    """The check value of a hash key wherever it is held (the same as :func:`check_value`)."""
    return mac.macs([check_text("hash")])[0].hex()


@dataclass(frozen=True)
class MasterKey:
    """A master key as the ring uses it: an AEAD that wraps data keys, one that seals text
    (for a key in this process, a key derived from it), its check value, and where it is."""

    key_id: str
    aead: crypto.Aead
    text_aead: crypto.Aead
    check: str
    where: str


class Signer(Protocol):
    key_id: str
    algorithm: str
    where: str

    def sign(self, message: bytes) -> bytes: ...

    def public_key(self) -> bytes:
        """Raw: 32 bytes for Ed25519, the uncompressed point for ES256."""
        ...


def algorithm_of(public_key: str) -> str:
    """A published public key's algorithm, by its form: 32 bytes Ed25519, an uncompressed
    P-256 point (65 bytes) ES256."""
    return ES256 if len(base64.b64decode(public_key)) == 65 else ED25519


def software_master(key_id: str, key: bytes, where: str = "CALLVAULT_MASTER_KEYS") -> MasterKey:
    text = HKDF(hashes.SHA256(), 32, salt=None, info=b"callvault text at rest").derive(key)
    return MasterKey(key_id, AESGCM(key), AESGCM(text), check_value(key, "master"), where)


@dataclass
class SoftwareSigner:
    key_id: str
    seed: bytes = field(repr=False)
    where: str = "CALLVAULT_SIGNING_KEY"
    algorithm: str = ED25519

    def __post_init__(self) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(self.seed)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes_raw()


@dataclass
class PublicKeyOnly:
    """The public half of the signing key, in a process that verifies but never signs (the
    web console, given ``CALLVAULT_SIGNING_PUBLIC_KEY`` instead of the key itself)."""

    key_id: str
    public: bytes
    where: str = "CALLVAULT_SIGNING_PUBLIC_KEY (no signing key in this process)"
    algorithm: str = ED25519

    def sign(self, message: bytes) -> bytes:
        raise ConfigError(
            "this process holds no signing key (CALLVAULT_SIGNING_PUBLIC_KEY only): certificates "
            "and checkpoints are signed by the workers"
        )

    def public_key(self) -> bytes:
        return self.public


@dataclass(frozen=True)
class HashKey:
    """A hash key and where it is held."""

    mac: Mac
    where: str


class KeyRing:
    def __init__(
        self,
        *,
        masters: Iterable[MasterKey],
        current_master: str,
        hash_key: HashKey,
        signer: Signer,
        secret: Callable[[str], bytes],
        retired_hash_keys: Iterable[HashKey] = (),
        retired_signing_keys: dict[str, str] | None = None,
    ) -> None:
        self._masters = {m.key_id: m for m in masters}
        if current_master not in self._masters:
            raise ConfigError(f"the current master key {current_master!r} is not configured")
        retired = dict(retired_signing_keys or {})
        if signer.key_id in retired:
            raise ConfigError(
                f"invalid settings - CALLVAULT_SIGNING_PUBLIC_KEYS_RETIRED names the current "
                f"signing key id {signer.key_id!r}"
            )
        self._current = current_master
        self._hash = hash_key
        self._retired_hash = tuple(retired_hash_keys)
        self._signer = signer
        self._secret = secret
        self._retired_signing = retired
        self.signing_key_id = signer.key_id

    @property
    def hasher(self) -> Mac:
        return self._hash.mac

    @property
    def retired_hashers(self) -> tuple[Mac, ...]:
        return tuple(k.mac for k in self._retired_hash)

    @property
    def current_master_id(self) -> str:
        return self._current

    @property
    def master_ids(self) -> tuple[str, ...]:
        return tuple(self._masters)

    @property
    def sealer(self) -> crypto.TextSealer:
        """Seals staff's free text under the current master key; opens under any."""
        current = self._masters[self._current]
        others = (m.text_aead for k, m in self._masters.items() if k != self._current)
        return crypto.TextSealer(current.text_aead, *others)

    def new_data_key(self) -> bytes:
        return crypto.new_data_key()

    def wrap(self, data_key: bytes, recording_id: str) -> tuple[bytes, str]:
        master = self._masters[self._current]
        return crypto.wrap_key(master.aead, data_key, recording_id), self._current

    def unwrap(self, wrapped: bytes, master_key_id: str | None, recording_id: str) -> bytes:
        """The data key; ``master_key_id`` ``None`` (rows of early versions): whichever
        configured master key authenticates it."""
        if master_key_id is None:
            for key_id in (self._current, *(k for k in self._masters if k != self._current)):
                try:
                    return crypto.unwrap_key(self._masters[key_id].aead, wrapped, recording_id)
                except IntegrityError:
                    continue
            raise IntegrityError("no configured master key unwraps this data key")
        master = self._masters.get(master_key_id)
        if master is None:
            raise IntegrityError(f"master key {master_key_id!r} is not configured")
        return crypto.unwrap_key(master.aead, wrapped, recording_id)

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

    def ranges(
        self,
        data_key: bytes,
        recording_id: str,
        size: int,
        read: Callable[[int, int], Iterable[bytes]],
    ) -> Callable[[int, int], Iterator[bytes]]:
        header = b"".join(read(0, crypto.HEADER_SIZE))

        def plaintext(first: int, last: int) -> Iterator[bytes]:
            span = crypto.segment_span(size, first, last)
            chunks = read(span.cipher_offset, span.cipher_length)
            yield from crypto.decrypt_range(data_key, recording_id, header, chunks, span)

        return plaintext

    def seal(self, data_key: bytes, recording_id: str, value: dict[str, Any]) -> bytes:
        return crypto.seal_json(data_key, recording_id, value)

    def open(self, data_key: bytes, recording_id: str, sealed: bytes) -> dict[str, Any]:
        return crypto.open_json(data_key, recording_id, sealed)

    def sign(self, body: dict[str, Any]) -> dict[str, Any]:
        """Sign the RFC 8785 canonical form of ``body`` plus the key id and algorithm."""
        return signed(body, self._signer.key_id, self._signer.algorithm, self._signer.sign)

    def public_key(self) -> dict[str, str]:
        return {
            "key_id": self._signer.key_id,
            "algorithm": self._signer.algorithm,
            "public_key": crypto.b64(self._signer.public_key()),
        }

    def public_keys(self) -> list[dict[str, str]]:
        """The key set that verifies every certificate: the current key and retired ones."""
        retired = [
            {"key_id": key_id, "algorithm": algorithm_of(public), "public_key": public}
            for key_id, public in sorted(self._retired_signing.items())
        ]
        return [self.public_key(), *retired]

    def checks(self) -> list[KeyCheck]:
        """The check values of the keys in use (retired hash keys aside)."""
        found = [KeyCheck("master", key_id, m.check) for key_id, m in self._masters.items()]
        found.append(KeyCheck("hash", "current", mac_check_value(self._hash.mac)))
        found.append(KeyCheck("signing", self.signing_key_id, self.public_key()["public_key"]))
        found += [KeyCheck("signing", k, v) for k, v in self._retired_signing.items()]
        return found

    def retired_hash_checks(self) -> dict[str, Mac]:
        """Check value to key, of every retired hash key."""
        return {mac_check_value(k.mac): k.mac for k in self._retired_hash}

    def secret(self, purpose: str) -> bytes:
        return self._secret(purpose)

    def whereabouts(self) -> list[tuple[str, str]]:
        """Each key in use and where it is held, for ``callvault keys check``."""
        found = [
            (f"master key {k}" + (" (current)" if k == self._current else ""), m.where)
            for k, m in self._masters.items()
        ]
        found.append(("hash key", self._hash.where))
        found += [("retired hash key", k.where) for k in self._retired_hash]
        found.append((f"signing key {self._signer.key_id}", self._signer.where))
        return found


def software_key_ring(
    *,
    master_keys: dict[str, bytes],
    current_master: str,
    hash_key: bytes,
    signing_seed: bytes | None,
    signing_key_id: str,
    retired_hash_keys: Iterable[bytes] = (),
    retired_signing_keys: dict[str, str] | None = None,
    signing_public_key: str | None = None,
) -> KeyRing:
    """A ring of keys held in this process (without ``signing_seed``: the public key only)."""
    current = master_keys.get(current_master)
    signer: Signer
    if signing_seed is not None:
        signer = SoftwareSigner(signing_key_id, signing_seed)
    elif signing_public_key is not None:
        public = base64.b64decode(signing_public_key)
        signer = PublicKeyOnly(signing_key_id, public, algorithm=algorithm_of(signing_public_key))
    else:
        raise ConfigError("invalid settings - CALLVAULT_SIGNING_KEY: missing")
    return KeyRing(
        masters=[software_master(k, v) for k, v in master_keys.items()],
        current_master=current_master,
        hash_key=HashKey(HmacKey(hash_key), "CALLVAULT_HASH_KEY"),
        signer=signer,
        secret=partial_secret(current),
        retired_hash_keys=[
            HashKey(HmacKey(k), "CALLVAULT_HASH_KEYS_RETIRED") for k in retired_hash_keys
        ],
        retired_signing_keys=retired_signing_keys,
    )


def partial_secret(master: bytes | None) -> Callable[[str], bytes]:
    """Secrets derived from a master key held in this process (HMAC-SHA256 of the purpose)."""

    def secret(purpose: str) -> bytes:
        if master is None:
            raise ConfigError("no master key in this process to derive a secret from")
        return hmac.new(master, purpose.encode(), hashlib.sha256).digest()

    return secret


def key_ring(settings: Settings) -> KeyRing:
    """The key ring that ``settings`` describe."""
    if settings.keys_backend == "pkcs11":
        from .pkcs11 import token_key_ring

        return token_key_ring(settings)
    return software_key_ring(
        master_keys=settings.master_keys_by_id(),
        current_master=settings.master_key_id,
        hash_key=settings.key("hash_key"),
        signing_seed=_signing_seed(settings),
        signing_key_id=settings.signing_key_id,
        retired_hash_keys=settings.retired_hash_keys(),
        retired_signing_keys=settings.retired_signing_keys(),
        signing_public_key=settings.signing_public_key,
    )


def _signing_seed(settings: Settings) -> bytes | None:
    """The signing key; none in a process given only its public half (the console)."""
    if settings.signing_key is None and settings.signing_public_key is not None:
        return None
    return settings.key("signing_key")
