"""What the console sends out on Kafka: the data-subject requests the DPO registers, exactly
as the DSR portal sends them (under the console's own Kafka principal)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..app.ports.bus import EventBus
from ..domain import events
from .kafka import codec

CODEC = codec.Codec()


class _Publisher:
    """CloudEvents on one topic, through one producer connected on first use; each event is
    checked against its schema first, so that nothing the console sends is dead-lettered."""

    def __init__(self, bus: Callable[[], EventBus], topic: str, source: str) -> None:
        self._bus_factory, self._topic, self._source = bus, topic, source
        self._bus: EventBus | None = None
        self._lock = threading.Lock()

    def _send(self, event_type: str, key: str, data: dict[str, Any]) -> None:
        CODEC.check(event_type, data)
        value = codec.encode(codec.envelope(event_type, data, source=self._source))
        with self._lock:
            if self._bus is None:
                self._bus = self._bus_factory()
            self._bus.publish([(self._topic, key, value)])


class BusRequests(_Publisher):
    """A request the DPO registered, as the portal sends it: ``callvault.dsr.requested.v1``
    on ``dsr.requests``, keyed by request id (under the console's own Kafka principal, which
    may write requests: deploy/kafka/acl-plan.sh)."""

    def submit(self, request_id: str, data: dict[str, Any]) -> None:
        self._send(events.DSR_REQUESTED, request_id, data)
