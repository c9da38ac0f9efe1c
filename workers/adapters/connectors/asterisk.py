"""Asterisk and FreePBX: MixMonitor's post-command, and a watcher of FreePBX's monitor spool.

FreePBX names each recording ``<kind>-<to>-<from>-<YYYYMMDD>-<HHMMSS>-<uniqueid>.<ext>`` under
``monitor/YYYY/MM/DD/``. The numbers in that name go into the event's ``caller``/``callee``
only: the call id is ``<pbx-id>:<UNIQUEID>``, the landing key is callvault's own, and logs
and metrics never carry a file name.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Literal

import structlog

from ...domain.errors import NotAudio, SchemaViolation
from .metrics import ConnectorMetrics
from .publisher import BacklogFull, FinishedCall, Publisher

Direction = Literal["inbound", "outbound"]
log = structlog.get_logger("callvault.connector.asterisk")

UNIQUEID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Headerless formats Asterisk writes: the extension is the only hint of their content.
RAW_TYPES = {".ul": "audio/pcmu", ".ulaw": "audio/pcmu", ".al": "audio/pcma"}
RAW_TYPES |= {".alaw": "audio/pcma", ".gsm": "audio/gsm"}
RECORDING_SUFFIXES = {".wav", ".wav49", ".mp3", ".ogg", ".opus", ".flac", ".au", *RAW_TYPES}
_FREEPBX_NAME = re.compile(
    r"^(?P<kind>[A-Za-z]+\d*)-(?P<parties>.*)-(?P<date>\d{8})-(?P<time>\d{6})"
    r"-(?P<uniqueid>\d+\.\d+)$"
)
_INBOUND_KINDS = re.compile(r"^(?:in|q\d+|g\d+|rg\d*)$")  # DIDs, queues, ring groups
_OUTBOUND_KINDS = re.compile(r"^(?:out|external)$")


def direction_of(text: str) -> Direction:
    """``in``/``inbound``/``out``/``outbound`` in any case, as dialplans write them."""
    word = text.strip().lower()
    if word in ("in", "inbound", "incoming"):
        return "inbound"
    if word in ("out", "outbound", "outgoing"):
        return "outbound"
    raise SchemaViolation("DIRECTION must be in, inbound, out or outbound")


def call_id_for(pbx_id: str, uniqueid: str) -> str:
    if not UNIQUEID.match(uniqueid):
        raise SchemaViolation("UNIQUEID has characters outside A-Za-z0-9._-")
    return f"{pbx_id}:{uniqueid}"


def content_type_for(path: Path) -> str | None:
    """The declared type of a headerless recording; the others are recognised by content."""
    return RAW_TYPES.get(path.suffix.lower())


def mixmonitor_call(
    audio: Path,
    uniqueid: str,
    linkedid: str,
    caller: str,
    callee: str,
    direction: str,
    *,
    pbx_id: str,
    notice_played: bool = True,
    ended_at: datetime | None = None,
) -> FinishedCall:
    """The call MixMonitor's post-command describes (``MixMonitor(file,b,callvault connect
    asterisk-mixmonitor --pbx-id ... -- ^{MIXMONITOR_FILENAME} ${UNIQUEID} ${LINKEDID} ...)``,
    see docs/telephony.md), run at hangup: it ended when the file was last written."""
    if not UNIQUEID.match(linkedid):
        raise SchemaViolation("LINKEDID has characters outside A-Za-z0-9._-")
    end = ended_at or datetime.fromtimestamp(audio.stat().st_mtime, UTC)
    return FinishedCall(
        call_id=call_id_for(pbx_id, uniqueid),
        direction=direction_of(direction),
        caller=caller,
        callee=callee,
        audio=audio,
        ended_at=end,
        content_type=content_type_for(audio),
        notice_played=notice_played,
        vendor={"x_asterisk_linkedid": linkedid},
    )


@dataclass(frozen=True)
class FreePbxName:
    kind: str
    to: str
    source: str  # the "from" part: the caller's number, or empty when withheld
    started_at: datetime
    uniqueid: str


def parse_freepbx_name(path: Path, zone: tzinfo) -> FreePbxName | None:
    """The parts of a FreePBX recording name, or ``None`` when it is not one."""
    match = _FREEPBX_NAME.match(path.name.removesuffix(path.suffix))
    if match is None or path.suffix.lower() not in RECORDING_SUFFIXES:
        return None
    to, separator, source = match["parties"].rpartition("-")
    if not separator:
        return None
    try:
        local = datetime.strptime(match["date"] + match["time"], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return FreePbxName(match["kind"], to, source, local.replace(tzinfo=zone), match["uniqueid"])


def freepbx_call(
    path: Path,
    name: FreePbxName,
    *,
    pbx_id: str,
    direction: Direction,
    notice_played: bool,
    root: Path | None = None,
) -> FinishedCall:
    return FinishedCall(
        call_id=call_id_for(pbx_id, name.uniqueid),
        direction=direction,
        caller=name.source,
        callee=name.to,
        audio=path,
        started_at=name.started_at,
        content_type=content_type_for(path),
        notice_played=notice_played,
        vendor={"x_freepbx_kind": name.kind},
        directory=root,
    )


def freepbx_direction(kind: str, others: Direction | None) -> Direction | None:
    """Inbound for DIDs, queues and ring groups, outbound for trunk calls; ``others`` (internal,
    on-demand, conference ...) when the shop says how to file them, else not sent."""
    if _INBOUND_KINDS.match(kind):
        return "inbound"
    if _OUTBOUND_KINDS.match(kind):
        return "outbound"
    return others


class SpoolWatcher:
    """Polls a FreePBX ``monitor`` directory for recordings nobody has written to for
    ``settle_seconds`` (MixMonitor writes every 20 ms while a call lasts) and submits them.
    Files it cannot send (not audio, not a FreePBX name, internal calls, symlinks and other
    things that are no regular file) stay where they are; nothing outside ``root`` is read or
    deleted, whatever a link points to."""

    def __init__(
        self,
        root: Path,
        publisher: Publisher,
        metrics: ConnectorMetrics,
        *,
        pbx_id: str,
        zone: tzinfo,
        other_kinds: Direction | None = None,
        notice_played: bool = True,
        settle_seconds: float = 10.0,
        clock: Callable[[], float],
    ) -> None:
        self._root = root
        self._publisher = publisher
        self._metrics = metrics
        self._pbx_id = pbx_id
        self._zone = zone
        self._others = other_kinds
        self._notice = notice_played
        self._settle = settle_seconds
        self._clock = clock
        self._refused: set[Path] = set()  # counted once, left in place

    def scan(self) -> int:
        """One pass over the spool; returns how many recordings were queued."""
        queued = 0
        for path in self._settled():
            call = self._call(path)
            if call is None:
                continue
            try:
                outcome = self._publisher.submit(call)
            except BacklogFull:
                log.warning("spool_backlog_full")
                break
            except (NotAudio, SchemaViolation) as exc:
                self._refuse(path, "not_audio" if isinstance(exc, NotAudio) else "bad_request")
                continue
            except Exception:  # noqa: BLE001 - whatever one file does, the spool goes on
                self._refuse(path, "error")
                continue
            queued += outcome == "queued"
        return queued

    def _settled(self) -> Iterator[Path]:
        now = self._clock()
        for directory, _, names in os.walk(self._root):
            for name in sorted(names):
                path = Path(directory) / name
                if path in self._refused:
                    continue
                try:
                    found = path.lstat()  # a symlink is looked at, never followed
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(found.st_mode):
                    self._refuse(path, "unsafe_path")
                elif now - found.st_mtime >= self._settle:
                    yield path

    def _call(self, path: Path) -> FinishedCall | None:
        name = parse_freepbx_name(path, self._zone)
        if name is None:
            self._refuse(path, "unreadable_name")
            return None
        direction = freepbx_direction(name.kind, self._others)
        if direction is None:
            self._refuse(path, "bad_request")
            return None
        return freepbx_call(
            path,
            name,
            pbx_id=self._pbx_id,
            direction=direction,
            notice_played=self._notice,
            root=self._root,
        )

    def _refuse(self, path: Path, reason: str) -> None:
        self._refused.add(path)
        self._metrics.rejected[reason].inc()
        log.warning("spool_file_left_in_place", reason=reason)  # never the name: it has numbers
