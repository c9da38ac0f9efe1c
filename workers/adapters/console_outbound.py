"""What the console sends out: hold commands on Kafka (exactly as ``callvault hold place``
publishes them) and disclosure packages in the export bucket (the access export's ZIP code)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..app.console.model import Disclosure
from ..app.context import Context
from ..app.handlers.exports import DISCLOSURE_PREFIX, build_export, entry
from ..app.ports.bus import EventBus
from ..domain import events
from ..domain.model import Recording
from ..domain.retention import rfc3339
from .kafka.codec import Codec

CODEC = Codec()


class _Publisher:
    """CloudEvents on one topic, through one producer connected on first use; each event is
    checked against its schema first, so that nothing the console sends is dead-lettered."""

    def __init__(self, bus: Callable[[], EventBus], topic: str, source: str) -> None:
        self._bus_factory, self._topic, self._source = bus, topic, source
        self._bus: EventBus | None = None
        self._lock = threading.Lock()

    def _send(self, event_type: str, key: str, data: dict[str, Any]) -> None:
        CODEC.check(event_type, data)
        event = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": self._source,
            "type": event_type,
            "time": rfc3339(datetime.now(UTC)),
            "datacontenttype": "application/json",
            "data": data,
        }
        with self._lock:
            if self._bus is None:
                self._bus = self._bus_factory()
            self._bus.publish([(self._topic, key, json.dumps(event).encode())])


class BusHoldCommands(_Publisher):
    """``callvault.hold.placed.v1`` / ``released.v1`` on the holds topic, keyed by hold id."""

    def place(self, hold_id: str, reason: str, case_ref: str | None, scope: dict[str, Any]) -> None:
        data: dict[str, Any] = {"hold_id": hold_id, "reason": reason, "scope": scope}
        if case_ref:
            data["case_ref"] = case_ref
        self._send(events.HOLD_PLACED, hold_id, data)

    def release(self, hold_id: str) -> None:
        self._send(events.HOLD_RELEASED, hold_id, {"hold_id": hold_id})


class BusRequests(_Publisher):
    """A request the DPO registered, as the portal sends it: ``callvault.dsr.requested.v1``
    on ``dsr.requests``, keyed by request id (under the console's own Kafka principal, which
    may write requests: deploy/kafka/acl-plan.sh)."""

    def submit(self, request_id: str, data: dict[str, Any]) -> None:
        self._send(events.DSR_REQUESTED, request_id, data)


class ExportPackager:
    """A disclosure's ZIP: the recordings' original audio and a manifest naming the
    disclosure - without the customer's name or e-mail, which the recipient does not need,
    and without other recipients or consultations. It expires like an access export."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def package(self, disclosure: Disclosure, recordings: list[Recording]) -> dict[str, Any]:
        def manifest(
            chosen: list[Recording], now: datetime, files: dict[str, str], ctx: Context
        ) -> dict[str, Any]:
            return _disclosure_manifest(disclosure, chosen, now, files, ctx)

        export = build_export(
            f"{DISCLOSURE_PREFIX}{disclosure.disclosure_id}",
            recordings,
            self._ctx,
            manifest=manifest,
        )
        with self._ctx.uow() as uow:
            uow.exports.add(export.record)
            uow.commit()
        return export.answer


def _disclosure_manifest(
    disclosure: Disclosure,
    recordings: list[Recording],
    now: datetime,
    files: dict[str, str],
    ctx: Context,
) -> dict[str, Any]:
    entries = [entry(r, files.get(r.recording_id), ctx) for r in recordings]
    for item in entries:
        item.pop("personal_data", None)
    return {
        "generated_at": rfc3339(now),
        "disclosure": {
            "disclosure_id": disclosure.disclosure_id,
            "recipient": disclosure.recipient,
            "recipient_kind": disclosure.recipient_kind.value,
            "legal_basis": disclosure.legal_basis,
            "reference": disclosure.reference,
            "disclosed_at": rfc3339(disclosure.disclosed_at),
            "recording_ids": list(disclosure.recording_ids),
        },
        "recordings": entries,
    }
