"""Signed documents: deletion certificates, audit checkpoints and records of verified audit
partitions.

A document is signed over the RFC 8785 canonical JSON of every member but ``signature``,
``key_id`` and ``algorithm`` included, so a verifier knows which key and which algorithm to use
and neither can be swapped. Each document names what it is in its signed ``type``: a deletion
certificate's is the request type (``erasure`` or ``objection``), a checkpoint's
``audit_checkpoint``; a signature over one kind never passes for the other.

Two algorithms: ``Ed25519`` (the key set's ``public_key`` is the raw 32-byte key) and ``ES256``
(ECDSA over P-256 with SHA-256, for tokens without EdDSA; ``public_key`` is the uncompressed
X9.62 point, the signature ``r || s``, 32 bytes each, as in JOSE)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..domain.audit import CHECKPOINT_TYPE

ED25519 = "Ed25519"
ES256 = "ES256"
ALGORITHMS = (ED25519, ES256)
CERTIFICATE_TYPES = frozenset({"erasure", "objection"})


def signed(
    body: dict[str, Any], key_id: str, algorithm: str, sign: Callable[[bytes], bytes]
) -> dict[str, Any]:
    """``body`` with the key id, the algorithm and ``sign``'s signature of the whole added."""
    document = {**body, "key_id": key_id, "algorithm": algorithm}
    signature = sign(rfc8785.dumps(document))
    return document | {"signature": base64.b64encode(signature).decode()}


def check_certificate(document: dict[str, Any], keys: list[dict[str, str]]) -> tuple[bool, str]:
    """Whether ``document`` is a deletion certificate whose signature verifies with the key of
    ``keys`` (a key set from ``callvault public-key``) that its ``key_id`` names."""
    if document.get("type") not in CERTIFICATE_TYPES or "recordings" not in document:
        kind = document.get("type")
        return False, f"not a deletion certificate (type {kind!r})"
    return check_signature(document, keys)


def check_checkpoint(document: dict[str, Any], keys: list[dict[str, str]]) -> tuple[bool, str]:
    """Whether ``document`` is an audit checkpoint with a signature that verifies (checkpoints
    signed before documents named their type have none; a certificate is never one)."""
    if document.get("type", CHECKPOINT_TYPE) != CHECKPOINT_TYPE:
        return False, f"not an audit checkpoint (type {document.get('type')!r})"
    return check_signature(document, keys)


def check_document(document: dict[str, Any], keys: list[dict[str, str]], kind: str) -> bool:
    """Whether ``document`` is a signed document of this ``type`` (a checkpoint, or a record of
    a verified audit partition) whose signature verifies."""
    if kind == CHECKPOINT_TYPE:
        return check_checkpoint(document, keys)[0]
    return document.get("type") == kind and check_signature(document, keys)[0]


def check_signature(document: dict[str, Any], keys: list[dict[str, str]]) -> tuple[bool, str]:
    key = next((k for k in keys if k.get("key_id") == document.get("key_id")), None)
    if key is None:
        return False, f"no key {document.get('key_id')!r} in the key set"
    algorithm = key.get("algorithm", ED25519)
    if document.get("algorithm", ED25519) != algorithm:
        return False, f"signed with {document.get('algorithm')!r}, the key is {algorithm!r}"
    verify = _VERIFIERS.get(algorithm)
    if verify is None:
        return False, f"unknown algorithm {algorithm!r}"
    body = {k: v for k, v in document.items() if k != "signature"}
    try:
        signature = base64.b64decode(document.get("signature", ""), validate=True)
        verify(
            base64.b64decode(key.get("public_key", ""), validate=True),
            signature,
            rfc8785.dumps(body),
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return False, "the signature does not match"
    return True, "ok"


def _ed25519(public: bytes, signature: bytes, message: bytes) -> None:
    Ed25519PublicKey.from_public_bytes(public).verify(signature, message)


def _es256(public: bytes, signature: bytes, message: bytes) -> None:
    if len(signature) != 64:
        raise InvalidSignature
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    key.verify(der, message, ec.ECDSA(hashes.SHA256()))


_VERIFIERS: dict[str, Callable[[bytes, bytes, bytes], None]] = {
    ED25519: _ed25519,
    ES256: _es256,
}
