"""Cloud telephony webhooks through Starlette's TestClient: signatures (with Twilio's published
test vector), replays, the allow-list, and the call.ended events that come out."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from conftest import WAV
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from tests.fakes.connectors import Rig
from workers.adapters.connectors.webhooks import (
    AllowListedDownloader,
    Refused,
    WebhookConfig,
    build_webhooks,
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


TELNYX_API_KEY = "KEY-of-the-shop"
TELNYX_RECORDING = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
VONAGE_APP = "app-1"


class FakeProviders(BaseHTTPRequestHandler):
    """Twilio's, Telnyx's and Vonage's recording APIs as they document them: the deletes
    callvault must make, with the credentials each expects; the first ``failures`` answer 503."""

    requests: list[tuple[str, str]]
    failures: int
    vonage_public_key: Any

    def do_DELETE(self) -> None:
        self.server.requests.append(("DELETE", self.path))  # type: ignore[attr-defined]
        if self.server.failures > 0:  # type: ignore[attr-defined]
            self.server.failures -= 1  # type: ignore[attr-defined]
            self._answer(503)
        elif self.path == "/2010-04-01/Accounts/AC1/Recordings/RE1.json":
            basic = "Basic " + base64.b64encode(f"AC1:{TWILIO_TOKEN}".encode()).decode()
            self._answer(204 if self.headers["Authorization"] == basic else 401)
        elif self.path == f"/v2/recordings/{TELNYX_RECORDING}":
            ok = self.headers["Authorization"] == f"Bearer {TELNYX_API_KEY}"
            self._answer(200 if ok else 401, {"data": {"id": TELNYX_RECORDING}})
        elif self.path == "/v3/media/rec-1":
            token = self.headers["Authorization"].removeprefix("Bearer ")
            key = self.server.vonage_public_key  # type: ignore[attr-defined]
            claims = jwt.decode(token, RSAKey.import_key(key), algorithms=["RS256"]).claims
            self._answer(204 if claims["application_id"] == VONAGE_APP else 401)
        else:
            self._answer(404)

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))  # type: ignore[attr-defined]
        wanted = "/v2/recordings?" + urlencode({"filter[call_leg_id]": "leg-1", "page[size]": 250})
        if self.path == wanted and self.headers["Authorization"] == f"Bearer {TELNYX_API_KEY}":
            self._answer(200, {"data": [{"id": TELNYX_RECORDING, "call_leg_id": "leg-1"}]})
        else:
            self._answer(404)

    def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None and status < 300 else b""
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def providers() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeProviders)
    server.requests = []  # type: ignore[attr-defined]
    server.failures = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def telnyx_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@functools.cache
def vonage_application_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def webhook_config(telnyx_key: Ed25519PrivateKey, providers: Any, **changes: Any) -> WebhookConfig:
    vonage_key = vonage_application_key()
    providers.vonage_public_key = vonage_key.public_key()
    api = f"http://127.0.0.1:{providers.server_address[1]}"
    public = telnyx_key.public_key().public_bytes_raw()
    settings: dict[str, Any] = {
        "public_base_url": BASE,
        "allowed_hosts": ("api.twilio.com", "api.telnyx.com", "api.nexmo.com"),
        "twilio_account_sid": "AC1",
        "twilio_auth_token": TWILIO_TOKEN,
        "telnyx_public_key": base64.b64encode(public).decode(),
        "telnyx_api_key": TELNYX_API_KEY,
        "vonage_signature_secret": VONAGE_SECRET,
        "vonage_application_id": VONAGE_APP,
        "vonage_private_key": vonage_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "twilio_api": api,
        "telnyx_api": api,
        "vonage_api": api,
    }
    return WebhookConfig(**(settings | changes))


@pytest.fixture
def world(tmp_path: Path, telnyx_key: Ed25519PrivateKey, providers: Any) -> Any:
    rig = Rig(tmp_path / "state", connector="webhooks")
    downloads = FakeDownloads()
    config = webhook_config(telnyx_key, providers)
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
    token = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secret))
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


# --- copies at the provider -----------------------------------------------------------------------


def twilio_call_and_recording(client: TestClient, **headers: str) -> None:
    for path, form in (
        ("/webhooks/twilio/recording", RECORDING_STATUS),
        ("/webhooks/twilio/call", CALL_STATUS),
    ):
        request = twilio_request(path, form)
        request["headers"] |= headers
        assert client.post(path, **request).status_code == 204


def twilio_rig(tmp_path: Path) -> tuple[Rig, FakeDownloads]:
    """A webhook connector's publisher, and Twilio's media host with the recording RE1."""
    downloads = FakeDownloads()
    downloads.files[TWILIO_MEDIA + ".wav"] = WAV
    return Rig(tmp_path / "state", connector="webhooks"), downloads


def test_each_providers_copy_is_deleted_through_its_api_once_kafka_has_the_call(
    world: Any, providers: Any, telnyx_key: Ed25519PrivateKey
) -> None:
    client, rig, downloads = world
    downloads.files |= {TWILIO_MEDIA + ".wav": WAV, TELNYX_WAV: WAV, VONAGE_MEDIA: WAV}
    twilio_call_and_recording(client)
    telnyx_post(client, telnyx_key, TELNYX_CALL)
    telnyx_post(client, telnyx_key, TELNYX_SAVED)
    vonage_post(client, VONAGE_ANSWERED)
    vonage_post(client, VONAGE_RECORDED)

    assert len(rig.kafka.records) == 3
    assert sorted(providers.requests) == sorted(
        [
            ("DELETE", "/2010-04-01/Accounts/AC1/Recordings/RE1.json"),
            ("GET", "/v2/recordings?filter%5Bcall_leg_id%5D=leg-1&page%5Bsize%5D=250"),
            ("DELETE", f"/v2/recordings/{TELNYX_RECORDING}"),
            ("DELETE", "/v3/media/rec-1"),
        ]
    )
    for provider in ("twilio", "telnyx", "vonage"):
        deleted = "callvault_connector_provider_copies_deleted_total"
        assert rig.sample(deleted, provider=provider) == 1
    assert rig.sample("callvault_connector_provider_copies_waiting") == 0


def test_nothing_is_deleted_at_the_provider_before_kafka_has_the_call(
    world: Any, providers: Any
) -> None:
    client, rig, downloads = world
    downloads.files[TWILIO_MEDIA + ".wav"] = WAV
    rig.kafka.away = True
    twilio_call_and_recording(client)
    assert providers.requests == []
    rig.kafka.away = False
    twilio_call_and_recording(client)  # Twilio retries; the backlog drains after the answer
    assert providers.requests == [("DELETE", "/2010-04-01/Accounts/AC1/Recordings/RE1.json")]


def test_a_failed_deletion_is_retried_and_counted(
    tmp_path: Path, telnyx_key: Ed25519PrivateKey, providers: Any
) -> None:
    rig, downloads = twilio_rig(tmp_path)
    now = [time.time() + 5]  # a moment after the call is sent (the publisher keeps real time)
    hooks = build_webhooks(
        webhook_config(telnyx_key, providers),
        rig.publisher,
        state_dir=tmp_path / "hooks",
        download=downloads,
        clock=lambda: now[0],
    )
    app = FastAPI()
    app.include_router(hooks.router)
    providers.failures = 2
    twilio_call_and_recording(TestClient(app))
    failures = "callvault_connector_provider_copy_failures_total"
    assert rig.sample(failures, provider="twilio") == 1
    assert rig.sample("callvault_connector_provider_copies_waiting") == 1
    hooks.settle()
    assert len(providers.requests) == 1  # not due yet: retried after a delay, not in a loop
    now[0] += 31
    hooks.settle()  # the second failure
    now[0] += 61
    hooks.settle()
    assert len(providers.requests) == 3
    assert rig.sample(failures, provider="twilio") == 2
    assert rig.sample("callvault_connector_provider_copies_deleted_total", provider="twilio") == 1
    assert rig.sample("callvault_connector_provider_copies_waiting") == 0


def test_a_replayed_webhook_pair_never_brings_an_erased_call_back(
    world: Any, tmp_path: Path
) -> None:
    """A captured call + recording webhook pair replayed after the sent ledger has forgotten the
    call (90 days): the provider recording's digest, kept for ever, recognises it."""
    client, rig, downloads = world
    downloads.files[TWILIO_MEDIA + ".wav"] = WAV
    twilio_call_and_recording(client)
    with sqlite3.connect(tmp_path / "state" / "state.sqlite3") as db:
        db.execute("DELETE FROM sent")  # what 90 days do
        (kept,) = db.execute("SELECT digest FROM provider_recordings").fetchone()
    assert "RE1" not in kept  # a keyed digest, not the recording's id
    twilio_call_and_recording(client)
    assert len(rig.kafka.records) == 1
    assert len(downloads.requests) == 1


def test_twilio_idempotency_tokens_are_honoured(world: Any) -> None:
    client, rig, downloads = world
    downloads.files[TWILIO_MEDIA + ".wav"] = WAV
    token = {"I-Twilio-Idempotency-Token": "retry-of-one-webhook"}
    rig.landing.away = True  # the first delivery cannot be handed over: 503, Twilio retries
    path = "/webhooks/twilio/recording"
    request = twilio_request(path, RECORDING_STATUS)
    request["headers"] |= token
    assert client.post(path, **request).status_code == 204
    call = twilio_request("/webhooks/twilio/call", CALL_STATUS)
    call["headers"] |= {"I-Twilio-Idempotency-Token": "the-call"}
    assert client.post("/webhooks/twilio/call", **call).status_code == 204
    rig.landing.away = False
    before = rig.sample("callvault_connector_duplicates_total")
    assert client.post("/webhooks/twilio/call", **call).status_code == 204  # Twilio's retry
    assert rig.sample("callvault_connector_duplicates_total") == before + 1
    rig.publisher.drain()
    assert len(rig.kafka.records) == 1


def test_provider_copies_can_be_left_at_the_provider(
    tmp_path: Path, telnyx_key: Ed25519PrivateKey, providers: Any
) -> None:
    rig, downloads = twilio_rig(tmp_path)
    config = webhook_config(telnyx_key, providers, delete_provider_copies=False)
    app = FastAPI()
    app.include_router(
        webhook_router(config, rig.publisher, state_dir=tmp_path / "h", download=downloads)
    )
    twilio_call_and_recording(TestClient(app))
    assert len(rig.kafka.records) == 1
    assert providers.requests == []


def test_deleting_at_the_provider_needs_its_api_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.domain.errors import ConfigError
    from workers.entrypoints.connect import webhook_config as configured

    monkeypatch.setenv("CALLVAULT_TELNYX_PUBLIC_KEY", base64.b64encode(b"k" * 32).decode())
    with pytest.raises(ConfigError, match="CALLVAULT_TELNYX_API_KEY"):
        configured()
    monkeypatch.setenv("CALLVAULT_WEBHOOK_DELETE_PROVIDER_COPIES", "false")
    assert configured().delete_provider_copies is False
