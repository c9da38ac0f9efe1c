"""The one way a connector hands a finished recording to callvault.

1. :meth:`Publisher.submit` reads the local audio once (type, duration, size, SHA-256), builds
   the ``callvault.call.ended.v1`` event with a landing key callvault generates (never a file
   name or a number) and queues both in the connector's :class:`Backlog`.
2. :meth:`Publisher.drain` uploads each queued recording to the landing bucket, publishes its
   event keyed by ``call_id``, and only once Kafka has acknowledged it, records the call as sent
   and deletes the local file. S3 or Kafka away: the call stays queued and the next drain
   retries it, with the same landing key and the same event id, so nothing arrives twice in a
   form callvault would store twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

import structlog
from kafka.errors import KafkaError
from minio.error import S3Error

from ...domain.audio import AudioFacts, AudioProbe
from ...domain.errors import NotAudio, SchemaViolation, TransientError
from ...domain.identifiers import is_party
from ...domain.retention import rfc3339
from ..confined import Beneath, NotRegularFile, OutsideDirectory
from ..kafka.codec import Codec, encode, envelope
from .backlog import Backlog, Pending, ProviderCopy
from .metrics import ConnectorMetrics
from .settings import ConnectorSettings

CALL_ENDED = "callvault.call.ended.v1"
CHUNK = 256 * 1024
CALL_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
log = structlog.get_logger("callvault.connector")


class BacklogFull(Exception):
    """The local backlog holds as many calls as it may: leave the recording where it is."""


@dataclass(frozen=True)
class FinishedCall:
    """A recording the telephony system has finished writing, and what it knows of the call."""

    call_id: str
    direction: Literal["inbound", "outbound"]
    caller: str
    callee: str
    audio: Path
    started_at: datetime | None = None  # None: ended_at minus the audio's duration
    ended_at: datetime | None = None  # None: started_at plus the audio's duration
    content_type: str | None = None  # needed for raw G.711/GSM files only
    notice_played: bool = True
    agent_id: str | None = None
    owned: bool = True  # delete the local file once Kafka acknowledged the event
    companions: tuple[Path, ...] = ()  # files the audio was made from: deleted with it
    # nothing outside these is read or deleted, whatever a path says (None: the audio's parent;
    # the companions' None: the audio's directory)
    directory: Path | None = None
    companions_directory: Path | None = None
    provider_copy: ProviderCopy | None = None  # a cloud provider's copy: remembered, deleted
    vendor: Mapping[str, str] = field(default_factory=dict)  # x_* fields for the shop's tools


class LandingStore(Protocol):
    def put_stream(
        self, bucket: str, key: str, chunks: Iterator[bytes], *, content_type: str
    ) -> str | None: ...


class EventBus(Protocol):
    def publish(self, records: list[tuple[str, str | None, bytes]]) -> None: ...


class Publisher:
    def __init__(
        self,
        settings: ConnectorSettings,
        backlog: Backlog,
        metrics: ConnectorMetrics,
        *,
        objects: LandingStore,
        bus: Callable[[], EventBus],
        codec: Codec,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._backlog = backlog
        self._metrics = metrics
        self._objects = objects
        self._new_bus = bus
        self._bus: EventBus | None = None
        self._clock = clock
        self._codec = codec
        self._update_gauges()

    @property
    def metrics(self) -> ConnectorMetrics:
        return self._metrics

    @property
    def state_dir(self) -> Path:
        """The connector's state directory (its backlog lives there)."""
        return self._backlog.directory

    def knows(self, call_id: str) -> bool:
        """Whether this call is queued or sent already."""
        return self._backlog.was_sent(call_id) or self._backlog.is_pending(call_id)

    def was_sent(self, call_id: str) -> bool:
        return self._backlog.was_sent(call_id)

    def seen_provider_copy(self, copy: ProviderCopy) -> bool:
        """Whether this provider recording was sent before, however long ago."""
        return self._backlog.seen_provider_copy(copy)

    @property
    def backlog(self) -> Backlog:
        return self._backlog

    def backlog_size(self) -> int:
        return self._backlog.size()

    # -- queueing ---------------------------------------------------------------------------
    def submit(self, call: FinishedCall) -> Literal["queued", "duplicate"]:
        """Queue a finished recording; raises :class:`NotAudio`, :class:`SchemaViolation`
        (nothing queued) or :class:`BacklogFull` (try again later)."""
        if not CALL_ID.match(call.call_id):
            raise SchemaViolation("the call id has characters outside A-Za-z0-9._:@-")
        if self.knows(call.call_id):
            self._metrics.duplicates.inc()
            if self._backlog.was_sent(call.call_id) and call.owned:
                self._remove(_pending(call, {}, ""))  # sent before: this copy is a leftover
            return "duplicate"
        if self._backlog.size() >= self._settings.connector_backlog_max:
            self._metrics.rejected["backlog_full"].inc()
            raise BacklogFull(f"{self._backlog.size()} calls are waiting already")
        where = Beneath(call.directory or call.audio.parent)
        try:
            facts, size, sha256 = _read(where.read(call.audio), call.content_type)
        except NotAudio:
            self._metrics.rejected["not_audio"].inc()
            raise
        except (OutsideDirectory, NotRegularFile) as exc:
            self._metrics.rejected["unsafe_path"].inc()
            raise SchemaViolation(f"the recording is not a file beneath {where.directory}") from exc
        key = f"telephony/{uuid.uuid4()}"
        pending = _pending(call, self._event(call, facts, size, sha256, key), key, self._clock())
        if not self._backlog.add(pending):
            self._metrics.duplicates.inc()
            return "duplicate"
        self._metrics.queued.inc()
        self._update_gauges()
        log.info("call_queued", call_id=call.call_id, backlog=self._backlog.size())
        return "queued"

    def _event(
        self, call: FinishedCall, facts: AudioFacts, size: int, sha256: str, key: str
    ) -> dict[str, Any]:
        started, ended = _times(call, timedelta(seconds=facts.duration_seconds or 0.0))
        data: dict[str, Any] = {
            **{k: v for k, v in call.vendor.items() if k.startswith("x_")},
            "call_id": call.call_id,
            "direction": call.direction,
            "caller": self._party(call.caller, "caller"),
            "callee": self._party(call.callee, "callee"),
            "started_at": rfc3339(started),
            "ended_at": rfc3339(ended),
            "notice_played": call.notice_played,
            "recording": {
                "uri": f"s3://{self._settings.landing_bucket}/{key}",
                "content_type": facts.content_type,
                "size_bytes": size,
                "sha256": sha256,
            },
        }
        if self._settings.tenant:
            data["tenant"] = self._settings.tenant
        if call.agent_id:
            data["agent_id"] = call.agent_id
        self._codec.check(CALL_ENDED, data)
        return envelope(
            CALL_ENDED, data, source=f"{self._settings.source_uri}:{self._metrics.connector}"
        )

    def _party(self, value: str, which: str) -> str:
        """The caller or callee as the telephony system gave it, when it is a phone number, a
        ``tel:``/``sip:`` URI or a withheld spelling; anything else (``1;$(id)``, ``1 --x``)
        is refused: logged without the value, counted, and sent as withheld."""
        if is_party(value):
            return value.strip()
        self._metrics.parties_refused[which].inc()
        log.warning("party_refused", party=which, reason="not a number, URI or withheld")
        return "anonymous"

    # -- sending ----------------------------------------------------------------------------
    def drain(self) -> int:
        """Send what is queued, oldest first; stops at the first call S3 or Kafka cannot take.
        Returns how many calls Kafka acknowledged."""
        sent = 0
        with self._backlog.draining() as mine:
            if not mine:
                return 0
            for item in self._backlog.waiting():
                try:
                    self._send(item)
                except TransientError as exc:
                    log.warning("connector_backlog_waits", reason=str(exc))
                    break
                sent += 1
        self._update_gauges()
        return sent

    def _send(self, item: Pending) -> None:
        event = item.event
        if not item.uploaded:
            try:
                audio = Beneath(item.audio_root).open(item.audio)
            except (FileNotFoundError, OutsideDirectory, NotRegularFile):
                self._metrics.rejected["audio_missing"].inc()
                log.error("connector_audio_missing", call_id=item.call_id)
                self._backlog.drop(item.call_id)
                return
            with audio:
                event = self._upload(item, audio)
            self._backlog.mark_uploaded(item.call_id, event)
        self._publish(item.call_id, event)
        self._backlog.mark_sent(item.call_id, self._clock())
        self._metrics.published.inc()
        if item.owned:
            self._remove(item)
        log.info("call_published", call_id=item.call_id)

    def _remove(self, item: Pending) -> None:
        """Delete the audio and its companions, each only beneath its directory."""
        paths = [(item.audio_root, item.audio)]
        paths += [(item.companions_root, path) for path in item.companions]
        for directory, path in paths:
            try:
                Beneath(directory).unlink(path)
            except (OutsideDirectory, OSError) as exc:
                self._metrics.rejected["unsafe_path"].inc()
                log.error(
                    "connector_file_not_deleted", call_id=item.call_id, reason=type(exc).__name__
                )

    def _upload(self, item: Pending, audio: BinaryIO) -> dict[str, Any]:
        digest, size = hashlib.sha256(), 0

        def chunks() -> Iterator[bytes]:
            nonlocal size
            while chunk := audio.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                yield chunk

        try:
            self._objects.put_stream(
                self._settings.landing_bucket,
                item.landing_key,
                chunks(),
                content_type="application/octet-stream",
            )
        except (TransientError, S3Error) as exc:
            self._metrics.failures["upload"].inc()
            raise TransientError(f"landing upload failed: {type(exc).__name__}") from exc
        recording = item.event["data"]["recording"]
        recording.update(size_bytes=size, sha256=digest.hexdigest())  # as uploaded
        return item.event

    def _publish(self, call_id: str, event: dict[str, Any]) -> None:
        topic = self._settings.topic_calls_ended
        try:
            if self._bus is None:
                self._bus = self._new_bus()
            self._bus.publish([(topic, call_id, encode(event))])
        except (TransientError, KafkaError) as exc:
            self._metrics.failures["publish"].inc()
            self._close_bus()
            raise TransientError(f"Kafka did not acknowledge: {type(exc).__name__}") from exc

    def _close_bus(self) -> None:
        bus, self._bus = self._bus, None
        close = getattr(bus, "close", None)
        if close is not None:
            with contextlib.suppress(KafkaError):
                close()

    def close(self) -> None:
        """Close the Kafka producer and the backlog."""
        self._close_bus()
        self._backlog.close()

    def _update_gauges(self) -> None:
        self._metrics.backlog.set(self._backlog.size())
        self._metrics.oldest.set(self._backlog.oldest_age(self._clock()))


def _times(call: FinishedCall, duration: timedelta) -> tuple[datetime, datetime]:
    """Start and end of the call from whichever the telephony system gave, and the audio."""
    if call.started_at is not None:
        return call.started_at, max(call.ended_at or call.started_at + duration, call.started_at)
    if call.ended_at is not None:
        return call.ended_at - duration, call.ended_at
    raise SchemaViolation("a finished call needs its start or its end time")


def _pending(call: FinishedCall, event: dict[str, Any], key: str, now: float = 0.0) -> Pending:
    return Pending(
        call.call_id,
        now,
        event,
        call.audio,
        call.owned,
        key,
        False,
        call.companions,
        call.directory,
        call.companions_directory,
        call.provider_copy,
    )


def _read(chunks: Iterator[bytes], declared: str | None) -> tuple[AudioFacts, int, str]:
    """The audio's facts, size and SHA-256, from one pass over the file."""
    probe, digest = AudioProbe(declared), hashlib.sha256()
    for chunk in chunks:
        probe.feed(chunk)
        digest.update(chunk)
    return probe.finish(), probe.size, digest.hexdigest()
