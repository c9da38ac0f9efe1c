"""Sign-in throttling: attempts counted before the password is checked, per account and
address with a growing pause, per address, and an account locked only when many addresses
fail at it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from argon2 import PasswordHasher

from tests.unit.conftest import START, World
from tests.unit.console_world import PASSWORD, ConsoleWorld, build_console
from workers.app.console.errors import Throttled, Unauthenticated
from workers.app.console.throttle import Rule, Tally, attempt


@pytest.fixture
def cw(world: World) -> ConsoleWorld:
    return build_console(world)


def sign_in(cw: ConsoleWorld, password: str, address: str, username: str = "qa1") -> int:
    """The HTTP status a sign-in would get."""
    try:
        cw.console.accounts.sign_in(username, password, address)
    except (Throttled, Unauthenticated) as refused:
        return refused.status
    return 200


class GatedHasher(PasswordHasher):
    """Argon2id whose checks wait at a gate, so that every attempt the throttle lets through
    is in the middle of its password check at the same time."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.gate = threading.Event()
        self.checking = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.checking += 1
        self.gate.wait(timeout=30)
        return bool(super().verify(hash, password))


def test_parallel_attempts_get_no_more_tries_than_one_after_another(world: World) -> None:
    hasher = GatedHasher()
    cw = build_console(world, hasher=hasher)
    results: list[int] = []

    def one() -> None:
        results.append(sign_in(cw, "wrong-password", "203.0.113.5"))

    with ThreadPoolExecutor(max_workers=20) as pool:
        for _ in range(20):
            pool.submit(one)
        # every attempt is either refused or waiting inside its password check
        while hasher.checking + len(results) < 20:
            threading.Event().wait(0.01)
        hasher.gate.set()
    assert hasher.checking == 5
    assert sorted(results) == [401] * 5 + [429] * 15


def test_wrong_passwords_at_one_address_do_not_lock_the_account(cw: ConsoleWorld) -> None:
    for _ in range(5):
        assert sign_in(cw, "wrong-password", "203.0.113.66") == 401
    assert sign_in(cw, PASSWORD, "203.0.113.66") == 429  # the guesser waits
    assert sign_in(cw, PASSWORD, "198.51.100.20") == 200  # the owner, elsewhere, does not


def test_the_pause_doubles_with_each_further_failure(cw: ConsoleWorld) -> None:
    address = "203.0.113.7"
    for _ in range(5):
        sign_in(cw, "wrong-password", address)
    pauses = []
    for _ in range(4):
        try:
            cw.console.accounts.sign_in("qa1", "wrong-password", address)
        except Throttled as refused:
            pauses.append(refused.retry_after)
            cw.world.clock.advance(seconds=refused.retry_after)
            assert sign_in(cw, "wrong-password", address) == 401  # one more try after the pause
    assert pauses == [30, 60, 120, 240]
    cw.world.clock.advance(minutes=16)  # a quiet window: the count starts again
    assert sign_in(cw, PASSWORD, address) == 200


def test_an_account_is_locked_only_when_many_addresses_fail_at_it(cw: ConsoleWorld) -> None:
    for n in range(19):
        for _ in range(5):
            assert sign_in(cw, "wrong-password", f"198.51.100.{n}") == 401
    assert sign_in(cw, PASSWORD, "203.0.113.1") == 200  # 19 addresses: still open
    assert sign_in(cw, "wrong-password", "198.51.100.19") == 401  # the 20th address
    assert sign_in(cw, PASSWORD, "203.0.113.1") == 429  # now locked, for everyone
    assert sign_in(cw, PASSWORD, "203.0.113.1", username="cx1") == 200  # others are not
    cw.world.clock.advance(minutes=15)
    assert sign_in(cw, PASSWORD, "203.0.113.1") == 200


def test_one_address_trying_many_names_is_paused(cw: ConsoleWorld) -> None:
    for n in range(50):
        assert sign_in(cw, "wrong-password", "203.0.113.9", username=f"guess{n}") == 401
    assert sign_in(cw, PASSWORD, "203.0.113.9") == 429
    assert sign_in(cw, PASSWORD, "203.0.113.10") == 200


def test_sign_ins_that_succeed_do_not_add_up(cw: ConsoleWorld) -> None:
    """A shop's staff behind one address sign in all morning without being paused."""
    for n in range(120):
        assert sign_in(cw, PASSWORD, "192.0.2.1", username=("qa1", "cx1", "dpo1")[n % 3]) == 200


@pytest.mark.parametrize("count", [True, False])
def test_a_paused_key_is_neither_counted_nor_extended(count: bool) -> None:
    rule = Rule(2, timedelta(minutes=15), timedelta(seconds=30), timedelta(minutes=15))
    paused = Tally(2, START, START + timedelta(seconds=30))
    verdict, after = attempt(rule, START + timedelta(seconds=10), count=count)(paused)
    assert not verdict.admitted
    assert verdict.retry_after == timedelta(seconds=20)
    assert after == paused
