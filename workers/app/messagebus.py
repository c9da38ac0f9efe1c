"""The message bus: one handler per command type, wrapped in middleware (logging, metrics,
dead-lettering, retry), in the manner of dramatiq's middleware chain. Kafka agents, timers,
the follow-up dispatcher, HTTP routes and CLI commands all hand their commands to it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..domain.messages import Command


@dataclass(frozen=True)
class Delivery:
    """The Kafka record a command came from (absent for timers, follow-ups and the CLI)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event_id: str | None = None
    headers: tuple[tuple[str, bytes], ...] = ()  # the record's Kafka headers


@dataclass(frozen=True)
class Envelope:
    command: Command
    delivery: Delivery | None = None


Handler = Callable[[Any], str]
Next = Callable[[Envelope], str]
Middleware = Callable[[Envelope, Next], str]


class UnknownCommand(Exception):
    """No handler is registered for this command type (a wiring bug)."""


class MessageBus:
    def __init__(
        self, handlers: dict[type[Command], Handler], middleware: Sequence[Middleware] = ()
    ) -> None:
        self._handlers = dict(handlers)
        self._middleware = tuple(middleware)

    def handle(self, command: Command, delivery: Delivery | None = None) -> str:
        """Run ``command`` through the middleware into its handler; returns the outcome."""
        call: Next = self._dispatch
        for middleware in reversed(self._middleware):
            call = _wrap(middleware, call)
        return call(Envelope(command, delivery))

    def _dispatch(self, envelope: Envelope) -> str:
        handler = self._handlers.get(type(envelope.command))
        if handler is None:
            raise UnknownCommand(type(envelope.command).__name__)
        return handler(envelope.command)


def _wrap(middleware: Middleware, inner: Next) -> Next:
    return lambda envelope: middleware(envelope, inner)
