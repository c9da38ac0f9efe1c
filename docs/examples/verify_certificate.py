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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


# ==== The verification: the one function that depends on callvault's certificate format ====
def verify_deletion_certificate(certificate: dict[str, Any], public_key_b64: str) -> bool:
    """True when ``signature`` is callvault's Ed25519 signature over the rest of the certificate.

    Signed bytes: the certificate without ``signature`` in RFC 8785 canonical JSON (JCS). A
    certificate holds only strings, integers, lists and objects, for which JCS is JSON with keys
    sorted, no whitespace and non-ASCII characters as themselves, in UTF-8 - so the standard
    library suffices (an RFC 8785 library, e.g. `rfc8785` on PyPI, gives the same bytes). The
    certificate names its request (``request_id``), so it cannot be passed off for another.
    """
    if certificate.get("algorithm") != "Ed25519" or "signature" not in certificate:
        return False
    body = {name: value for name, value in certificate.items() if name != "signature"}
    signed = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        key.verify(base64.b64decode(certificate["signature"], validate=True), signed)
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
