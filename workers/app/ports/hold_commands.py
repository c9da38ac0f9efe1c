"""The hold commands still on their way. A hold published on the holds topic is in force once
a worker has read it into the database; a purge decided before then would miss it - a worker
that was down while compliance placed a hold, started again, would purge what fell due before
its holds consumer had caught up. So a purge first asks how many are pending.

Real adapter: :class:`workers.adapters.kafka.lag.PendingHoldCommands` (the consumer group's
committed offsets against the topic's end); unit tests use the fake's counter."""

from __future__ import annotations

from typing import Protocol


class HoldCommands(Protocol):
    def pending(self) -> int:
        """Hold commands published and not yet applied (none once every one has been read
        into the database and its offset committed). :class:`TransientError` when the broker
        does not answer."""
        ...

    def close(self) -> None:
        """Release the connections; returns at once."""
        ...
