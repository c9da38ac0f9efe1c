"""Middleware around every handler: correlation ids in the logs, outcome metrics,
dead-lettering of inputs that can never succeed, and the retry budget for transient failures.
Handlers themselves contain none of this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime

import structlog

from ..domain import events
from ..domain.errors import InternalError, PermanentError, TransientError
from .messagebus import Delivery, Envelope, Next
from .ports.bus import EventBus
from .ports.metrics import Metrics
from .retry import RetryPolicy

log = structlog.get_logger("callvault.bus")

# The ids that tie log lines to a request, hold or recording (never personal data; call ids
# may be built from phone numbers, so they are not among them).
CORRELATION_IDS = ("request_id", "hold_id", "recording_id")


def log_context(envelope: Envelope, call_next: Next) -> str:
    command = envelope.command
    bound = {"command": type(command).__name__, **_correlation(envelope)}
    structlog.contextvars.bind_contextvars(**bound)
    try:
        outcome = call_next(envelope)
        # Inputs are logged at info; a timer's or a follow-up's routine round at debug.
        say = log.info if envelope.delivery is not None else log.debug
        say("handled", outcome=outcome, **_position(envelope.delivery))
        return outcome
    finally:
        structlog.contextvars.unbind_contextvars(*bound)


def _correlation(envelope: Envelope) -> dict[str, str]:
    found: dict[str, str] = {}
    if envelope.delivery is not None and envelope.delivery.event_id:
        found["event_id"] = envelope.delivery.event_id
    command = envelope.command
    for field in fields(command):  # type: ignore[arg-type]
        value = getattr(command, field.name)
        if field.name in CORRELATION_IDS and isinstance(value, str):
            found[field.name] = value
        for name in CORRELATION_IDS:
            nested = getattr(value, name, None)
            if isinstance(nested, str):
                found[name] = nested
    return found


def _position(delivery: Delivery | None) -> dict[str, object]:
    if delivery is None:
        return {}
    return {"topic": delivery.topic, "partition": delivery.partition, "offset": delivery.offset}


@dataclass
class CountOutcomes:
    """``callvault_events_processed_total{topic, outcome}``: inputs by their logical topic
    (``calls_ended``: the same label whatever the topic is called), other work by command."""

    metrics: Metrics
    logical: dict[str, str]  # Kafka topic -> logical name

    def __call__(self, envelope: Envelope, call_next: Next) -> str:
        outcome = call_next(envelope)
        delivery = envelope.delivery
        name = type(envelope.command).__name__
        topic = self.logical.get(delivery.topic, delivery.topic) if delivery else name
        self.metrics.events_processed.labels(topic=topic, outcome=outcome.split(":")[0]).inc()
        return outcome


@dataclass
class DeadLetters:
    """Publishes a rejected input, with its original bytes and a stable code, to the
    dead-letter topic, and moves on. Only inputs that came from Kafka are dead-lettered;
    a follow-up that fails for good is kept by its queue instead."""

    bus: EventBus
    topic: str
    encode: Callable[[events.OutboundEvent], bytes]  # the record's value (the Kafka codec's)
    metrics: Metrics
    retry: RetryPolicy
    clock: Callable[[], datetime]

    def __call__(self, envelope: Envelope, call_next: Next) -> str:
        delivery = envelope.delivery
        if delivery is None:
            return call_next(envelope)
        try:
            return call_next(envelope)
        except TransientError:
            raise
        except PermanentError as error:
            self.send(delivery, error.error_code, error.message)
        except Exception as error:  # a bug must not wedge the partition: dead-letter it
            log.exception("handler_failed", error_type=type(error).__name__)
            bug = InternalError(f"unexpected {type(error).__name__}; see the worker log")
            self.send(delivery, bug.error_code, bug.message)
        return "deadletter"

    def send(self, delivery: Delivery, error_code: str, error: str) -> None:
        now = self.clock()
        data = events.deadletter_data(
            source_topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            key=delivery.key,
            error_code=error_code,
            error=error,
            value=delivery.value,
            failed_at=now,
            original_event_id=delivery.event_id,
        )
        position = f"{delivery.topic}/{delivery.partition}/{delivery.offset}"
        key = delivery.key.decode("utf-8", errors="replace") if delivery.key else None
        value = self.encode(
            events.OutboundEvent("deadletter", key or "", events.DEADLETTER, position, now, data)
        )
        headers = [
            events.STRUCTURED_HEADER,
            *((events.ORIGINAL_HEADER_PREFIX + name, raw) for name, raw in delivery.headers),
        ]
        self.retry.call(
            lambda: self.bus.publish([(self.topic, key, value)], [headers]), "dead-letter"
        )
        self.metrics.deadletters.labels(error_code=error_code).inc()
        log.warning("event_dead_lettered", error_code=error_code, **_position(delivery))


@dataclass
class Retry:
    policy: RetryPolicy

    def __call__(self, envelope: Envelope, call_next: Next) -> str:
        return self.policy.call(lambda: call_next(envelope), type(envelope.command).__name__)
