"""The typesetting port: a letter written as HTML becomes a PDF a person can print, keep and
forward. Real adapter: :mod:`workers.adapters.pdf` (WeasyPrint); unit tests use a fake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class Typesetter(Protocol):
    def pdf(self, html: str, attachments: Mapping[str, bytes] | None = None) -> bytes:
        """The PDF of a self-contained HTML document (styles inline, no external resource),
        with ``attachments`` (file name -> bytes) embedded as files."""
        ...
