"""A recorded call's RTP, as rtpengine writes it to a pcap file, turned into a two-channel WAV.

Each direction of the call is one RTP stream; rtpengine's metadata file names the port each
side sends to (the ``m=`` line of the offer is where the answerer sends, the answer's where
the offerer sends). Packets are put in order by sequence number, placed on the timeline by
RTP timestamp (gaps become silence) and aligned by arrival time; G.711 μ-law (payload type 0)
and A-law (8) are decoded to 16-bit PCM. Left channel: the caller (offerer); right: the callee.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ...domain.audio import pcm_wav

RATE = 8000
PCMU, PCMA = 0, 8
_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\x4d\x3c\xb2\xa1": ("<", 1e-9)}
_PCAP_MAGIC |= {b"\xa1\xb2\xc3\xd4": (">", 1e-6), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
_ETHERNET, _RAW_IP = 1, 101
_MAX_GAP_SECONDS = 10  # a gap longer than this in one stream is a broken timestamp, not silence
MARGIN_SECONDS = 10  # what the audio may run past the call's duration (clocks, jitter)


class TooLong(ValueError):
    """The packets' timestamps would make the audio longer than the call: a broken or forged
    pcap, refused before its output grows (a few KB of pcap could ask for gigabytes)."""


def _ulaw(byte: int) -> int:
    byte = ~byte & 0xFF
    magnitude = ((((byte & 0x0F) << 3) + 0x84) << ((byte & 0x70) >> 4)) - 0x84
    return -magnitude if byte & 0x80 else magnitude


def _alaw(byte: int) -> int:
    byte ^= 0x55
    segment = (byte & 0x70) >> 4
    value = (byte & 0x0F) << 4
    value = value + 8 if segment == 0 else (value + 0x108) << (segment - 1)
    return value if byte & 0x80 else -value


_DECODE = {
    PCMU: b"".join(struct.pack("<h", _ulaw(b)) for b in range(256)),
    PCMA: b"".join(struct.pack("<h", _alaw(b)) for b in range(256)),
}


def g711_to_pcm(payload: bytes, payload_type: int) -> bytes:
    """16-bit little-endian PCM of G.711 μ-law (0) or A-law (8) bytes."""
    table = _DECODE[payload_type]
    return b"".join(table[2 * b : 2 * b + 2] for b in payload)


@dataclass(frozen=True)
class Packet:
    arrival: float
    source_port: int
    target_port: int
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def read_pcap(data: bytes) -> Iterator[Packet]:
    """The RTP packets (UDP over IPv4/IPv6, Ethernet or raw IP framing) of a pcap file."""
    if data[:4] not in _PCAP_MAGIC:
        raise ValueError("not a pcap file")
    order, unit = _PCAP_MAGIC[data[:4]]
    link = struct.unpack_from(order + "I", data, 20)[0]
    pos = 24
    while pos + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack_from(order + "IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + captured]
        pos += 16 + captured
        packet = _rtp(frame, link, seconds + fraction * unit)
        if packet is not None:
            yield packet


def _rtp(frame: bytes, link: int, arrival: float) -> Packet | None:
    if link == _ETHERNET:
        if len(frame) < 14 or frame[12:14] not in (b"\x08\x00", b"\x86\xdd"):
            return None
        frame = frame[14:]
    elif link != _RAW_IP:
        return None
    if not frame:
        return None
    version = frame[0] >> 4
    if version == 4:
        header, protocol = (frame[0] & 0x0F) * 4, frame[9]
    elif version == 6:
        header, protocol = 40, frame[6]
    else:
        return None
    if protocol != 17 or len(frame) < header + 8 + 12:
        return None
    source, target = struct.unpack_from(">HH", frame, header)
    rtp = frame[header + 8 :]
    if rtp[0] >> 6 != 2 or rtp[1] & 0x7F not in (PCMU, PCMA):  # RTCP and other codecs
        return None
    skip = 12 + 4 * (rtp[0] & 0x0F)
    if rtp[0] & 0x10 and len(rtp) >= skip + 4:  # header extension
        skip += 4 + 4 * struct.unpack_from(">H", rtp, skip + 2)[0]
    payload = rtp[skip:]
    if rtp[0] & 0x20 and payload:  # padding
        payload = payload[: -payload[-1]]
    sequence, timestamp, ssrc = struct.unpack_from(">HII", rtp, 2)
    return Packet(arrival, source, target, rtp[1] & 0x7F, sequence, timestamp, ssrc, payload)


@dataclass
class _Stream:
    packets: list[Packet] = field(default_factory=list)

    def pcm(self, start: float, limit: int) -> bytes:
        """The stream's audio on the call's timeline (time 0 = ``start``), at most ``limit``
        samples long; :class:`TooLong` before it would grow past that."""
        if not self.packets:
            return b""
        ordered = sorted(self.packets, key=_unwrapped_sequence(self.packets))
        first = ordered[0]
        offset = max(round((first.arrival - start) * RATE), 0)
        if offset > limit:
            raise TooLong("a stream starts after the end of the call")
        out = bytearray(2 * offset)
        base = len(out) // 2
        for packet in ordered:
            at = base + ((packet.timestamp - first.timestamp) & 0xFFFFFFFF)
            if at - len(out) // 2 > _MAX_GAP_SECONDS * RATE or at < base:
                continue
            pcm = g711_to_pcm(packet.payload, packet.payload_type)
            if at + len(pcm) // 2 > limit:
                raise TooLong("the packets' timestamps run past the end of the call")
            if 2 * at > len(out):
                out += bytes(2 * at - len(out))
            out[2 * at : 2 * at + len(pcm)] = pcm
        return bytes(out)


def _unwrapped_sequence(packets: list[Packet]) -> Callable[[Packet], int]:
    """Sort key for 16-bit sequence numbers that may wrap within a call."""
    reference = packets[0].sequence

    def key(packet: Packet) -> int:
        delta = (packet.sequence - reference) & 0xFFFF
        return delta - 0x10000 if delta >= 0x8000 else delta

    return key


def stereo_wav(
    pcap: bytes, caller_sends_to: int, callee_sends_to: int, seconds: float | None = None
) -> bytes:
    """A 16-bit 8 kHz WAV: the caller's stream on the left, the callee's on the right, no longer
    than the call (``seconds``; unknown: the span of the packets' arrival) plus
    :data:`MARGIN_SECONDS` - :class:`TooLong` otherwise."""
    streams = {caller_sends_to: _Stream(), callee_sends_to: _Stream()}
    for packet in read_pcap(pcap):
        if packet.target_port in streams:
            streams[packet.target_port].packets.append(packet)
    arrivals = [p.arrival for s in streams.values() for p in s.packets]
    if not arrivals:
        raise ValueError("the pcap holds no G.711 RTP of this call")
    start = min(arrivals)
    length = seconds if seconds is not None else max(arrivals) - start
    limit = round((max(length, 0.0) + MARGIN_SECONDS) * RATE)
    left, right = (streams[port].pcm(start, limit) for port in (caller_sends_to, callee_sends_to))
    length = max(len(left), len(right))
    left, right = left.ljust(length, b"\x00"), right.ljust(length, b"\x00")
    frames = bytearray(2 * length)
    frames[0::4], frames[1::4] = left[0::2], left[1::2]
    frames[2::4], frames[3::4] = right[0::2], right[1::2]
    return pcm_wav(bytes(frames), RATE, channels=2)
