"""Tests that build and run containers with podman (`make image-test`, `make compose-test`):
slower than `make test` allows, so it leaves them out (marker ``containers``)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/containers/" in str(item.path):
            item.add_marker(pytest.mark.containers)
