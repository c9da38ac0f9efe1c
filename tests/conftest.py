"""Fixtures shared by the integration and end-to-end suites (the unit suite has its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.stack import Instance, drop_instance, ensure_stack, new_instance


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    return ensure_stack()


@pytest.fixture
def instance(stack: dict[str, str]) -> Iterator[Instance]:
    """An isolated callvault instance on the shared stack, migrated, removed afterwards."""
    created = new_instance(stack)
    try:
        yield created
    finally:
        drop_instance(created)
