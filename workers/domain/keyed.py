"""Keyed digests: HMAC-SHA256 under callvault's hash key, the only form in which identifiers
and call ids are looked up or outlive their recording.

The domain never holds the key. It asks a :class:`Mac` - the key in this process, or a key that
never leaves a hardware token - for the digests of many messages at once, so a token is
reached once per batch, not once per identifier."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Mac(Protocol):
    def macs(self, messages: Sequence[bytes]) -> list[bytes]:
        """HMAC-SHA256 of each message under the key, in order."""
        ...


@dataclass(frozen=True)
class HmacKey:
    """A hash key held in this process."""

    key: bytes = field(repr=False)

    def macs(self, messages: Sequence[bytes]) -> list[bytes]:
        return [hmac.new(self.key, m, hashlib.sha256).digest() for m in messages]


def keyed(mac: Mac, purpose: str, texts: Sequence[str]) -> list[bytes]:
    """The digests of ``texts`` for one ``purpose`` (a kind of identifier, ``call``, ...):
    HMAC-SHA256 of ``purpose \\x1f text``, so one text means different things per purpose."""
    return mac.macs([f"{purpose}\x1f{text}".encode() for text in texts])
