"""A typesetter for unit tests: no PDF engine, the letter's HTML kept readable behind a PDF
header, and its attachments remembered (tests/unit/test_letters.py typesets real PDFs)."""

from __future__ import annotations

from collections.abc import Mapping


class FakeTypesetter:
    def __init__(self) -> None:
        self.attachments: list[dict[str, bytes]] = []

    def pdf(self, html: str, attachments: Mapping[str, bytes] | None = None) -> bytes:
        self.attachments.append(dict(attachments or {}))
        return b"%PDF-1.7\n% typeset by the unit tests' fake\n" + html.encode()
