"""`callvault serve` mounts the cloud telephony webhooks beside the console when a provider's
secret is set: a Twilio call, signed as Twilio signs it, becomes a stored recording and its copy
at Twilio is deleted through Twilio's API; a forged one is refused; without the secret there is
no such route."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlencode

import pytest

from testbed.probes import wait_for
from testbed.stack import free_port
from tests.e2e.console_harness import Console, start_console
from tests.e2e.harness import Callvault, make_wav
from workers.adapters.connectors.webhooks import twilio_signature

TOKEN = "twilio-test-auth-token"
AUDIO = make_wav(1.0)


class _Media(BaseHTTPRequestHandler):
    """Twilio's media host and REST API, played locally: the recording as WAV, and the delete
    of a Recording resource."""

    deleted: ClassVar[list[str]] = []

    def do_DELETE(self) -> None:
        self.deleted.append(self.path)
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200 if self.path.endswith("/RE-serve-1.wav") else 404)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(AUDIO)))
        self.end_headers()
        self.wfile.write(AUDIO)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def media() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Media)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def post(console: Console, path: str, form: dict[str, str], token: str = TOKEN) -> int:
    url = console.base + path
    signature = twilio_signature(token, url, {k: [v] for k, v in form.items()})
    request = urllib.request.Request(
        url,
        data=urlencode(form).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


CALL = {"CallSid": "CA-serve-1", "From": "+37061234567", "To": "+37052144500"}


def test_serve_mounts_twilio_webhooks_and_the_call_is_stored(
    callvault: Callvault, media: str, tmp_path: Any
) -> None:
    cv = callvault
    cv.env.update(
        {
            "CALLVAULT_TWILIO_AUTH_TOKEN": TOKEN,
            "CALLVAULT_TWILIO_ACCOUNT_SID": "AC1",
            "CALLVAULT_TWILIO_API_URL": media,
            "CALLVAULT_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "CALLVAULT_CONNECTOR_STATE_DIR": str(tmp_path / "connectors"),
        }
    )
    cv.start_worker()
    console = start_console(cv)
    recording = {
        "AccountSid": "AC1",
        "CallSid": "CA-serve-1",
        "RecordingSid": "RE-serve-1",
        "RecordingUrl": f"{media}/2010-04-01/Accounts/AC1/Recordings/RE-serve-1",
        "RecordingStatus": "completed",
        "RecordingStartTime": "Mon, 30 Nov 2026 10:15:00 +0000",
        "RecordingDuration": "1",
    }
    assert post(console, "/webhooks/twilio/call", CALL, token="forged") == 403
    assert post(console, "/webhooks/twilio/call", CALL) == 204
    assert post(console, "/webhooks/twilio/recording", recording) == 204
    stored = cv.read("recordings_stored", lambda seen: len(seen) >= 1)[0]["data"]
    assert stored["call_id"] == "twilio:RE-serve-1"
    assert stored["size_bytes"] == len(AUDIO)
    wait_for(lambda: bool(_Media.deleted), 30, "the delete of Twilio's copy")
    assert _Media.deleted == ["/2010-04-01/Accounts/AC1/Recordings/RE-serve-1.json"]


def test_without_a_provider_secret_serve_has_no_webhook_route(callvault: Callvault) -> None:
    console = start_console(callvault)
    assert post(console, "/webhooks/twilio/call", CALL) == 404
