"""SoftHSM2 tokens for the tests and benchmarks of keys in a PKCS#11 token: each gets a token
of its own (a fresh label and PIN) in the stack's token directory (``deploy/lib/softhsm.sh``),
and the settings that point callvault to it; :func:`delete_token` removes it."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testbed.stack import ROOT, read_stack_env

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
# the settings that give keys themselves: none of them is set with the keys in a token
KEY_SETTINGS = (
    "CALLVAULT_MASTER_KEY",
    "CALLVAULT_MASTER_KEYS",
    "CALLVAULT_HASH_KEY",
    "CALLVAULT_HASH_KEYS_RETIRED",
    "CALLVAULT_SIGNING_KEY",
)


def softhsm_conf() -> Path:
    """The stack's SoftHSM2 configuration; the library reads ``SOFTHSM2_CONF`` once per
    process, so it is set before any test loads it."""
    stack = read_stack_env()
    given = stack.get("CALLVAULT_STACK_SOFTHSM2_CONF")
    root = stack.get("CALLVAULT_STACK_ROOT", str(ROOT / ".local"))
    conf = Path(given) if given else Path(root) / "softhsm" / "softhsm2.conf"
    if not conf.is_file() or not MODULE.is_file():
        raise AssertionError(f"SoftHSM2 is not set up ({conf}, {MODULE}): run `make up`")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


@dataclass(frozen=True)
class SoftToken:
    label: str
    pin_file: Path
    conf: Path

    @property
    def pin(self) -> str:
        return self.pin_file.read_text().strip()

    def env(self) -> dict[str, str]:
        """The settings of callvault with its keys in this token (no key bytes)."""
        return {
            "SOFTHSM2_CONF": str(self.conf),
            "CALLVAULT_KEYS_BACKEND": "pkcs11",
            "CALLVAULT_PKCS11_MODULE": str(MODULE),
            "CALLVAULT_PKCS11_TOKEN_LABEL": self.label,
            "CALLVAULT_PKCS11_PIN_FILE": str(self.pin_file),
        }

    def settings(self) -> dict[str, str]:
        """:meth:`env` as keyword arguments of ``load_settings``."""
        return {
            k.removeprefix("CALLVAULT_").lower(): v
            for k, v in self.env().items()
            if k.startswith("CALLVAULT_")
        }


def new_token(directory: Path) -> SoftToken:
    conf = softhsm_conf()
    label = f"cv-{secrets.token_hex(6)}"
    pin = secrets.token_hex(8)
    pin_file = directory / "pkcs11-pin"
    pin_file.write_text(pin + "\n")
    pin_file.chmod(0o600)
    _util(conf, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", pin + "so")
    return SoftToken(label, pin_file, conf)


def delete_token(token: SoftToken) -> None:
    _util(token.conf, "--delete-token", "--token", token.label)


def _util(conf: Path, *args: str) -> None:
    subprocess.run(
        ["softhsm2-util", *args],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
        timeout=60,
    )
