"""Verify a callvault deletion certificate without callvault: needs only `cryptography`.

    python verify_certificate.py CERTIFICATE.json PUBLIC_KEY_BASE64

CERTIFICATE.json holds the `certificate` of a callvault.dsr.completed.v1 event (its `data`, or
the whole event, work too). The public key is the one of the certificate's `key_id` in the key
set the operator prints with `callvault public-key` and publishes (old keys stay in the set
after a rotation, so old certificates keep verifying). Exit code 0: valid; 1: not valid.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


# ==== The verification: the one function that depends on callvault's certificate format ====
def verify_deletion_certificate(certificate: dict[str, Any], public_key_b64: str) -> bool:
    """True when ``certificate`` is a deletion certificate and ``signature`` is callvault's
    signature over the rest of it.

    Signed bytes: the certificate without ``signature`` in RFC 8785 canonical JSON (JCS). A
    certificate holds only strings, integers, lists and objects, for which JCS is JSON with keys
    sorted, no whitespace and non-ASCII characters as themselves, in UTF-8 - so the standard
    library suffices (an RFC 8785 library, e.g. `rfc8785` on PyPI, gives the same bytes). The
    certificate names its request (``request_id``), so it cannot be passed off for another, and
    its signed ``type`` (``erasure`` or ``objection``), so no other document callvault signs
    (an audit checkpoint's ``type`` is ``audit_checkpoint``) passes for one. ``algorithm`` is
    ``Ed25519`` (raw 32-byte public key) or, with a signing key in a token without EdDSA,
    ``ES256`` (ECDSA P-256 with SHA-256; the public key an uncompressed point, the signature
    ``r || s``).
    """
    if certificate.get("type") not in ("erasure", "objection") or "signature" not in certificate:
        return False
    body = {name: value for name, value in certificate.items() if name != "signature"}
    signed = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        public = base64.b64decode(public_key_b64, validate=True)
        signature = base64.b64decode(certificate["signature"], validate=True)
        if certificate.get("algorithm") == "Ed25519":
            Ed25519PublicKey.from_public_bytes(public).verify(signature, signed)
        elif certificate.get("algorithm") == "ES256" and len(signature) == 64:
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
            key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


# ============================================================================================


def certificate_of(document: dict[str, Any]) -> dict[str, Any]:
    """The certificate inside an event, its data, or the certificate itself."""
    document = document.get("data", document)
    found: dict[str, Any] = document.get("certificate", document)
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as file:
        certificate = certificate_of(json.load(file))
    if not verify_deletion_certificate(certificate, argv[1]):
        print("certificate NOT valid", file=sys.stderr)
        return 1
    erased = certificate["recordings"]
    print(f"certificate valid: {len(erased)} recording(s) erased, key {certificate['key_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
