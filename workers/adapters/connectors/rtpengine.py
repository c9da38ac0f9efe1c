"""Kamailio (or any SIP proxy) + rtpengine: a watcher of rtpengine's recording spool.

With ``--recording-method=pcap`` rtpengine writes each call's RTP to ``pcaps/`` and keeps a
metadata file in ``tmp/`` that it moves to ``metadata/`` - atomically - when the call ends. The
file names the pcap, carries both SDPs and the proxy's ``metadata`` string, where the Kamailio
configuration in docs/telephony.md puts ``callvault_caller``, ``callvault_callee``,
``callvault_direction`` and ``callvault_call_id``. The watcher turns each finished call into a
two-channel WAV (:mod:`.rtp`) and submits it; the WAV, the pcap and the metadata file go once
Kafka has the event.

The metadata file and the pcap are read only beneath the recording directory (a metadata file
naming a pcap elsewhere, or reached through a symlink, is refused), the pcap at most
:data:`PCAP_BYTES_PER_SECOND` of the call, and the WAV no longer than the call plus a margin. A
metadata file that cannot be sent for any reason is moved to ``metadata/quarantine/`` and
counted, so one bad file never stops the spool, nor does it again after a restart.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from ...domain.errors import NotAudio, SchemaViolation
from ..confined import Beneath, NotRegularFile, OutsideDirectory
from .asterisk import Direction, direction_of
from .metrics import ConnectorMetrics
from .publisher import CALL_ID, BacklogFull, FinishedCall, Publisher
from .rtp import MARGIN_SECONDS, TooLong, stereo_wav

log = structlog.get_logger("callvault.connector.rtpengine")
_STARTED = re.compile(r"^Timestamp started ms: ([0-9.]+)$")
_ENDED = re.compile(r"^Timestamp terminated ms.*: ([0-9.]+)$")
_MODE = re.compile(r"^SDP mode: (offer|answer)$")
_MEDIA = re.compile(r"^m=audio (\d+) ")
_NAME = re.compile(r"^rtpengine-meta-(?P<call>.+)-[0-9a-f]{16}\.txt$")
METADATA_BYTES = 1024 * 1024  # two SDPs and a few lines; more is not rtpengine's
PCAP_BYTES_PER_SECOND = 256 * 1024  # G.711 both ways is ~23 KB/s, video a few times that
QUARANTINE = "quarantine"


@dataclass
class CallMetadata:
    """What rtpengine's metadata file says about one recorded call."""

    pcaps: list[Path] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)  # SDP mode -> its audio port
    started_at: datetime | None = None
    ended_at: datetime | None = None
    values: dict[str, str] = field(default_factory=dict)  # from the proxy's metadata string

    @property
    def direction(self) -> Direction:
        return direction_of(self.values.get("callvault_direction", "inbound"))

    @property
    def seconds(self) -> float | None:
        """How long the call lasted, when rtpengine wrote down both ends."""
        if self.started_at is None or self.ended_at is None:
            return None
        return max((self.ended_at - self.started_at).total_seconds(), 0.0)


def parse_metadata(text: str) -> CallMetadata:
    found = CallMetadata()
    lines = text.splitlines()
    mode: str | None = None
    for line in lines:
        line = line.strip()
        if line.endswith(".pcap") and line.startswith("/"):
            found.pcaps.append(Path(line))
        elif match := _STARTED.match(line):
            found.started_at = found.started_at or _epoch_ms(match[1])
        elif match := _ENDED.match(line):
            found.ended_at = _epoch_ms(match[1])
        elif match := _MODE.match(line):
            mode = match[1]
        elif (match := _MEDIA.match(line)) and mode is not None:
            found.ports.setdefault(mode, int(match[1]))
        elif "callvault_" in line:
            for pair in line.split("|"):
                name, _, value = pair.partition(":")
                if name.strip().startswith("callvault_"):
                    found.values[name.strip()] = value.strip()
    return found


def _epoch_ms(text: str) -> datetime:
    return datetime.fromtimestamp(float(text) / 1000, UTC)


def call_id_for(pbx_id: str, sip_call_id: str) -> str:
    """``<pbx-id>:<SIP Call-ID>``, or a digest of the Call-ID where it has characters a call id
    may not (Call-IDs are the user agent's choice, some carry a host or a number)."""
    candidate = f"{pbx_id}:{sip_call_id}"
    if CALL_ID.match(candidate) and "+" not in sip_call_id:
        return candidate
    return f"{pbx_id}:sha256-{hashlib.sha256(sip_call_id.encode()).hexdigest()[:40]}"


class RtpengineSpool:
    """Polls ``<recording-dir>/metadata`` and hands each finished call to the publisher."""

    def __init__(
        self,
        recording_dir: Path,
        publisher: Publisher,
        metrics: ConnectorMetrics,
        *,
        pbx_id: str,
        notice_played: bool = True,
    ) -> None:
        self._spool = Beneath(recording_dir)
        self._pcaps = Beneath(recording_dir / "pcaps")
        self._metadata = recording_dir / "metadata"
        self._publisher = publisher
        self._metrics = metrics
        self._pbx_id = pbx_id
        self._notice = notice_played
        self._work = publisher.state_dir / "incoming"
        self._work.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._refused: set[Path] = set()  # could not be set aside either: skipped until restart

    def scan(self) -> int:
        queued = 0
        for path in sorted(self._metadata.glob("*.txt")):
            if path in self._refused:
                continue
            try:
                queued += self._offer(path) == "queued"
            except BacklogFull:
                log.warning("rtpengine_backlog_full")
                break
            except Exception as exc:  # noqa: BLE001 - whatever one file does, the spool goes on
                self._set_aside(path, exc)
        return queued

    def _set_aside(self, path: Path, exc: Exception) -> None:
        """Move a metadata file that cannot be sent to ``metadata/quarantine/`` (its pcap stays
        in ``pcaps/``), count it and log why - never its name or content."""
        self._metrics.rejected[_reason(exc)].inc()
        log.warning("rtpengine_call_quarantined", reason=type(exc).__name__)
        quarantine = self._metadata / QUARANTINE
        try:
            quarantine.mkdir(mode=0o700, exist_ok=True)
            os.replace(path, quarantine / path.name)  # a symlink moves as itself
        except OSError as failed:
            self._refused.add(path)
            log.error("rtpengine_quarantine_failed", reason=type(failed).__name__)

    def _offer(self, path: Path) -> str:
        text = self._spool.read_bytes(path, METADATA_BYTES).decode(errors="replace")
        meta = parse_metadata(text)
        sip_call_id = meta.values.get("callvault_call_id") or _name_call_id(path)
        call_id = call_id_for(self._pbx_id, sip_call_id)
        companions = (path, *meta.pcaps)
        if any(not self._pcaps.contains(pcap) for pcap in meta.pcaps):
            raise OutsideDirectory("the metadata names a pcap outside the spool's pcaps/")
        if self._publisher.knows(call_id):
            if self._publisher.was_sent(call_id):
                for leftover in companions:
                    self._spool.unlink(leftover)
            return "duplicate"
        if "offer" not in meta.ports or "answer" not in meta.ports or not meta.pcaps:
            raise ValueError("the metadata file names no pcap or lacks an SDP")
        seconds = meta.seconds
        limit = round(((seconds or 4 * 3600) + MARGIN_SECONDS) * PCAP_BYTES_PER_SECOND)
        pcap = self._pcaps.read_bytes(meta.pcaps[0], limit)
        # the offer's port is where the callee sends; the answer's where the caller sends
        audio = stereo_wav(pcap, meta.ports["answer"], meta.ports["offer"], seconds)
        target = self._work / f"{uuid.uuid4()}.wav"
        target.write_bytes(audio)
        try:
            return self._publisher.submit(
                FinishedCall(
                    call_id=call_id,
                    direction=meta.direction,
                    caller=meta.values.get("callvault_caller", ""),
                    callee=meta.values.get("callvault_callee", ""),
                    audio=target,
                    started_at=meta.started_at,
                    ended_at=meta.ended_at,
                    notice_played=self._notice,
                    companions=companions,
                    directory=self._work,
                    companions_directory=self._spool.directory,
                )
            )
        except BaseException:
            target.unlink(missing_ok=True)
            raise


def _reason(exc: Exception) -> str:
    if isinstance(exc, NotAudio):
        return "not_audio"
    if isinstance(exc, (OutsideDirectory, NotRegularFile)):
        return "unsafe_path"
    if isinstance(exc, (TooLong, OverflowError)):
        return "too_long"
    if isinstance(exc, (SchemaViolation, ValueError, OSError)):
        return "bad_request"
    return "error"


def _name_call_id(path: Path) -> str:
    match = _NAME.match(path.name)
    if match is None:
        raise ValueError("not an rtpengine metadata file name")
    return match["call"]
