"""The unit-test world: callvault's real services and pipeline wired to the in-memory fakes.

Nothing here touches the network. A :class:`World` plays the systems around callvault: the
telephony system (drops audio in the landing bucket, sends ``call.ended``), the DSR portal,
the compliance team (holds), the scheduler tick and the outbox relay; tests read what
callvault published exactly as a consumer of its Kafka topics would.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fakes.letters import FakeTypesetter
from tests.fakes.memory import (
    MemoryBus,
    MemoryDatabase,
    MemoryHoldCommands,
    MemoryObjectStore,
)
from workers.adapters.fetch import AudioFetcher
from workers.adapters.kafka import codec
from workers.adapters.kafka.codec import Codec
from workers.adapters.metrics import Metrics
from workers.app.background import refresh_gauges
from workers.app.context import Context
from workers.app.handlers.retention import apply_policy
from workers.app.messagebus import Delivery
from workers.app.retry import RetryPolicy
from workers.bootstrap import App, bootstrap
from workers.domain.audio import pcm_wav
from workers.domain.messages import AnnounceDue, Command
from workers.domain.model import Recording, recording_id_for
from workers.domain.retention import rfc3339
from workers.settings import Settings, load_settings

# --- fixed test identities -------------------------------------------------------------------

MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
HASH_KEY = base64.b64encode(bytes(range(32, 64))).decode()
SIGNING_KEY = base64.b64encode(bytes(range(64, 96))).decode()

VAULT, EXPORTS, LANDING = "vault", "exports", "landing"
ALLOWED_HOST = "recordings.pbx.example"

SHOP_PHONE = "+370 521 44500"  # the shop's recorded line (privacy notice)
SHOP_E164 = "+37052144500"
CUSTOMER_PHONE = "+370 612 34567"  # the customer in most tests
CUSTOMER_E164 = "+37061234567"
CUSTOMER_NOTATIONS = (
    "+370 612 34567",
    "8 612 34567",
    "+37061234567",
    "0037061234567",
    "tel:+370-612-34567",
    "sip:+37061234567@pbx.example;user=phone",
    "(8 612) 345 67",
)
CUSTOMER_NAME = "Ona Petraitienė"
CUSTOMER_EMAIL = "ona.petraitiene@example.com"
CUSTOMER_ID = "C-100234"
ORDER_ID = "O-2025-000981"
OTHER_PHONE = "(8 5) 271 2804"  # a second, unrelated customer (landline)
OTHER_E164 = "+37052712804"
OTHER_EMAIL = "jonas.jonaitis@example.net"
OTHER_NAME = "Jonas Jonaitis"

START = datetime(2025, 3, 14, 10, 30, tzinfo=UTC)

# Every form in which a person's data could leak into an output, a log or a metric.
PERSONAL_STRINGS = (
    *CUSTOMER_NOTATIONS,
    CUSTOMER_E164,
    CUSTOMER_E164.lstrip("+"),
    "61234567",
    "612 34567",
    CUSTOMER_NAME,
    "Petraitien",
    CUSTOMER_EMAIL,
    "ona.petraitiene",
    OTHER_PHONE,
    OTHER_E164,
    "52712804",
    "271 2804",
    OTHER_EMAIL,
    "jonas.jonaitis",
    OTHER_NAME,
    "Jonaitis",
    SHOP_PHONE,
    SHOP_E164,
    "52144500",
)


def personal_data_in(text: str) -> list[str]:
    """The personal strings that occur in ``text`` (case-insensitive)."""
    folded = text.casefold()
    return [s for s in PERSONAL_STRINGS if s.casefold() in folded]


# --- audio ----------------------------------------------------------------------------------


def make_wav(seconds: float = 0.25, rate: int = 8000, tone: float = 440.0) -> bytes:
    """A real, playable 8 kHz mono 16-bit WAV (a sine tone)."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        sample = int(12000 * math.sin(2 * math.pi * tone * i / rate))
        frames += sample.to_bytes(2, "little", signed=True)
    return pcm_wav(bytes(frames), rate)


WAV = make_wav()
MP3_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x21" + b"\x00" * 54 + b"\xff\xfb\x90\x64" + b"\x00" * 400
MP3_FRAME = b"\xff\xfb\x90\x64" + b"\x00" * 400  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz
OGG = b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x13OpusHead" + b"\x00" * 200
FLAC = b"fLaC\x00\x00\x00\x22" + b"\x00" * 300
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" + b"\x00" * 100
HTML = b"<!DOCTYPE html><html><body>Not found</body></html>" + b" " * 100


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the controllable clock -----------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        return self.now


# --- settings -------------------------------------------------------------------------------


def settings_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "kafka_bootstrap": "kafka.invalid:9092",
        "database_url": "postgresql://callvault:callvault@db.invalid/callvault",
        "s3_endpoint": "http://s3.invalid:9000",
        "s3_access_key": "test-access",
        "s3_secret_key": "test-secret",
        "vault_bucket": VAULT,
        "export_bucket": EXPORTS,
        "landing_bucket": LANDING,
        "master_key": MASTER_KEY,
        "hash_key": HASH_KEY,
        "signing_key": SIGNING_KEY,
        "fetch_allowed_hosts": ALLOWED_HOST,
        "retention": "P1Y",
    }
    values.update(overrides)
    return values


def make_settings(**overrides: Any) -> Settings:
    return load_settings(**settings_values(**overrides))


# --- CloudEvents ------------------------------------------------------------------------------

_ids = itertools.count(1)


def cloudevent(event_type: str, data: dict[str, Any], *, event_id: str | None = None) -> dict:
    """An input event in callvault's envelope (the Kafka codec's), at a fixed time."""
    return codec.envelope(
        event_type,
        data,
        source="//tests.example/unit",
        id=event_id or f"test-event-{next(_ids)}",
        time=datetime(2025, 3, 14, 10, 21, 3, tzinfo=UTC),
    )


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


def call_data(
    call_id: str,
    uri: str,
    audio: bytes | None = WAV,
    *,
    content_type: str | None = "audio/wav",
    **overrides: Any,
) -> dict[str, Any]:
    """A call-ended payload (inbound, the customer calls the shop) with the customer's data."""
    recording: dict[str, Any] = {"uri": uri}
    if content_type is not None:
        recording["content_type"] = content_type
    if audio is not None:
        recording["size_bytes"] = len(audio)
        recording["sha256"] = sha256(audio)
    data: dict[str, Any] = {
        "call_id": call_id,
        "tenant": "shop-lt",
        "direction": "inbound",
        "caller": CUSTOMER_PHONE,
        "callee": SHOP_PHONE,
        "agent_id": "agent-042",
        "started_at": "2025-03-14T12:15:00+02:00",
        "ended_at": "2025-03-14T12:21:02+02:00",
        "notice_played": True,
        "recording": recording,
        "customer": {
            "name": CUSTOMER_NAME,
            "email": CUSTOMER_EMAIL,
            "customer_id": CUSTOMER_ID,
            "order_ids": [ORDER_ID],
        },
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}  # None drops an optional field


def subject(**identifiers: list[str]) -> dict[str, list[str]]:
    base: dict[str, list[str]] = {
        "phone_numbers": [],
        "emails": [],
        "customer_ids": [],
        "order_ids": [],
    }
    base.update(identifiers)
    return base


# --- the world --------------------------------------------------------------------------------

_CODEC = Codec()  # schemas are read once per session; the codec keeps no per-event state
TOPIC_INPUTS = {
    "calls.ended": "call_ended",
    "dsr.requests": "dsr_request",
    "holds.commands": "hold_command",
}


@dataclass
class World:
    """callvault built by its composition root over the fakes, with a running worker's
    background work (scheduler, follow-ups, outbox relay) done on request."""

    settings: Settings
    clock: Clock
    db: MemoryDatabase
    objects: MemoryObjectStore
    bus: MemoryBus
    metrics: Metrics
    container: App
    fetch_root: Path
    hold_commands: MemoryHoldCommands
    _offsets: dict[str, int] = field(default_factory=dict)

    @property
    def ctx(self) -> Context:
        return self.container.ctx

    # --- inputs ---------------------------------------------------------------------------
    def deliver(
        self,
        topic: str,
        value: bytes,
        key: str | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> str:
        """Hand one Kafka record to the worker's input for ``topic``; then let the worker's
        background work run (follow-ups, outbox)."""
        offset = self._offsets.get(topic, 0)
        self._offsets[topic] = offset + 1
        entry: Callable[[Delivery], str] = getattr(self.container.inputs, TOPIC_INPUTS[topic])
        raw_key = None if key is None else key.encode()
        record = Delivery(topic, 0, offset, raw_key, value, headers=headers)
        outcome = entry(record)
        self.settle()
        return outcome

    def handle(self, command: Command) -> str:
        outcome = self.container.messagebus.handle(command)
        self.settle()
        return outcome

    def settle(self) -> None:
        """Run follow-ups and relay the outbox until nothing is left (a worker's loops)."""
        while self.container.dispatcher.drain() or self.relay_all():
            pass

    def land(self, key: str, audio: bytes) -> str:
        """Put audio in the landing bucket as the PBX does; returns its s3:// URI."""
        self.objects.put_stream(LANDING, key, [audio], content_type="application/octet-stream")
        return f"s3://{LANDING}/{key}"

    def call_event(self, call_id: str, audio: bytes = WAV, **overrides: Any) -> dict[str, Any]:
        uri = self.land(f"2025/03/14/{call_id}.wav", audio)
        return cloudevent("callvault.call.ended.v1", call_data(call_id, uri, audio, **overrides))

    def send_call(self, event: dict[str, Any]) -> str:
        return self.deliver("calls.ended", encode(event), event["data"]["call_id"])

    def store_call(self, call_id: str, audio: bytes = WAV, **overrides: Any) -> Recording:
        """Land audio, send call.ended, and return the stored recording."""
        outcome = self.send_call(self.call_event(call_id, audio, **overrides))
        assert outcome == "stored", outcome
        found = self.recording(call_id)
        assert found is not None
        return found

    def send_dsr(
        self,
        request_id: str,
        dsr_type: str,
        who: dict[str, list[str]],
        *,
        verified: bool = True,
        event_id: str | None = None,
        **extra: Any,
    ) -> str:
        data = {
            "request_id": request_id,
            "type": dsr_type,
            "received_at": rfc3339(self.clock.now),
            "identity_verified": verified,
            "subject": who,
            **extra,
        }
        event = cloudevent("callvault.dsr.requested.v1", data, event_id=event_id)
        return self.deliver("dsr.requests", encode(event), request_id)

    def place_hold(
        self, hold_id: str, scope: dict[str, Any], *, event_id: str | None = None
    ) -> str:
        data = {"hold_id": hold_id, "reason": "consumer dispute", "case_ref": "C-1", "scope": scope}
        event = cloudevent("callvault.hold.placed.v1", data, event_id=event_id)
        return self.deliver("holds.commands", encode(event), hold_id)

    def release_hold(self, hold_id: str) -> str:
        event = cloudevent("callvault.hold.released.v1", {"hold_id": hold_id})
        return self.deliver("holds.commands", encode(event), hold_id)

    def announce(self) -> int:
        """One scheduler round: announce what is due (batch after batch)."""
        total = 0
        while (outcome := self.container.messagebus.handle(AnnounceDue())) != "announced:0":
            total += int(outcome.split(":")[1])
        return total

    def tick(self) -> int:
        """A scheduler round, then the worker carries out the purges it scheduled."""
        announced = self.announce()
        self.settle()
        return announced

    def refresh_gauges(self) -> None:
        refresh_gauges(self.ctx, self.db, self.db)

    # --- outputs ----------------------------------------------------------------------------
    def relay_all(self) -> int:
        total = 0
        while published := self.container.relay.publish_pending():
            total += published
        return total

    def records(self, topic: str) -> list[tuple[str | None, bytes]]:
        return [(k, v) for t, k, v in self.bus.records if t == topic]

    def published(self, topic: str, event_type: str | None = None) -> list[dict[str, Any]]:
        events = [json.loads(v) for _, v in self.records(topic)]
        return [e for e in events if event_type is None or e["type"] == event_type]

    def data(self, topic: str, event_type: str | None = None) -> list[dict[str, Any]]:
        return [e["data"] for e in self.published(topic, event_type)]

    # --- state --------------------------------------------------------------------------------
    def recording_id(self, call_id: str) -> str:
        return recording_id_for(self.container.keys.hasher, call_id)

    def recording(self, call_id: str) -> Recording | None:
        return self.db.state.recordings.get(self.recording_id(call_id))

    def recordings(self) -> list[Recording]:
        return list(self.db.state.recordings.values())

    def subject_keys_of(self, recording_id: str) -> frozenset[bytes]:
        return self.db.state.subject_keys.get(recording_id, frozenset())

    def vault_versions(self, key: str | None = None) -> dict[str, list[Any]]:
        bucket = self.objects.buckets[VAULT]
        return {k: v for k, v in bucket.items() if key is None or k == key}

    def landing_keys(self) -> list[str]:
        return [k for k, versions in self.objects.buckets[LANDING].items() if versions]

    def fetch_export(self, url: str) -> bytes:
        """Follow a presigned URL of the in-memory object store."""
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("https", "memory.invalid"), url
        bucket, _, key = parts.path.lstrip("/").partition("/")
        return b"".join(self.objects.get_stream(bucket, key))

    def export_zip(self, url: str) -> zipfile.ZipFile:
        return zipfile.ZipFile(io.BytesIO(self.fetch_export(url)))

    def audit(self, *, everything: bool = False) -> list[Any]:
        """The audit trail (by default without the policy entry every instance starts with)."""
        with self.db.unit_of_work() as uow:
            entries = uow.audit_entries(0, 10_000)
        return entries if everything else [e for e in entries if e.action != "policy"]

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels or {})


def _no_sleep(_: float) -> None:
    """Retries in unit tests do not wait."""


def build_world(tmp_path: Path, typesetter: Any = None, **settings_overrides: Any) -> World:
    fetch_root = tmp_path / "spool"
    fetch_root.mkdir(exist_ok=True)
    settings = make_settings(**{"fetch_root": str(fetch_root), **settings_overrides})
    clock = Clock(START)
    db = MemoryDatabase(source=settings.source_uri, clock=clock)
    objects, bus, metrics = MemoryObjectStore(clock), MemoryBus(), Metrics()
    objects.ensure_bucket(VAULT, versioned=True, object_lock=True)
    objects.ensure_bucket(EXPORTS, versioned=False, object_lock=False)
    objects.ensure_bucket(LANDING, versioned=False, object_lock=False)
    container = bootstrap(
        settings,
        metrics=metrics,
        clock=clock,
        uow=db,
        objects=objects,
        bus=bus,
        retry=RetryPolicy(
            budget_seconds=60, initial_seconds=0, max_seconds=0, max_attempts=6, sleep=_no_sleep
        ),
        fetcher=AudioFetcher(objects, fetch_root=fetch_root, timeout_seconds=5),
        typesetter=typesetter or FakeTypesetter(),
        wakeups=db.listener(),
        hold_commands=(hold_commands := MemoryHoldCommands()),
    )
    world = World(settings, clock, db, objects, bus, metrics, container, fetch_root, hold_commands)
    apply_policy(world.ctx)
    return world


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CALLVAULT_* variable of the developer's shell leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("CALLVAULT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_world(tmp_path: Path) -> Callable[..., World]:
    return lambda **overrides: build_world(tmp_path, **overrides)


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()
