"""The concurrent actors of one agent share a stream: a hold's release read after its placement
must not be handled before it, however long the placement takes (chaos found a release that
overtook the placement it followed after a restart)."""

from __future__ import annotations

import asyncio

from workers.entrypoints.worker import KeyTurns

ACTORS = 4


async def _run(events: list[tuple[bytes | None, float]]) -> tuple[list[int], int]:
    """Four actors take (key, seconds) events from one queue, as Faust's actors do; returns
    the order in which handlers finished and the most handlers that ran at once."""
    queue: asyncio.Queue[tuple[int, bytes | None, float]] = asyncio.Queue()
    for offset, (key, seconds) in enumerate(events):
        queue.put_nowait((offset, key, seconds))
    turns = KeyTurns()
    finished: list[int] = []
    running = 0
    most = 0

    async def actor() -> None:
        nonlocal running, most
        while not queue.empty():
            offset, key, seconds = queue.get_nowait()
            async with turns.turn(key):
                running += 1
                most = max(most, running)
                await asyncio.sleep(seconds)
                running -= 1
                finished.append(offset)

    await asyncio.gather(*(actor() for _ in range(ACTORS)))
    assert not turns._locks  # nothing kept for keys no longer seen
    assert not turns._queued
    return finished, most


def test_a_later_event_with_the_same_key_waits_for_the_earlier_one() -> None:
    place, release = (b"hold-1", 0.05), (b"hold-1", 0.0)
    finished, _ = asyncio.run(_run([place, release]))
    assert finished == [0, 1]


def test_one_key_keeps_its_order_among_others() -> None:
    events = [(b"a", 0.03), (b"b", 0.0), (b"a", 0.01), (b"c", 0.0), (b"a", 0.0), (b"b", 0.0)]
    finished, _ = asyncio.run(_run(events))
    assert [o for o in finished if events[o][0] == b"a"] == [0, 2, 4]
    assert [o for o in finished if events[o][0] == b"b"] == [1, 5]


def test_events_with_other_keys_or_none_run_at_once() -> None:
    events = [(b"a", 0.02), (b"b", 0.02), (None, 0.02), (None, 0.02)]
    _, most = asyncio.run(_run(events))
    assert most == ACTORS
