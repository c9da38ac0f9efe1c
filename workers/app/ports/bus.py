"""The event bus port: records sent to Kafka (the outbox relay, dead letters, the CLI's
commands). Real adapter: :mod:`workers.adapters.kafka.bus`."""

from __future__ import annotations

from typing import Protocol


class EventBus(Protocol):
    def publish(
        self,
        records: list[tuple[str, str | None, bytes]],
        headers: list[list[tuple[str, bytes]]] | None = None,
    ) -> None:
        """Send (topic, key, value) records; returns only once all are acknowledged. Each
        record carries the CloudEvents structured-mode ``content-type`` header, or the headers
        ``headers`` gives it."""
        ...
