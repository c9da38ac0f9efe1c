"""Demo telephony traffic for ``make run``: realistic calls with real audio made locally.

Speech comes from espeak-ng through sox (WAV, FLAC, Ogg/Opus, MP3 where sox has the codec);
without them a synthesized tone WAV stands in. The mix: inbound and outbound calls, Lithuanian
numbers in every common notation, customers with orders, a call without the recording notice,
and now and then a bad event that must land in the dead-letter topic."""

from __future__ import annotations

import math
import random
import shutil
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..adapters.kafka import codec
from ..domain import events
from ..domain.audio import pcm_wav
from ..domain.retention import rfc3339
from ..settings import Settings

SHOP_LINE = "+370 521 44500"
CUSTOMERS = [
    ("+370 612 34567", "8 612 34567", "Ona", "ona@example.lt", "C-1001"),
    ("+37061112222", "(8 611) 12222", "Jonas", "jonas@example.lt", "C-1002"),
    ("+370 5 214 4501", "8 5 214 4501", "Rūta", "ruta@example.lt", "C-1003"),
    ("+370 686 55555", "0037068655555", "Petras", "petras@example.lt", "C-1004"),
]
PHRASES = [
    "Hello, I would like to ask about my order of cat food.",
    "Good afternoon, the dog leash I ordered arrived broken.",
    "Could the veterinarian tell me which food suits a puppy?",
    "I want to change the delivery address of my order.",
]
FORMATS = [
    ("wav", "audio/wav"),
    ("flac", "audio/flac"),
    ("ogg", "audio/ogg"),
    ("mp3", "audio/mpeg"),
]


def tone_wav(seconds: float = 2.0, rate: int = 8000) -> bytes:
    frames = b"".join(
        struct.pack("<h", int(5000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(rate * seconds))
    )
    return pcm_wav(frames, rate)


def speech(text: str, fmt: str, workdir: Path) -> bytes | None:
    """Spoken ``text`` in format ``fmt``, or ``None`` when the tools or codec are missing."""
    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if not espeak or not sox:
        return None
    wav = workdir / f"{uuid.uuid4()}.wav"
    out = workdir / f"{uuid.uuid4()}.{fmt}"
    try:
        subprocess.run(  # noqa: S603 - fixed argv, tools resolved by shutil.which
            [espeak, "-w", str(wav), text], check=True, capture_output=True, timeout=30
        )
        subprocess.run(  # noqa: S603 - fixed argv, tools resolved by shutil.which
            [sox, str(wav), "-r", "16000", str(out)], check=True, capture_output=True, timeout=30
        )
        return out.read_bytes()
    except (subprocess.SubprocessError, OSError):
        return None
    finally:
        wav.unlink(missing_ok=True)
        out.unlink(missing_ok=True)


def calls(seed: int | None = None) -> Iterator[tuple[str, dict[str, Any] | bytes, bytes | None]]:
    """(call_id, call data or raw bad bytes, audio) forever."""
    rng = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix="callvault-demo-"))
    n = 0
    while True:
        n += 1
        call_id = f"demo-{uuid.uuid4().hex[:12]}"
        if n % 17 == 0:
            yield call_id, b'{"specversion": "1.0", "broken": ', None
            continue
        e164, national, name, email, customer_id = rng.choice(CUSTOMERS)
        number = rng.choice([e164, national])
        inbound = rng.random() < 0.7
        fmt, _ = rng.choice(FORMATS)
        audio = speech(rng.choice(PHRASES), fmt, workdir) or tone_wav(rng.uniform(1, 3))
        ended = datetime.now(UTC)
        data: dict[str, Any] = {
            "call_id": call_id,
            "direction": "inbound" if inbound else "outbound",
            "caller": number if inbound else SHOP_LINE,
            "callee": SHOP_LINE if inbound else number,
            "agent_id": f"agent-{rng.randint(1, 5)}",
            "started_at": rfc3339(ended - timedelta(seconds=rng.randint(30, 600))),
            "ended_at": rfc3339(ended),
            "notice_played": n % 11 != 0,
            "customer": {
                "name": name,
                "email": email,
                "customer_id": customer_id,
                "order_ids": [f"ORD-{rng.randint(10000, 99999)}"],
            },
        }
        yield call_id, data, audio


def run(settings: Settings, count: int, rate: float, seed: int | None = None) -> int:
    """Publish ``count`` demo calls (0 = forever) at ``rate`` calls per second."""
    from ..bootstrap import bootstrap

    built = bootstrap(settings)
    objects, bus = built.objects, built.bus
    topic = settings.topic_calls_ended
    sent = 0
    try:
        for call_id, data, audio in calls(seed):
            if isinstance(data, bytes):
                bus.publish([(topic, call_id, data)])
            else:
                assert audio is not None
                key = f"demo/{call_id}.bin"
                objects.put_stream(
                    settings.landing_bucket, key, [audio], content_type="application/octet-stream"
                )
                data["recording"] = {
                    "uri": f"s3://{settings.landing_bucket}/{key}",
                    "size_bytes": len(audio),
                }
                envelope = codec.envelope(
                    events.CALL_ENDED,
                    data,
                    source="urn:callvault:demo-pbx",
                    id=events.event_id(events.CALL_ENDED, call_id),
                )
                bus.publish([(topic, call_id, codec.encode(envelope))])
            sent += 1
            if count and sent >= count:
                break
            time.sleep(1 / rate if rate > 0 else 0)
    finally:
        built.close()
    return sent
