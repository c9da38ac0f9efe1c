"""FreeSWITCH's event socket (a fake server speaking ESL, with a RECORD_STOP as FreeSWITCH
sends it) and rtpengine's spool (a metadata file and a pcap built here packet by packet)."""

from __future__ import annotations

import io
import math
import socket
import struct
import threading
import wave
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import WAV

from tests.fakes.connectors import Rig
from workers.adapters.connectors import rtpengine
from workers.adapters.connectors.freeswitch import EslConnection, EslError, EslWatcher
from workers.adapters.connectors.rtp import g711_to_pcm, read_pcap, stereo_wav
from workers.adapters.connectors.rtpengine import RtpengineSpool, call_id_for, parse_metadata

CUSTOMER = "+37061234567"


# --- FreeSWITCH -------------------------------------------------------------------------------


def record_stop(path: Path, caller: str = CUSTOMER) -> bytes:
    headers = {
        "Event-Name": "RECORD_STOP",
        "Core-UUID": "2130a7d1-c1f7-44cd-8fae-8ed5946f3cec",
        "Event-Date-Timestamp": "1741947302250000",
        "Unique-ID": "8b3d9a3e-5c1f-4a0e-9a53-1d2c3b4a5f60",
        "Call-Direction": "inbound",
        "Caller-Caller-ID-Number": caller,
        "Caller-Destination-Number": "852144500",
        "Record-File-Path": str(path),
        "variable_record_seconds": "0",
    }
    body = "".join(f"{k}: {quote(v)}\n" for k, v in headers.items()) + "\n"
    return f"Content-Length: {len(body)}\nContent-Type: text/event-plain\n\n{body}".encode()


class FakeFreeSwitch:
    """An inbound event socket: asks for auth, accepts one password, then sends events."""

    def __init__(self, events: list[bytes], password: str = "ClueCon") -> None:  # noqa: S107 - FreeSWITCH's shipped default, for a fake server
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.events = events
        self.password = password
        self.subscribed: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            reader = conn.makefile("rb")
            conn.sendall(b"Content-Type: auth/request\n\n")
            if self._command(reader) != f"auth {self.password}":
                conn.sendall(b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n")
                return
            conn.sendall(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
            self.subscribed.append(self._command(reader))
            conn.sendall(
                b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n"
            )
            for event in self.events:
                conn.sendall(event)
            conn.sendall(b"Content-Type: text/disconnect-notice\nContent-Length: 0\n\n")

    @staticmethod
    def _command(reader: io.BufferedReader) -> str:
        lines = []
        while (line := reader.readline().decode().rstrip("\n")) or not lines:
            if line:
                lines.append(line)
        return lines[0]


def test_record_stop_events_become_call_ended_events(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "state", connector="freeswitch")
    recording = tmp_path / "recordings" / "call.wav"
    recording.parent.mkdir()
    recording.write_bytes(WAV)
    fake = FakeFreeSwitch([record_stop(recording), record_stop(recording)])
    handle_all(esl_watcher(rig, fake, recording.parent, pbx_id="fs1"), fake)
    assert fake.subscribed == ["event plain RECORD_STOP"]
    (data,) = rig.kafka.data()  # the second, identical event sent nothing twice
    assert data["call_id"] == "fs1:8b3d9a3e-5c1f-4a0e-9a53-1d2c3b4a5f60"
    assert (data["caller"], data["callee"], data["direction"]) == (CUSTOMER, "852144500", "inbound")
    assert data["ended_at"] == "2025-03-14T10:15:02.250000Z"
    assert not recording.exists()


def test_freeswitchs_default_caller_id_is_stored_as_withheld(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "state", connector="freeswitch")
    recording = tmp_path / "call.wav"
    recording.write_bytes(WAV)
    fake = FakeFreeSwitch([record_stop(recording, caller="0000000000")])
    handle_all(esl_watcher(rig, fake, tmp_path), fake)
    (data,) = rig.kafka.data()
    assert data["caller"] == "0000000000"  # callvault recognises it as withheld


def esl_watcher(rig: Rig, fake: FakeFreeSwitch, recordings: Path, pbx_id: str = "fs") -> EslWatcher:
    return EslWatcher(
        rig.publisher,
        rig.metrics,
        host="127.0.0.1",
        port=fake.port,
        password="ClueCon",
        pbx_id=pbx_id,
        recordings_dir=recordings,
    )


def handle_all(watcher: EslWatcher, fake: FakeFreeSwitch) -> None:
    connection = EslConnection("127.0.0.1", fake.port, "ClueCon")
    connection.subscribe("RECORD_STOP")
    for event in connection.events(idle=5):
        assert event is not None
        watcher.handle(event)


@pytest.mark.parametrize("where", ["elsewhere", "dotdot", "symlink", "symlinked-directory"])
def test_a_record_file_path_outside_the_recordings_directory_is_neither_read_nor_deleted(
    tmp_path: Path, where: str
) -> None:
    rig = Rig(tmp_path / "state", connector="freeswitch")
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    secret = tmp_path / "secret" / "other.wav"
    secret.parent.mkdir()
    secret.write_bytes(WAV)
    named = {
        "elsewhere": secret,
        "dotdot": recordings / ".." / "secret" / "other.wav",
        "symlink": recordings / "link.wav",
        "symlinked-directory": recordings / "linked" / "other.wav",
    }[where]
    (recordings / "link.wav").symlink_to(secret)
    (recordings / "linked").symlink_to(secret.parent)
    fake = FakeFreeSwitch([record_stop(named)])
    handle_all(esl_watcher(rig, fake, recordings), fake)
    assert rig.landing.objects == {}
    assert rig.kafka.records == []
    assert secret.exists()
    assert rig.sample("callvault_connector_rejected_total", reason="bad_request") == 1


def test_a_wrong_event_socket_password_is_an_error() -> None:
    fake = FakeFreeSwitch([])
    with pytest.raises(EslError):
        EslConnection("127.0.0.1", fake.port, "not-the-password")


# --- rtpengine --------------------------------------------------------------------------------

OFFER_PORT, ANSWER_PORT = 30000, 30014  # the callee sends to the first, the caller to the second


def _ulaw_encode(sample: int) -> int:
    """Reference G.711 μ-law encoder (for building test packets only)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = max(0, magnitude.bit_length() - 8)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _tone(frequency: float, samples: int) -> list[int]:
    return [int(8000 * math.sin(2 * math.pi * frequency * i / 8000)) for i in range(samples)]


def build_pcap(
    streams: dict[int, list[int]], lose: frozenset[int] = frozenset(), step: int = 160
) -> bytes:
    """Ethernet/IPv4/UDP/RTP packets of 20 ms PCMU, one stream per target port; the RTP
    timestamp advances ``step`` samples a packet (160: as it should)."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for index in range(max(len(s) for s in streams.values()) // 160):
        for target, samples in streams.items():
            if index in lose and target == ANSWER_PORT:
                continue
            payload = bytes(_ulaw_encode(s) for s in samples[index * 160 : (index + 1) * 160])
            rtp = struct.pack(">BBHII", 0x80, 0, 1000 + index, 5000 + step * index, target)
            udp = struct.pack(">HHHH", 40000, target, 8 + len(rtp) + len(payload), 0)
            ip = struct.pack(
                ">BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(udp) + len(rtp) + len(payload),
                0,
                0,
                64,
                17,
                0,
                b"\x7f\x00\x00\x01",
                b"\x7f\x00\x00\x01",
            )
            frame = b"\x00" * 12 + b"\x08\x00" + ip + udp + rtp + payload
            when = 1_741_947_300 + index * 0.02
            out += struct.pack("<IIII", int(when), int((when % 1) * 1e6), len(frame), len(frame))
            out += frame
    return bytes(out)


def channels_of(audio: bytes) -> tuple[list[int], list[int], float]:
    with wave.open(io.BytesIO(audio)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        frames = wav.readframes(wav.getnframes())
        seconds = wav.getnframes() / 8000
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    return list(samples[0::2]), list(samples[1::2]), seconds


def test_pcap_becomes_a_stereo_wav_with_the_caller_on_the_left() -> None:
    caller, callee = _tone(440, 8000), _tone(1000, 8000)
    pcap = build_pcap({ANSWER_PORT: caller, OFFER_PORT: callee}, lose=frozenset({10, 11}))
    assert len(list(read_pcap(pcap))) == 2 * 50 - 2
    left, right, seconds = channels_of(stereo_wav(pcap, ANSWER_PORT, OFFER_PORT))
    assert seconds == pytest.approx(1.0, abs=0.03)
    decoded = struct.unpack("<160h", g711_to_pcm(bytes(_ulaw_encode(s) for s in caller[:160]), 0))
    assert left[:160] == list(decoded)
    assert left[10 * 160 : 12 * 160] == [0] * 320  # lost packets are silence, in place
    assert left[12 * 160 : 12 * 160 + 5] != [0] * 5
    assert right[:160] != left[:160]


METADATA = """{pcap}


Timestamp started ms: 1741947300000.000
SDP mode: offer
SDP before RTP packet: 1

v=0
m=audio {offer} RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000

Timestamp started ms: 1741947300001.000
SDP mode: answer
SDP before RTP packet: 2

v=0
m=audio {answer} RTP/AVP 0 101
a=rtpmap:0 PCMU/8000

Timestamp terminated ms(first monologue): 1741947301000.000

call start time: 2025-03-14T12:15:00
call end time: 2025-03-14T12:15:01


callvault_caller:{caller}|callvault_callee:852144500|callvault_direction:inbound|callvault_call_id:{call_id}
"""


def spool_call(
    spool: Path, call_id: str, caller: str = CUSTOMER, pcap: Path | None = None, step: int = 160
) -> tuple[Path, Path]:
    (spool / "metadata").mkdir(parents=True, exist_ok=True)
    (spool / "pcaps").mkdir(exist_ok=True)
    pcap = pcap or spool / "pcaps" / f"{call_id}-0123456789abcdef.pcap"
    tones = {ANSWER_PORT: _tone(440, 8000), OFFER_PORT: _tone(1000, 8000)}
    pcap.write_bytes(build_pcap(tones, step=step))
    meta = spool / "metadata" / f"rtpengine-meta-{call_id}-0123456789abcdef.txt"
    meta.write_text(
        METADATA.format(
            pcap=pcap, offer=OFFER_PORT, answer=ANSWER_PORT, caller=caller, call_id=call_id
        )
    )
    return meta, pcap


def test_metadata_names_the_pcap_ports_times_and_parties(tmp_path: Path) -> None:
    meta, pcap = spool_call(tmp_path, "a1b2c3")
    found = parse_metadata(meta.read_text())
    assert found.pcaps == [pcap]
    assert found.ports == {"offer": OFFER_PORT, "answer": ANSWER_PORT}
    assert found.started_at is not None
    assert found.started_at.isoformat() == "2025-03-14T10:15:00+00:00"
    assert found.values["callvault_caller"] == CUSTOMER


def test_finished_rtpengine_calls_are_sent_and_their_files_removed(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "state", connector="rtpengine")
    spool = tmp_path / "spool"
    meta, pcap = spool_call(spool, "a1b2c3")
    anonymous, _ = spool_call(spool, "d4e5f6", caller="anonymous")
    watcher = RtpengineSpool(spool, rig.publisher, rig.metrics, pbx_id="kamailio")
    assert watcher.scan() == 2
    assert meta.exists()  # nothing goes before Kafka has the event
    rig.publisher.drain()
    by_id = {d["call_id"]: d for d in rig.kafka.data()}
    assert set(by_id) == {"kamailio:a1b2c3", "kamailio:d4e5f6"}
    first = by_id["kamailio:a1b2c3"]
    assert (first["caller"], first["started_at"], first["ended_at"]) == (
        CUSTOMER,
        "2025-03-14T10:15:00Z",
        "2025-03-14T10:15:01Z",
    )
    assert first["recording"]["content_type"] == "audio/wav"
    assert by_id["kamailio:d4e5f6"]["caller"] == "anonymous"
    assert not meta.exists()
    assert not pcap.exists()
    assert not anonymous.exists()
    assert list((rig.publisher.state_dir / "incoming").iterdir()) == []


def test_sip_call_ids_that_are_not_call_ids_are_digested() -> None:
    assert call_id_for("k", "a84b4c76e66710@pc33.example") == "k:a84b4c76e66710@pc33.example"
    digested = call_id_for("k", "+37061234567/1 2")
    assert digested.startswith("k:sha256-")
    assert "370" not in digested


def quarantined(spool: Path) -> list[str]:
    return sorted(p.name for p in (spool / "metadata" / "quarantine").glob("*"))


def test_a_damaged_spool_entry_is_set_aside_and_counted_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "state", connector="rtpengine")
    (tmp_path / "metadata").mkdir()
    broken = tmp_path / "metadata" / "rtpengine-meta-x-0123456789abcdef.txt"
    broken.write_text("nothing useful\n")
    watcher = RtpengineSpool(tmp_path, rig.publisher, rig.metrics, pbx_id="k")
    assert watcher.scan() == 0
    assert not broken.exists()
    assert quarantined(tmp_path) == [broken.name]
    RtpengineSpool(tmp_path, rig.publisher, rig.metrics, pbx_id="k").scan()  # after a restart
    assert rig.sample("callvault_connector_rejected_total", reason="bad_request") == 1


def test_timestamps_running_past_the_call_are_refused_and_the_spool_goes_on(
    tmp_path: Path,
) -> None:
    """200 packets (4 s of RTP) whose timestamps jump 9.9 s each would be a 64 MB WAV (and a
    5-minute call several GB): refused before the output grows; the next call is still sent."""
    rig = Rig(tmp_path / "state", connector="rtpengine")
    spool = tmp_path / "spool"
    jumping, jumping_pcap = spool_call(spool, "a0jump", step=79_200)
    good, _ = spool_call(spool, "b1good")
    assert jumping_pcap.stat().st_size < 64 * 1024
    watcher = RtpengineSpool(spool, rig.publisher, rig.metrics, pbx_id="kamailio")
    assert watcher.scan() == 1
    rig.publisher.drain()
    assert [d["call_id"] for d in rig.kafka.data()] == ["kamailio:b1good"]
    assert quarantined(spool) == [jumping.name]
    assert jumping_pcap.exists()  # left for whoever looks into it
    assert rig.sample("callvault_connector_rejected_total", reason="too_long") == 1
    assert list((rig.publisher.state_dir / "incoming").iterdir()) == []
    assert not good.exists()


def test_any_failure_sets_the_file_aside_with_a_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(tmp_path / "state", connector="rtpengine")
    spool = tmp_path / "spool"
    first, _ = spool_call(spool, "a0fail")
    spool_call(spool, "b1good")
    calls = iter([MemoryError(), None])

    def flaky(*args: object, **kwargs: object) -> bytes:
        failure = next(calls)
        if failure is not None:
            raise failure
        return stereo_wav(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rtpengine, "stereo_wav", flaky)
    watcher = RtpengineSpool(spool, rig.publisher, rig.metrics, pbx_id="kamailio")
    assert watcher.scan() == 1
    assert quarantined(spool) == [first.name]
    assert rig.sample("callvault_connector_rejected_total", reason="error") == 1


def test_a_pcap_outside_the_spool_is_neither_read_nor_deleted(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "state", connector="rtpengine")
    spool = tmp_path / "spool"
    elsewhere = tmp_path / "elsewhere.pcap"
    meta, _ = spool_call(spool, "a0away", pcap=elsewhere)
    watcher = RtpengineSpool(spool, rig.publisher, rig.metrics, pbx_id="kamailio")
    assert watcher.scan() == 0
    assert rig.kafka.records == []
    assert elsewhere.exists()
    assert quarantined(spool) == [meta.name]
    assert rig.sample("callvault_connector_rejected_total", reason="unsafe_path") == 1


def test_a_metadata_file_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "state", connector="rtpengine")
    spool = tmp_path / "spool"
    real, _ = spool_call(tmp_path / "other", "a0link")
    (spool / "metadata").mkdir(parents=True)
    link = spool / "metadata" / real.name
    link.symlink_to(real)
    RtpengineSpool(spool, rig.publisher, rig.metrics, pbx_id="kamailio").scan()
    assert rig.kafka.records == []
    assert real.exists()
    assert quarantined(spool) == [link.name]
    assert rig.sample("callvault_connector_rejected_total", reason="unsafe_path") == 1
