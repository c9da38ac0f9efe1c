"""The handlers the Faust agents call: decode -> validate -> handle -> publish.

Errors follow the taxonomy in :mod:`workers.domain.errors`: transient ones are retried with
bounded exponential backoff (and stop the worker if they persist, so the uncommitted event is
redelivered after a restart); permanent ones send the event to the dead-letter topic with its
stable ``error_code``. A bug (any other exception) must not wedge a partition either: the event
is dead-lettered as ``internal_error`` and can be replayed once the bug is fixed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
import structlog
import urllib3
from minio.error import S3Error
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from .codec import Codec, Envelope
from .domain import events
from .domain.errors import PermanentError, TransientError
from .domain.model import CallEnded, DsrRequest, DsrType, PurgeReason
from .ports import EventBus
from .services.context import Context
from .services.dsr import DsrService
from .services.holds import HoldService
from .services.ingest import IngestService
from .services.purge import PurgeService

log = structlog.get_logger("callvault.pipeline")
T = TypeVar("T")

CORRELATION_IDS = ("call_id", "request_id", "hold_id", "recording_id")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
TRANSIENT = (
    TransientError,
    psycopg.OperationalError,
    urllib3.exceptions.HTTPError,
    S3Error,
    OSError,
)


@dataclass(frozen=True)
class Delivery:
    """One Kafka record as the agent received it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Pipeline:
    def __init__(
        self,
        ctx: Context,
        codec: Codec,
        bus: EventBus,
        ingest: IngestService,
        purge: PurgeService,
        holds: HoldService,
        dsr: DsrService,
        *,
        attempts: int = 6,
        backoff: wait_base | None = None,
    ) -> None:
        self._ctx = ctx
        self._codec = codec
        self._bus = bus
        self._ingest = ingest
        self._purge = purge
        self._holds = holds
        self._dsr = dsr
        self._attempts = attempts
        self._backoff = backoff or wait_exponential(multiplier=0.2, max=10) + wait_random(0, 0.2)

    # one entry point per input topic ------------------------------------------------------
    def on_call_ended(self, delivery: Delivery) -> str:
        def handle(envelope: Envelope) -> str:
            with self._ctx.metrics.ingest_duration.time():
                return self._ingest.handle(CallEnded.from_data(envelope.id, envelope.data))

        return self._process("calls_ended", delivery, (events.CALL_ENDED,), handle)

    def on_retention_due(self, delivery: Delivery) -> str:
        def handle(envelope: Envelope) -> str:
            result = self._purge.purge(envelope.data["recording_id"], PurgeReason.RETENTION)
            return result.verdict.value

        return self._process("retention_due", delivery, (events.DUE,), handle)

    def on_hold_command(self, delivery: Delivery) -> str:
        def handle(envelope: Envelope) -> str:
            if envelope.type == events.HOLD_PLACED:
                change = self._holds.place(self._holds.hold_from_data(envelope.data))
                return "placed" if change.changed else "duplicate"
            change = self._holds.release(envelope.data["hold_id"])
            for recording_id in change.announced_due:
                self._purge.purge(recording_id, PurgeReason.RETENTION)
            if change.recordings:
                self._dsr.resume(change.recordings)
            return "released" if change.changed else "duplicate"

        return self._process(
            "holds_commands", delivery, (events.HOLD_PLACED, events.HOLD_RELEASED), handle
        )

    def on_dsr_request(self, delivery: Delivery) -> str:
        def handle(envelope: Envelope) -> str:
            return self._dsr.handle(DsrRequest.from_data(envelope.id, envelope.data))

        return self._process(
            "dsr_requests", delivery, (events.DSR_REQUESTED,), handle, self._answer_malformed
        )

    def _answer_malformed(self, delivery: Delivery, error: PermanentError) -> None:
        """A malformed request still gets an answer when it names itself, so the portal is
        not left waiting; the event itself goes to the dead-letter topic as well."""
        request_id, dsr_type = _request_identity(delivery.value)
        if request_id is not None:
            reason = f"malformed_request: {error.error_code}"
            self._retrying(lambda: self._dsr.reject_malformed(request_id, dsr_type, reason))

    # the common path -----------------------------------------------------------------------
    def _process(
        self,
        topic: str,
        delivery: Delivery,
        accepted: tuple[str, ...],
        handle: Callable[[Envelope], str],
        on_rejected: Callable[[Delivery, PermanentError], None] | None = None,
    ) -> str:
        event_id: str | None = None
        try:
            envelope = self._codec.decode(delivery.value, accepted)
            event_id = envelope.id
            structlog.contextvars.bind_contextvars(event_id=event_id, **_correlation(envelope))
            outcome = self._retrying(lambda: handle(envelope))
        except PermanentError as error:
            self.dead_letter(delivery, error.error_code, error.message, event_id)
            if on_rejected is not None:
                on_rejected(delivery, error)
            outcome = "deadletter"
        except TRANSIENT:
            structlog.contextvars.unbind_contextvars("event_id", *CORRELATION_IDS)
            raise  # retries exhausted: stop the worker; the event stays uncommitted
        except Exception as error:  # a bug must not wedge the partition: dead-letter it
            log.exception("handler_failed", topic=topic, error_type=type(error).__name__)
            self.dead_letter(
                delivery,
                "internal_error",
                f"unexpected {type(error).__name__}; see the worker log",
                event_id,
            )
            outcome = "deadletter"
        self._ctx.metrics.events_processed.labels(topic=topic, outcome=outcome).inc()
        log.info(
            "event_handled",
            topic=topic,
            partition=delivery.partition,
            offset=delivery.offset,
            outcome=outcome,
        )
        structlog.contextvars.unbind_contextvars("event_id", *CORRELATION_IDS)
        return outcome

    def _retrying(self, action: Callable[[], T]) -> T:
        for attempt in Retrying(
            retry=retry_if_exception_type(TRANSIENT),
            stop=stop_after_attempt(self._attempts),
            wait=self._backoff,
            reraise=True,
            before_sleep=lambda state: log.warning(
                "transient_failure_retrying",
                attempt=state.attempt_number,
                error_type=type(state.outcome.exception()).__name__ if state.outcome else None,
            ),
        ):
            with attempt:
                return action()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def dead_letter(
        self, delivery: Delivery, error_code: str, error: str, event_id: str | None
    ) -> None:
        now = self._ctx.clock()
        data = events.deadletter_data(
            source_topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            key=delivery.key,
            error_code=error_code,
            error=error,
            value=delivery.value,
            failed_at=now,
            original_event_id=event_id,
        )
        envelope = events.cloudevent(
            events.DEADLETTER,
            self._ctx.source,
            f"{delivery.topic}/{delivery.partition}/{delivery.offset}",
            now,
            data,
        )
        key = delivery.key.decode("utf-8", errors="replace") if delivery.key else None
        outbound = events.OutboundEvent("deadletter", key or "", envelope)
        topic = self._ctx.settings.topics()["deadletter"]
        self._retrying(lambda: self._bus.publish([(topic, key, outbound.value())]))
        self._ctx.metrics.deadletters.labels(error_code=error_code).inc()
        log.warning(
            "event_dead_lettered",
            source_topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            error_code=error_code,
        )


def _correlation(envelope: Envelope) -> dict[str, str]:
    """The ids that tie log lines to a call, request, hold or recording (never personal data)."""
    return {k: v for k in CORRELATION_IDS if isinstance(v := envelope.data.get(k), str)}


def _request_identity(raw: bytes) -> tuple[str | None, str | None]:
    """The request id and type of a malformed DSR, where they can still be read safely."""
    try:
        data = json.loads(raw).get("data")
    except (ValueError, AttributeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    request_id, dsr_type = data.get("request_id"), data.get("type")
    valid_id = isinstance(request_id, str) and REQUEST_ID.fullmatch(request_id) is not None
    known_type = dsr_type if dsr_type in {t.value for t in DsrType} else None
    return (request_id if valid_id else None), known_type


class OutboxRelay:
    """Publishes events that handlers enqueued in the same transaction as their effects."""

    def __init__(self, ctx: Context, bus: EventBus, batch: int = 500) -> None:
        self._ctx = ctx
        self._bus = bus
        self._batch = batch

    def publish_pending(self) -> int:
        topics = self._ctx.settings.topics()
        with self._ctx.store.transaction() as tx:
            rows = tx.unpublished(self._batch)
            if not rows:
                return 0
            self._bus.publish([(topics[e.topic], e.key, e.value()) for _, e in rows])
            tx.mark_published([row_id for row_id, _ in rows])
        self._ctx.metrics.outbox_published.inc(len(rows))
        return len(rows)
