"""What the data subject is told about their recordings beyond the recordings themselves:
who received them (Art. 15(1)(c), CJEU C-154/21) and when and why they were consulted, without
staff names (CJEU C-579/21); and, on erasure or rectification, which recipients must be told
(Art. 19). Disclosures to authorities for a particular inquiry are not listed (Art. 4(9))."""

from __future__ import annotations

from typing import Any

from ...domain.retention import rfc3339
from ..ports.console import Registers
from .model import Disclosure


class SubjectHistory:
    def __init__(self, registers: Registers) -> None:
        self._registers = registers

    def recipients(self, recording_ids: list[str]) -> list[dict[str, Any]]:
        """Recipients the person is told about, oldest disclosure first."""
        chosen = set(recording_ids)
        return [
            _recipient(d, chosen)
            for d in self._registers.disclosures_of(recording_ids)
            if d.recipient_kind.told_to_subject
        ]

    def consultations(self, recording_ids: list[str]) -> dict[str, list[dict[str, str]]]:
        """Per recording: when, and for which purpose, staff consulted it - never who."""
        found: dict[str, list[dict[str, str]]] = {rid: [] for rid in recording_ids}
        for access in self._registers.accesses_of(recording_ids):
            found.setdefault(access.recording_id, []).append(
                {"at": rfc3339(access.at), "purpose": access.purpose.value}
            )
        return found

    def manifest_additions(self, recording_ids: list[str]) -> dict[str, Any]:
        """For an access export's manifest: ``recipients`` and per-recording ``consultations``."""
        return {
            "recipients": self.recipients(recording_ids),
            "consultations": self.consultations(recording_ids),
        }

    def recipients_to_notify(self, recording_ids: list[str]) -> list[dict[str, Any]]:
        """Recipients an erasure or rectification must be communicated to (Art. 19)."""
        return self.recipients(recording_ids)


def _recipient(disclosure: Disclosure, chosen: set[str]) -> dict[str, Any]:
    return {
        "recipient": disclosure.recipient,
        "recipient_kind": disclosure.recipient_kind.value,
        "disclosed_at": rfc3339(disclosure.disclosed_at),
        "recording_ids": [r for r in disclosure.recording_ids if r in chosen],
    }
