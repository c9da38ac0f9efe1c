"""The Debian tools tests run (sox, opusenc, pdftotext, ...), which deploy/ installs."""

from __future__ import annotations

import shutil

import pytest


def tool(name: str) -> str:
    """The path of ``name``; the test fails, saying who installs it, when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: `deploy/stack.sh up` installs it (deploy/lib/)")
    return path
