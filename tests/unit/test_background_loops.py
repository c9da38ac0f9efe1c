"""The worker's outbox relay and follow-up loops wait for a commit's word instead of polling
the database: a commit wakes the loop that has work, and idle loops ask nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from tests.unit.conftest import World
from workers.domain.messages import PurgesScheduled
from workers.domain.model import PurgeReason
from workers.entrypoints import worker

ROLES = ("outbox", "retention")
WAIT_SECONDS = 10.0
QUIET_SECONDS = 0.3  # three polls of the loops before; none now
BURST_SPACING_SECONDS = 0.002


class Tasks:
    """Plays the Faust application: keeps the background tasks it is given."""

    def __init__(self) -> None:
        self.tasks: list[Callable[[], Coroutine[Any, Any, None]]] = []

    def task(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.tasks.append(fn)


class Loops:
    """The background loops of a worker with the outbox and retention roles, over ``world``,
    counting every step each kind of loop takes."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.steps: Counter[str] = Counter()
        self.app = Tasks()
        worker._background(self.app, world.container, ROLES, self._run)  # type: ignore[arg-type]

    async def _run(self, action: Callable[[], Any]) -> Any:
        relay, dispatcher = self.world.container.relay, self.world.container.dispatcher
        kind = {relay.publish_pending: "relay", dispatcher.drain: "followups"}.get(action)
        self.steps[kind or "other"] += 1
        return await asyncio.to_thread(action)

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            while not condition():
                await asyncio.sleep(0.01)

    async def idle(self) -> Counter[str]:
        """Once every loop took its first step and the one its subscription woke it for."""
        loops = self.world.settings.concurrency
        await self.until(lambda: self.steps == Counter(relay=2, followups=2 * loops))
        return Counter(self.steps)


def run(loops: Loops, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        tasks = [asyncio.create_task(fn()) for fn in loops.app.tasks]
        try:
            await scenario()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


@pytest.fixture
def loops(world: World, monkeypatch: pytest.MonkeyPatch) -> Loops:
    """The fallback polls an hour apart: whatever happens within the test, a word did."""
    monkeypatch.setattr(worker, "RELAY_FALLBACK_SECONDS", 3600.0)
    monkeypatch.setattr(worker, "FOLLOWUPS_FALLBACK_SECONDS", 3600.0)
    return Loops(world)


def announce_due(world: World, call_id: str) -> None:
    """A commit that writes one outbox row (``recording.due``) and no follow-up."""
    rid = world.recording_id(call_id)
    with world.ctx.uow() as uow:
        (recording,) = uow.recordings.lock([rid])
        recording.announce_due(world.clock())
        uow.recordings.update(recording)
        uow.commit()


def test_a_commit_with_outbox_rows_wakes_the_relay_and_idle_loops_ask_nothing(
    world: World, loops: Loops
) -> None:
    world.store_call("c-1")
    published = len(world.bus.records)

    async def scenario() -> None:
        idle = await loops.idle()
        await asyncio.to_thread(announce_due, world, "c-1")
        await loops.until(lambda: len(world.bus.records) > published)
        # the relay published the row, looked once more, found nothing, and waits again
        await loops.until(lambda: loops.steps["relay"] == idle["relay"] + 2)
        await asyncio.sleep(QUIET_SECONDS)
        assert loops.steps == idle + Counter(relay=2)  # the follow-up loops were not woken

    run(loops, scenario)
    assert world.published("retention.due")[-1]["data"]["recording_id"] == world.recording_id("c-1")


def test_a_commit_with_follow_up_rows_wakes_the_follow_up_loops(world: World, loops: Loops) -> None:
    def schedule() -> None:
        with world.ctx.uow() as uow:
            uow.record(PurgesScheduled(("r-unknown",), PurgeReason.RETENTION))
            uow.commit()

    async def scenario() -> None:
        idle = await loops.idle()
        await asyncio.to_thread(schedule)
        await loops.until(lambda: world.db.follow_up_backlog() == 0)
        assert loops.steps["followups"] > idle["followups"]

    run(loops, scenario)


def test_commits_in_quick_succession_are_published_in_one_round(world: World, loops: Loops) -> None:
    """A burst of commits (a hundred stored calls a second) is one relay round per gathering
    pause, not one round - a claim, a Kafka flush, a commit - per event."""
    calls = [f"b-{n}" for n in range(8)]
    for call_id in calls:
        world.store_call(call_id)
    published = len(world.bus.records)

    def burst() -> None:
        for call_id in calls:
            announce_due(world, call_id)
            time.sleep(BURST_SPACING_SECONDS)  # calls arrive a few milliseconds apart

    async def scenario() -> None:
        idle = await loops.idle()
        await asyncio.to_thread(burst)
        await loops.until(lambda: len(world.bus.records) >= published + len(calls))
        await asyncio.sleep(QUIET_SECONDS)
        assert loops.steps["relay"] - idle["relay"] <= 4  # not one round per commit (8)

    run(loops, scenario)


def test_a_loop_that_only_measures_runs_once_a_tick_whatever_it_returns() -> None:
    """The consumer-lag gauge returns the lag it measured: under load that is never 0, and it
    is no work left to do - it must not be measured again and again at once."""
    app, steps = Tasks(), Counter[str]()

    def measure() -> int:
        steps["lag"] += 1
        return 6

    async def run_step(action: Callable[[], Any]) -> Any:
        return action()

    worker._loop(app, "lag", 3600.0, measure, run_step)  # type: ignore[arg-type]

    async def main() -> None:
        (task,) = [asyncio.create_task(fn()) for fn in app.tasks]
        await asyncio.sleep(QUIET_SECONDS)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert steps["lag"] == 1
