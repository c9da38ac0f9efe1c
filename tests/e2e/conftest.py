from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.stack import Instance
from tests.e2e.harness import Callvault


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def callvault(instance: Instance, tmp_path: Path) -> Iterator[Callvault]:
    """A migrated, isolated callvault with no worker running yet."""
    cv = Callvault(instance, tmp_path)
    cv.migrate()
    try:
        yield cv
    finally:
        cv.stop_all()
