"""Cloud telephony webhooks through Starlette's TestClient: signatures (with Twilio's published
test vector), replays, the allow-list, and the call.ended events that come out."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from conftest import WAV
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.fakes.connectors import Rig
from workers.adapters.connectors.webhooks import (
    AllowListedDownloader,
    Refused,
    WebhookConfig,
    twilio_signature,
    webhook_router,
)

BASE = "https://hooks.shop.example"
TWILIO_TOKEN = "12345"
VONAGE_SECRET = "vonage-signature-secret-of-the-shop"
CUSTOMER = "+37061234567"
SHOP = "+37052144500"
TWILIO_MEDIA = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"


class FakeDownloads:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []

    def __call__(self, url: str, headers: Mapping[str, str]) -> Iterator[bytes]:
        self.requests.append((url, dict(headers)))
        yield self.files[url]


@pytest.fixture
def telnyx_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def world(tmp_path: Path, telnyx_key: Ed25519PrivateKey) -> Any:
    rig = Rig(tmp_path / "state", connector="webhooks")
    downloads = FakeDownloads()
    public = telnyx_key.public_key().public_bytes_raw()
    config = WebhookConfig(
        public_base_url=BASE,
        allowed_hosts=("api.twilio.com", "api.telnyx.com", "api.nexmo.com"),
        twilio_account_sid="AC1",
        twilio_auth_token=TWILIO_TOKEN,
        telnyx_public_key=base64.b64encode(public).decode(),
        vonage_signature_secret=VONAGE_SECRET,
    )
    app = FastAPI()
    app.include_router(
        webhook_router(config, rig.publisher, state_dir=tmp_path / "hooks", download=downloads)
    )
    return TestClient(app), rig, downloads


# --- Twilio -----------------------------------------------------------------------------------


def test_twilio_signature_matches_twilios_published_test_vector() -> None:
    params = {
        "CallSid": ["CA1234567890ABCDE"],
        "Caller": ["+14158675309"],
        "Digits": ["1234"],
        "From": ["+14158675309"],
        "To": ["+18005551212"],
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def twilio_request(path: str, form: dict[str, str], token: str = TWILIO_TOKEN) -> dict[str, Any]:
    """The body and headers of a form Twilio signs and posts to ``path``."""
    signature = twilio_signature(token, BASE + path, {k: [v] for k, v in form.items()})
    return {
        "content": urlencode(form),
        "headers": {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    }


def twilio_post(
    client: TestClient, path: str, form: dict[str, str], token: str = TWILIO_TOKEN
) -> Any:
    return client.post(path, **twilio_request(path, form, token))


CALL_STATUS = {"CallSid": "CA1", "From": CUSTOMER, "To": SHOP, "Direction": "inbound"}
RECORDING_STATUS = {
    "AccountSid": "AC1",
    "CallSid": "CA1",
    "RecordingSid": "RE1",
    "RecordingUrl": TWILIO_MEDIA,
    "RecordingStatus": "completed",
    "RecordingStartTime": "Fri, 14 Mar 2025 10:15:00 +0000",
    "RecordingDuration": "1",
}


def test_twilio_recording_and_call_become_one_call_ended_event(world: Any) -> None:
    client, rig, downloads = world
    downloads.files[TWILIO_MEDIA + ".wav"] = WAV
    assert twilio_post(client, "/webhooks/twilio/recording", RECORDING_STATUS).status_code == 204
    assert rig.kafka.records == []  # the numbers are not known yet
    assert twilio_post(client, "/webhooks/twilio/call", CALL_STATUS).status_code == 204

    (data,) = rig.kafka.data()
    assert data["call_id"] == "twilio:RE1"
    assert (data["caller"], data["callee"], data["direction"]) == (CUSTOMER, SHOP, "inbound")
    assert data["started_at"] == "2025-03-14T10:15:00Z"
    assert rig.landing.objects[data["recording"]["uri"].removeprefix("s3://landing/")] == WAV
    ((url, headers),) = downloads.requests
    assert url == TWILIO_MEDIA + ".wav"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"AC1:12345").decode()

    # Twilio delivers again (a retry): the same answer, nothing twice
    assert twilio_post(client, "/webhooks/twilio/call", CALL_STATUS).status_code == 204
    assert twilio_post(client, "/webhooks/twilio/recording", RECORDING_STATUS).status_code == 204
    assert len(rig.kafka.records) == 1
    assert len(downloads.requests) == 1


@pytest.mark.parametrize(
    "forge",
    [
        lambda form: twilio_signature("wrong-token", BASE + "/webhooks/twilio/call", form),
        lambda form: twilio_signature(TWILIO_TOKEN, BASE + "/elsewhere", form),
        lambda form: "",
    ],
    ids=["other-token", "other-url", "missing"],
)
def test_twilio_requests_without_a_valid_signature_are_refused(world: Any, forge: Any) -> None:
    client, rig, _ = world
    form = {k: [v] for k, v in CALL_STATUS.items()}
    response = client.post(
        "/webhooks/twilio/call",
        content=urlencode(CALL_STATUS),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": forge(form),
        },
    )
    assert response.status_code == 403
    assert rig.sample("callvault_connector_rejected_total", reason="bad_request") == 1


def test_a_tampered_twilio_field_breaks_the_signature(world: Any) -> None:
    client, _, _ = world
    signature = twilio_signature(
        TWILIO_TOKEN, BASE + "/webhooks/twilio/call", {k: [v] for k, v in CALL_STATUS.items()}
    )
    tampered = CALL_STATUS | {"From": "+37069999999"}
    response = client.post(
        "/webhooks/twilio/call",
        content=urlencode(tampered),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert response.status_code == 403


def test_recordings_are_fetched_only_from_allow_listed_hosts(world: Any) -> None:
    client, rig, downloads = world
    elsewhere = RECORDING_STATUS | {"RecordingUrl": "https://attacker.example/r"}
    assert twilio_post(client, "/webhooks/twilio/recording", elsewhere).status_code == 403
    twilio_post(client, "/webhooks/twilio/call", CALL_STATUS)
    assert downloads.requests == []
    assert rig.kafka.records == []


# --- Telnyx -----------------------------------------------------------------------------------


def telnyx_post(
    client: TestClient, key: Ed25519PrivateKey, event: dict[str, Any], sent: float | None = None
) -> Any:
    body = json.dumps({"data": event}).encode()
    timestamp = str(int(sent if sent is not None else time.time()))
    signature = base64.b64encode(key.sign(timestamp.encode() + b"|" + body)).decode()
    return client.post(
        "/webhooks/telnyx",
        content=body,
        headers={
            "Content-Type": "application/json",
            "telnyx-signature-ed25519": signature,
            "telnyx-timestamp": timestamp,
        },
    )


TELNYX_WAV = "https://api.telnyx.com/v2/recordings/r1.wav"
TELNYX_CALL = {
    "event_type": "call.initiated",
    "id": str(uuid.uuid4()),
    "payload": {"call_leg_id": "leg-1", "from": CUSTOMER, "to": SHOP, "direction": "incoming"},
}
TELNYX_SAVED = {
    "event_type": "call.recording.saved",
    "id": str(uuid.uuid4()),
    "payload": {
        "call_leg_id": "leg-1",
        "recording_started_at": "2025-03-14T10:15:00Z",
        "recording_ended_at": "2025-03-14T10:15:01Z",
        "channels": "single",
        "recording_urls": {"wav": TELNYX_WAV, "mp3": TELNYX_WAV.replace(".wav", ".mp3")},
    },
}


def test_telnyx_recording_saved_becomes_a_call_ended_event(
    world: Any, telnyx_key: Ed25519PrivateKey
) -> None:
    client, rig, downloads = world
    downloads.files[TELNYX_WAV] = WAV
    assert telnyx_post(client, telnyx_key, TELNYX_CALL).status_code == 204
    assert telnyx_post(client, telnyx_key, TELNYX_SAVED).status_code == 204
    (data,) = rig.kafka.data()
    assert data["call_id"] == "telnyx:leg-1"
    assert (data["caller"], data["direction"]) == (CUSTOMER, "inbound")
    assert (data["started_at"], data["ended_at"]) == (
        "2025-03-14T10:15:00Z",
        "2025-03-14T10:15:01Z",
    )


def test_telnyx_replays_and_forgeries_are_refused(
    world: Any, telnyx_key: Ed25519PrivateKey
) -> None:
    client, rig, _ = world
    stale = telnyx_post(client, telnyx_key, TELNYX_CALL, sent=time.time() - 600)
    assert stale.status_code == 403
    forged = telnyx_post(client, Ed25519PrivateKey.generate(), TELNYX_CALL)
    assert forged.status_code == 403
    body = json.dumps({"data": TELNYX_CALL}).encode()
    timestamp = str(int(time.time()))
    good = base64.b64encode(telnyx_key.sign(timestamp.encode() + b"|" + body)).decode()
    tampered = client.post(
        "/webhooks/telnyx",
        content=body.replace(CUSTOMER.encode(), b"+37069999999"),
        headers={"telnyx-signature-ed25519": good, "telnyx-timestamp": timestamp},
    )
    assert tampered.status_code == 403
    assert rig.kafka.records == []


# --- Vonage -----------------------------------------------------------------------------------


def vonage_post(
    client: TestClient,
    event: dict[str, Any],
    *,
    secret: str = VONAGE_SECRET,
    jti: str | None = None,
    issued: float | None = None,
    hashed: bytes | None = None,
) -> Any:
    body = json.dumps(event).encode()
    claims = {
        "iat": int(issued if issued is not None else time.time()),
        "jti": jti or str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(hashed or body).hexdigest(),
        "api_key": "abc123",
        "application_id": "app-1",
    }
    token = jwt.encode(claims, secret, algorithm="HS256")
    return client.post(
        "/webhooks/vonage/event",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )


VONAGE_MEDIA = "https://api.nexmo.com/v1/files/rec-1"
VONAGE_ANSWERED = {
    "from": "37061234567",
    "to": "37052144500",
    "uuid": "leg-1",
    "conversation_uuid": "CON-1",
    "status": "answered",
    "direction": "inbound",
}
VONAGE_RECORDED = {
    "start_time": "2025-03-14T10:15:00Z",
    "end_time": "2025-03-14T10:15:01Z",
    "recording_url": VONAGE_MEDIA,
    "recording_uuid": "rec-1",
    "conversation_uuid": "CON-1",
    "size": len(WAV),
}


def test_vonage_record_event_becomes_a_call_ended_event(world: Any) -> None:
    client, rig, downloads = world
    downloads.files[VONAGE_MEDIA] = WAV
    assert vonage_post(client, VONAGE_ANSWERED).status_code == 204
    assert vonage_post(client, VONAGE_RECORDED).status_code == 204
    (data,) = rig.kafka.data()
    assert data["call_id"] == "vonage:rec-1"
    assert (data["caller"], data["callee"]) == ("37061234567", "37052144500")


@pytest.mark.parametrize(
    "options",
    [
        {"secret": "another-secret-of-thirty-two-bytes!"},
        {"issued": time.time() - 3600},
        {"hashed": b"another body"},
    ],
    ids=["bad-signature", "stale-token", "body-not-signed"],
)
def test_vonage_forgeries_are_refused(world: Any, options: dict[str, Any]) -> None:
    client, rig, _ = world
    assert vonage_post(client, VONAGE_ANSWERED, **options).status_code == 403
    assert rig.sample("callvault_connector_rejected_total", reason="bad_request") == 1


def test_a_replayed_vonage_token_is_refused(world: Any) -> None:
    client, _, _ = world
    assert vonage_post(client, VONAGE_ANSWERED, jti="once").status_code == 204
    assert vonage_post(client, VONAGE_ANSWERED, jti="once").status_code == 403


def test_only_providers_with_secrets_get_routes(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "state")
    app = FastAPI()
    config = WebhookConfig(twilio_auth_token="t")
    app.include_router(webhook_router(config, rig.publisher, state_dir=tmp_path / "h"))
    paths = set(app.openapi()["paths"])
    assert "/webhooks/twilio/call" in paths
    assert "/webhooks/telnyx" not in paths
    assert "/webhooks/vonage/event" not in paths


# --- the downloader ---------------------------------------------------------------------------


class _Media(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect-away":
            self.send_response(302)
            self.send_header("Location", "http://attacker.invalid/steal")
            self.end_headers()
            return
        if self.path == "/redirect-home":
            self.send_response(302)
            self.send_header("Location", "/audio.wav")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(WAV)))
        self.end_headers()
        self.wfile.write(WAV)

    def log_message(self, *args: Any) -> None:
        pass


def test_downloads_follow_redirects_only_to_allow_listed_hosts() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Media)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        download = AllowListedDownloader(("127.0.0.1",))
        assert b"".join(download(base + "/redirect-home", {})) == WAV
        with pytest.raises(Refused):
            b"".join(download(base + "/redirect-away", {}))
        with pytest.raises(Refused):
            b"".join(download("http://localhost:1/audio.wav", {}))
    finally:
        server.shutdown()


# --- hostile requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/webhooks/twilio/call", "/webhooks/telnyx", "/webhooks/vonage/event"]
)
def test_a_body_over_64_kib_is_refused_before_any_signature_check(world: Any, path: str) -> None:
    client, rig, _ = world
    response = client.post(path, content=b"x" * (64 * 1024 + 1))
    assert response.status_code == 413
    assert rig.sample("callvault_connector_rejected_total", reason="too_large") == 1

    def chunked() -> Iterator[bytes]:  # no Content-Length: the stream is cut off at the limit
        for _ in range(1024):
            yield b"y" * 1024

    assert client.post(path, content=chunked()).status_code == 413


def test_a_non_ascii_twilio_signature_is_refused_not_a_server_error(world: Any) -> None:
    client, rig, _ = world
    response = client.post(
        "/webhooks/twilio/call",
        content=urlencode(CALL_STATUS),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": "pa\u017eeista".encode(),
        },
    )
    assert response.status_code == 403
    assert rig.kafka.records == []


def test_a_slow_download_does_not_hold_up_other_requests(tmp_path: Path) -> None:
    """The recording's download, file write and probe run beside the event loop: a request to
    another route of the same server (the console's, under `callvault serve`) is answered while
    the download is still under way."""
    rig = Rig(tmp_path / "state", connector="webhooks")
    happened: list[str] = []
    downloading, answered = threading.Event(), threading.Event()

    def slow_download(url: str, headers: Mapping[str, str]) -> Iterator[bytes]:
        downloading.set()
        answered.wait(5)
        happened.append("download finished")
        yield WAV

    config = WebhookConfig(
        public_base_url=BASE, allowed_hosts=("api.twilio.com",), twilio_auth_token=TWILIO_TOKEN
    )
    app = FastAPI()
    app.include_router(
        webhook_router(config, rig.publisher, state_dir=tmp_path / "h", download=slow_download)
    )

    @app.get("/console")
    async def console() -> dict[str, str]:
        happened.append("console answered")
        answered.set()
        return {}

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            await client.post(
                "/webhooks/twilio/recording",
                **twilio_request("/webhooks/twilio/recording", RECORDING_STATUS),
            )
            hook = asyncio.create_task(
                client.post(
                    "/webhooks/twilio/call", **twilio_request("/webhooks/twilio/call", CALL_STATUS)
                )
            )
            await asyncio.to_thread(downloading.wait, 5)
            await client.get("/console")
            assert (await hook).status_code == 204

    asyncio.run(scenario())
    assert happened == ["console answered", "download finished"]
    (data,) = rig.kafka.data()
    assert data["call_id"] == "twilio:RE1"
