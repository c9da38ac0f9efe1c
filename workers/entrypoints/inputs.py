"""Kafka records become commands here: decode, validate against ``schemas/``, build the
command, hand it to the bus. A record that cannot become a command is dead-lettered with its
stable code (a malformed DSR that still names itself is also answered ``rejected``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..adapters.kafka.codec import Codec, Envelope, binary_data, is_binary
from ..adapters.metrics import Metrics
from ..app.handlers.holds import hold_from_data
from ..app.messagebus import Delivery, MessageBus
from ..app.middleware import DeadLetters
from ..domain import events
from ..domain.errors import PermanentError
from ..domain.keyed import Mac
from ..domain.messages import (
    CarryOutRequest,
    Command,
    PlaceHold,
    RejectRequest,
    ReleaseHold,
    StoreCall,
)
from ..domain.model import CallEnded, DsrRequest, DsrType
from ..settings import Settings

REQUEST_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


@dataclass
class Inputs:
    codec: Codec
    bus: MessageBus
    dead_letters: Callable[[], DeadLetters]
    settings: Settings
    hash_key: Callable[[], Mac]
    metrics: Metrics

    @property
    def logical(self) -> dict[str, str]:
        return {topic: name for name, topic in self.settings.topics().items()}

    def call_ended(self, delivery: Delivery) -> str:
        return self._handle(delivery, (events.CALL_ENDED,), self._store_call)

    def hold_command(self, delivery: Delivery) -> str:
        return self._handle(delivery, (events.HOLD_PLACED, events.HOLD_RELEASED), self._hold)

    def dsr_request(self, delivery: Delivery) -> str:
        return self._handle(
            delivery, (events.DSR_REQUESTED,), self._request, self._answer_malformed
        )

    def _handle(
        self,
        delivery: Delivery,
        accepted: tuple[str, ...],
        command_of: Callable[[Envelope], Command],
        on_malformed: Callable[[Delivery, PermanentError], None] | None = None,
    ) -> str:
        try:
            envelope = self.codec.decode(delivery.value, accepted, delivery.headers)
            command = command_of(envelope)
        except PermanentError as error:
            self.dead_letters().send(delivery, error.error_code, error.message)
            if on_malformed is not None:
                on_malformed(delivery, error)
            topic = self.logical.get(delivery.topic, delivery.topic)
            self.metrics.events_processed.labels(topic=topic, outcome="deadletter").inc()
            return "deadletter"
        with_id = Delivery(**{**delivery.__dict__, "event_id": envelope.id})
        return self.bus.handle(command, with_id)

    def _store_call(self, envelope: Envelope) -> Command:
        return StoreCall(CallEnded.from_data(envelope.id, envelope.data))

    def _hold(self, envelope: Envelope) -> Command:
        if envelope.type == events.HOLD_RELEASED:
            return ReleaseHold(envelope.data["hold_id"])
        hold = hold_from_data(envelope.data, self.hash_key(), self.settings.default_region)
        return PlaceHold(hold)

    def _request(self, envelope: Envelope) -> Command:
        return CarryOutRequest(DsrRequest.from_data(envelope.id, envelope.data))

    def _answer_malformed(self, delivery: Delivery, error: PermanentError) -> None:
        """A malformed request still gets an answer when it names itself, so the portal is
        not left waiting; the event itself went to the dead-letter topic."""
        request_id, dsr_type = request_identity(delivery.value, is_binary(delivery.headers))
        if request_id is not None:
            reason = f"malformed_request: {error.error_code}"
            self.bus.handle(RejectRequest(request_id, dsr_type, reason))


def request_identity(raw: bytes, binary: bool = False) -> tuple[str | None, str | None]:
    """The request id and type of a malformed DSR, where they can still be read safely (in
    binary content mode the value is the data itself)."""
    if binary:
        data = binary_data(raw)
    else:
        try:
            data = json.loads(raw).get("data")
        except (ValueError, AttributeError, RecursionError):
            return None, None
    if not isinstance(data, dict):
        return None, None
    request_id, dsr_type = data.get("request_id"), data.get("type")
    valid_id = isinstance(request_id, str) and REQUEST_ID.fullmatch(request_id) is not None
    known_type = dsr_type if dsr_type in {t.value for t in DsrType} else None
    return (request_id if valid_id else None), known_type
