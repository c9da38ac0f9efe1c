"""FreeSWITCH: an Event Socket (ESL, inbound mode) client that waits for ``RECORD_STOP``.

FreeSWITCH sends one ``RECORD_STOP`` per finished recording, with the file's path, the
channel's ``Unique-ID``, its caller id and destination number and the call's direction. The
connector runs on the FreeSWITCH host (it reads the file) and reconnects when the socket drops;
recordings that stop while it is disconnected are not announced again by FreeSWITCH - see
docs/telephony.md for ``record_post_process_exec_api``, which closes that gap. A
``Record-File-Path`` is read and deleted only beneath the configured recordings directory.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import structlog

from ...domain.errors import NotAudio, SchemaViolation
from ..confined import Beneath
from .asterisk import UNIQUEID, content_type_for, direction_of
from .metrics import ConnectorMetrics
from .publisher import BacklogFull, FinishedCall, Publisher

log = structlog.get_logger("callvault.connector.freeswitch")
RECONNECT_SECONDS = (1, 2, 5, 10, 30)


class EslError(Exception):
    """The event socket refused us (wrong password) or spoke something else."""


class EslConnection:
    """One authenticated event-socket connection, subscribed to some events."""

    def __init__(self, host: str, port: int, password: str, timeout: float = 10) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self._reader = self._socket.makefile("rb")
        headers, _ = self._message()
        if headers.get("Content-Type") != "auth/request":
            raise EslError("the event socket did not ask for authentication")
        self._command(f"auth {password}")

    def subscribe(self, *events: str) -> None:
        self._command("event plain " + " ".join(events))

    def _command(self, text: str) -> None:
        self._socket.sendall(text.encode() + b"\n\n")
        headers, _ = self._message()
        while headers.get("Content-Type") != "command/reply":
            headers, _ = self._message()
        if not headers.get("Reply-Text", "").startswith("+OK"):
            raise EslError(f"the event socket refused {text.split(' ', 1)[0]!r}")

    def events(self, idle: float) -> Iterator[dict[str, str] | None]:
        """Each event as a header map; ``None`` after ``idle`` seconds without one."""
        self._socket.settimeout(idle)
        while True:
            try:
                headers, body = self._message()
            except TimeoutError:
                yield None
                continue
            kind = headers.get("Content-Type")
            if kind == "text/disconnect-notice":
                return
            if kind == "text/event-plain":
                yield parse_event(body)

    def _message(self) -> tuple[dict[str, str], bytes]:
        headers: dict[str, str] = {}
        while True:
            line = self._reader.readline()
            if not line:
                raise ConnectionError("the event socket closed")
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            if not text:
                if headers:
                    break
                continue
            name, _, value = text.partition(":")
            headers[name.strip()] = value.strip()
        length = int(headers.get("Content-Length", "0") or 0)
        body = self._reader.read(length) if length else b""
        return headers, body

    def close(self) -> None:
        self._reader.close()
        self._socket.close()


def parse_event(body: bytes) -> dict[str, str]:
    """An ``event plain`` body: ``Name: url-encoded value`` lines up to a blank line."""
    found: dict[str, str] = {}
    for line in body.decode("utf-8", errors="replace").split("\n"):
        if not line.strip():
            break
        name, _, value = line.partition(":")
        found[name.strip()] = unquote(value.strip())
    return found


def record_stop_call(
    event: dict[str, str], *, pbx_id: str, notice_played: bool, recordings: Beneath
) -> FinishedCall:
    """The finished recording a ``RECORD_STOP`` event describes; its file must lie beneath
    ``recordings``."""
    unique_id = event.get("Unique-ID", "")
    if not UNIQUEID.match(unique_id):
        raise SchemaViolation("RECORD_STOP without a usable Unique-ID")
    path = Path(event.get("Record-File-Path", ""))
    if not path.is_absolute():
        raise SchemaViolation("RECORD_STOP without an absolute Record-File-Path")
    if not recordings.contains(path):
        raise SchemaViolation("Record-File-Path lies outside the recordings directory")
    stamp = event.get("Event-Date-Timestamp", "")
    ended = datetime.fromtimestamp(int(stamp) / 1e6, UTC) if stamp.isdigit() else None
    return FinishedCall(
        call_id=f"{pbx_id}:{unique_id}",
        direction=direction_of(event.get("Call-Direction", "inbound")),
        caller=event.get("Caller-Caller-ID-Number", ""),
        callee=event.get("Caller-Destination-Number", ""),
        audio=path,
        ended_at=ended,
        content_type=content_type_for(path),
        notice_played=notice_played,
        directory=recordings.directory,
    )


class EslWatcher:
    """Keeps an event-socket connection up and hands every finished recording over."""

    def __init__(
        self,
        publisher: Publisher,
        metrics: ConnectorMetrics,
        *,
        host: str,
        port: int,
        password: str,
        pbx_id: str,
        recordings_dir: Path,
        notice_played: bool = True,
        idle_seconds: float = 5,
    ) -> None:
        self._publisher = publisher
        self._metrics = metrics
        self._address = (host, port, password)
        self._pbx_id = pbx_id
        self._recordings = Beneath(recordings_dir)
        self._notice = notice_played
        self._idle = idle_seconds

    def handle(self, event: dict[str, str]) -> None:
        if event.get("Event-Name") != "RECORD_STOP":
            return
        try:
            call = record_stop_call(
                event, pbx_id=self._pbx_id, notice_played=self._notice, recordings=self._recordings
            )
            self._publisher.submit(call)
        except (NotAudio, SchemaViolation, OSError) as exc:
            reason = "not_audio" if isinstance(exc, NotAudio) else "bad_request"
            self._metrics.rejected[reason].inc()
            log.warning("freeswitch_recording_not_sent", reason=type(exc).__name__)
        except BacklogFull:
            log.error("freeswitch_backlog_full")  # the file stays; `connect drain` sends later
        self._publisher.drain()

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                connection = EslConnection(*self._address)
                connection.subscribe("RECORD_STOP")
                failures = 0
                log.info("freeswitch_connected")
                self._follow(connection, stop)
            except (OSError, EslError) as exc:
                log.warning("freeswitch_disconnected", reason=type(exc).__name__)
            failures += 1
            stop.wait(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS)) - 1])

    def _follow(self, connection: EslConnection, stop: threading.Event) -> None:
        try:
            for event in connection.events(self._idle):
                if stop.is_set():
                    return
                if event is None:
                    self._publisher.drain()  # retry a backlog while FreeSWITCH is quiet
                else:
                    self.handle(event)
        finally:
            connection.close()
