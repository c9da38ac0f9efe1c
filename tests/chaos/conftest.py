"""The chaos suite restarts shared services (Kafka, PostgreSQL) and pauses the object store,
so it never runs by accident among other tests: only when selected with ``-m chaos`` (as
``make chaos`` and the last step of ``make test`` do)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("markexpr") == "chaos":
        return
    skip = pytest.mark.skip(reason="restarts shared services: run alone with -m chaos")
    for item in items:
        if "tests/chaos/" in str(item.path):
            item.add_marker(skip)
