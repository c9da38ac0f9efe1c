"""The ``callvault`` entry point (the commands live in :mod:`workers.entrypoints.cli`)."""

from __future__ import annotations

from .entrypoints.cli import cli, main

__all__ = ["cli", "main"]
