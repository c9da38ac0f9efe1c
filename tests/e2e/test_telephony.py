"""Real recorded SIP calls, end to end: two baresip user agents call each other on loopback,
the shop's agent records the call, the Asterisk post-command connector hands it over, and a
``callvault worker`` process stores it - checked from the outside, as a shop would check it."""

from __future__ import annotations

import hashlib
import io
import subprocess
import uuid
import wave
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from testbed.probes import wait_for
from tests.e2e.harness import CALLVAULT, Callvault, cloudevent, stamp
from tests.e2e.sip import RATE, Agent, PlacedCall, RecordingProxy, place_call, speak, tone
from workers.adapters import crypto

SPEECH = "Hello, I am calling about my order. The parcel has not arrived yet."
CUSTOMER = "+37061234567"
NATIONAL = "8 612 34567"  # the same number as the customer writes it in a DSR
SHOP = "852144500"  # the shop's number, as its agent's SIP user


def samples(audio: bytes, channel: int = 0) -> tuple[np.ndarray, int, float]:
    """One channel of a 16-bit PCM WAV as floats, its channel count and its duration."""
    with wave.open(io.BytesIO(audio)) as clip:
        channels, frames = clip.getnchannels(), clip.getnframes()
        data = np.frombuffer(clip.readframes(frames), dtype="<i2").astype(np.float64)
        rate = clip.getframerate()
    return data.reshape(-1, channels)[:, channel], channels, frames / rate


def envelope(signal: np.ndarray, window: int = RATE // 50) -> np.ndarray:
    """Loudness every 20 ms: what survives G.711 and the network, unlike the exact samples."""
    usable = len(signal) // window * window
    return np.sqrt((signal[:usable].reshape(-1, window) ** 2).mean(axis=1))


def best_correlation(heard: np.ndarray, spoken: np.ndarray) -> float:
    """Pearson correlation of the two envelopes at the best alignment (the call adds delay)."""
    a, b = envelope(heard), envelope(spoken)
    best = 0.0
    for lag in range(len(a) - len(b) + 1) if len(a) >= len(b) else [0]:
        window = a[lag : lag + len(b)]
        if len(window) == len(b) and window.std() > 0:
            best = max(best, float(np.corrcoef(window, b)[0, 1]))
    return best


def connect(cv: Callvault, *arguments: str) -> None:
    """``callvault connect ...`` as the telephony system runs it: it succeeds and prints no
    number of the caller's."""
    done = subprocess.run(
        [CALLVAULT, "connect", *arguments],
        env=cv.env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert CUSTOMER not in (done.stdout + done.stderr).decode()


def hand_over(cv: Callvault, call: PlacedCall, uniqueid: str, state: Path) -> str:
    """What the shop's dialplan runs at hang-up: the MixMonitor post-command; the call id."""
    options = ["--pbx-id", "baresip", "--state-dir", str(state), "--"]
    arguments = [str(call.recording), uniqueid, uniqueid, call.peer_uri, SHOP, "in"]
    connect(cv, "asterisk-mixmonitor", *options, *arguments)
    assert not call.recording.exists()  # deleted once Kafka acknowledged the event
    return f"baresip:{uniqueid}"


def vault_audio(cv: Callvault, call_id: str) -> tuple[bytes, dict[str, Any]]:
    """The stored audio, decrypted as callvault would, and the personal data sealed with it."""
    with psycopg.connect(cv.settings.database_url.get_secret_value()) as conn:
        cur = conn.execute(
            "SELECT recording_id::text, object_key, wrapped_key, customer_sealed, "
            "(SELECT count(*) FROM subject_keys s WHERE s.recording_id = r.recording_id) "
            "FROM recordings r WHERE call_id = %s",
            (call_id,),
        )
        found = cur.fetchone()
    assert found is not None, call_id
    recording_id, key, wrapped, sealed, digests = found
    ciphertext = b"".join(cv.objects.get_stream(cv.settings.vault_bucket, key))
    assert ciphertext[:4] == b"CVA1"
    assert b"RIFF" not in ciphertext  # stored encrypted
    dek = crypto.unwrap_key(AESGCM(cv.settings.key("master_key")), bytes(wrapped), recording_id)
    audio = b"".join(crypto.decrypt_stream(dek, recording_id, [ciphertext]))
    personal = crypto.open_json(dek, recording_id, bytes(sealed))
    return audio, personal | {"digests": digests}


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    return speak(SPEECH, tmp_path / "speech.wav")


@pytest.fixture
def shop(tmp_path: Path) -> Any:
    agent = Agent(
        tmp_path / "shop",
        f"sip:{SHOP}@127.0.0.1",
        tone(60, tmp_path / "agent.wav"),
        record_dir=tmp_path / "recordings",
        answer=True,
    ).start()
    yield agent
    agent.stop()


def test_real_sip_calls_are_recorded_handed_over_and_stored(
    callvault: Callvault, shop: Agent, speech: Path, tmp_path: Path
) -> None:
    cv = callvault
    cv.start_worker()
    spoken, _, speech_seconds = samples(speech.read_bytes())
    callers = {
        "withheld": Agent(tmp_path / "anon", "sip:anonymous@anonymous.invalid", speech),
        "numbered": Agent(tmp_path / "customer", f"sip:{CUSTOMER}@127.0.0.1", speech),
    }
    placed: dict[str, PlacedCall] = {}
    sent: dict[str, bytes] = {}
    call_ids: dict[str, str] = {}
    for who, caller in callers.items():
        call = place_call(shop, caller, tmp_path)
        placed[who] = call
        sent[who] = call.recording.read_bytes()
        uniqueid = f"{uuid.uuid4().int % 10**10}.{len(placed)}"
        call_ids[who] = hand_over(cv, call, uniqueid, tmp_path / "state")
    assert placed["withheld"].peer_uri == "sip:anonymous@anonymous.invalid"

    events = cv.read("recordings_stored", lambda seen: len(seen) >= 2, timeout=120)
    stored = {e["data"]["call_id"]: e["data"] for e in events}
    for who, call in placed.items():
        data = stored[call_ids[who]]
        assert data["sha256"] == hashlib.sha256(sent[who]).hexdigest()
        assert data["content_type"] == "audio/wav"
        assert data["channels"] == 2
        audio, personal = vault_audio(cv, data["call_id"])
        assert audio == sent[who]  # byte-identical to what the PBX recorded

        heard, channels, seconds = samples(audio)
        assert channels == 2
        assert seconds == pytest.approx(call.seconds, abs=0.5)  # the call's duration
        assert data["duration_seconds"] == pytest.approx(seconds, abs=0.01)
        assert seconds >= speech_seconds - 0.5
        # G.711 is lossy: the caller's channel follows the speech sent, not its bytes
        assert best_correlation(heard, spoken) > 0.8, who
        agent_side, _, _ = samples(audio, channel=1)
        assert best_correlation(agent_side, spoken) < 0.5  # the other party is on channel 2

        if who == "withheld":
            assert personal["phone"] == "withheld"
            assert personal["digests"] == 0
        else:
            assert personal["phone"] == CUSTOMER
            assert personal["digests"] == 1
    numbered = stored[call_ids["numbered"]]

    request_id = f"dsr-{uuid.uuid4().hex[:10]}"
    data = {
        "request_id": request_id,
        "type": "access",
        "received_at": stamp(datetime.now(UTC)),
        "identity_verified": True,
        "subject": {"phone_numbers": [NATIONAL]},
    }
    cv.send("dsr_requests", request_id, cloudevent("callvault.dsr.requested.v1", data))
    answers = cv.read(
        "dsr_results",
        lambda seen: any(e["data"]["request_id"] == request_id for e in seen),
        timeout=120,
    )
    (answer,) = [e["data"] for e in answers if e["data"]["request_id"] == request_id]
    assert answer["status"] == "completed"
    assert [r["recording_id"] for r in answer["recordings"]] == [numbered["recording_id"]]


def test_calls_recorded_by_rtpengine_behind_kamailio_are_stored(
    callvault: Callvault, shop: Agent, speech: Path, tmp_path: Path
) -> None:
    """The second path: Kamailio proxies the call, rtpengine relays and records its RTP to a
    pcap, and the spool watcher turns the finished call into a stereo WAV for callvault."""
    cv = callvault
    cv.start_worker()
    proxy = RecordingProxy(tmp_path / "proxy", shop_port=shop.sip_port).start()
    try:
        caller = Agent(tmp_path / "customer", f"sip:{CUSTOMER}@127.0.0.1", speech)
        caller.start(f"/dial sip:{SHOP}@127.0.0.1:{proxy.sip_port}", quit_after=120)
        try:
            answered, _ = shop.wait_event("CALL_ESTABLISHED")
            closed, _ = shop.wait_event("CALL_CLOSED", timeout=120)
        finally:
            caller.stop()
        wait_for(lambda: bool(proxy.finished_calls()), 30, "rtpengine's metadata file")
        (metadata,) = proxy.finished_calls()
        pcaps = list((proxy.spool / "pcaps").glob("*.pcap"))
        state = ["--state-dir", str(tmp_path / "state")]
        connect(cv, "rtpengine-spool", str(proxy.spool), "--once", *state)
        assert not metadata.exists()
        assert pcaps
        assert not any(p.exists() for p in pcaps)  # gone once Kafka had the event
    finally:
        proxy.stop()

    (event,) = cv.read("recordings_stored", lambda seen: len(seen) >= 1, timeout=120)
    data = event["data"]
    assert data["call_id"].startswith("kamailio:")
    assert data["channels"] == 2
    audio, personal = vault_audio(cv, data["call_id"])
    heard, channels, seconds = samples(audio)
    assert channels == 2
    assert seconds == pytest.approx(closed - answered, abs=0.5)
    spoken, _, _ = samples(speech.read_bytes())
    assert best_correlation(heard, spoken) > 0.8  # the caller's stream, G.711-decoded
    assert personal["phone"] == CUSTOMER
