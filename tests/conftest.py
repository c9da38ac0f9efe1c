"""Fixtures shared by the integration and end-to-end suites (the unit suite has its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.softhsm import SoftToken, delete_token, new_token
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


@pytest.fixture(scope="session")
def token_pool(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[SoftToken]]:
    """A SoftHSM2 token for every test of this run that asks for one, made at once: SoftHSM2
    sees only the tokens that existed when a process first loaded it."""
    wanted = sum("soft_token" in getattr(i, "fixturenames", ()) for i in request.session.items)
    tokens = [new_token(tmp_path_factory.mktemp("token")) for _ in range(wanted)]
    try:
        yield list(tokens)  # the tests take theirs from this copy
    finally:
        for token in tokens:
            delete_token(token)


@pytest.fixture
def soft_token(token_pool: list[SoftToken]) -> SoftToken:
    """An empty SoftHSM2 token of this test's own."""
    return token_pool.pop()
