"""Fixtures shared by every suite (the unit suite has its own besides): the contract probe, and
the stack's instances and tokens for the integration and end-to-end suites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.softhsm import SoftToken, delete_token, new_token
from testbed.stack import Instance, drop_instance, ensure_stack, new_instance
from tests.contracts import PortMethod, implementations, kind_of, label, probe


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


@pytest.fixture(autouse=True)
def _contract_probe(request: pytest.FixtureRequest) -> Iterator[None]:
    """A contract test (``tests.contracts.covers``) must call every port method it names on
    the implementation it runs against."""
    named: tuple[PortMethod, ...] = getattr(request.function, "__covers__", ())
    if not named:
        yield
        return
    callspec = getattr(request.node, "callspec", None)
    kind = kind_of(callspec.params if callspec is not None else {})
    with probe(kind, named) as hits:
        yield
    if not getattr(request.node, "passed_call", False):
        return  # a failing test says why itself
    owed = {(port, name) for port, name in named if implementations(port, kind)}
    missing = sorted(label(m) for m in owed - hits)
    if missing:
        pytest.fail(f"named but not called on the {kind} implementation: {', '.join(missing)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if call.when == "call":
        item.passed_call = report.passed  # type: ignore[attr-defined]
    return report
