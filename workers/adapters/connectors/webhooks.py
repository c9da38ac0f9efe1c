"""Cloud telephony webhooks: Twilio, Telnyx and Vonage tell callvault that a recording is ready.

None of the three puts the caller's number in its recording webhook, so each provider's call
webhook (Twilio's status callback, Telnyx's ``call.initiated``/``call.hangup``, Vonage's event
URL) is received too, and the two are joined by the provider's call id in the connector's
state directory. When both have arrived the recording is downloaded - only from an
allow-listed host, following redirects only to allow-listed hosts - and handed to the
:class:`~.publisher.Publisher`.

Every request is verified before anything is read from it: Twilio's HMAC-SHA1 of the URL and
sorted form fields, Telnyx's Ed25519 signature of ``timestamp|body`` (stale timestamps are
replays), Vonage's HS256 JWT with a hash of the body (stale or reused tokens are replays).
A body larger than ``max_body_bytes`` (64 KiB) is refused with 413 before it is read further,
a bad signature or a replay gets 403; a duplicate delivery of a genuine webhook gets 204 and
has no second effect. Everything after the body is read - verification, the join, the
download, the file write and the probe - runs in a worker thread, never on the event loop
that serves the console beside the webhooks.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urljoin, urlsplit

import structlog
import urllib3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from starlette.concurrency import run_in_threadpool

from ...domain.errors import NotAudio, SchemaViolation
from .backlog import ProviderCopy
from .provider_copies import (
    REFERENCE,
    HttpProviderApi,
    ProviderAccounts,
    ProviderApi,
    ProviderCopies,
)
from .publisher import BacklogFull, FinishedCall, Publisher

Provider = Literal["twilio", "telnyx", "vonage"]
Direction = Literal["inbound", "outbound"]
log = structlog.get_logger("callvault.connector.webhooks")
JOIN_KEPT_SECONDS = 86_400  # a call whose recording never comes is forgotten after a day
CHUNK = 256 * 1024


class Refused(Exception):
    """The request is not from the provider (bad signature) or is a replay: 403."""


@dataclass(frozen=True)
class WebhookConfig:
    """Secrets and limits; a provider without its secret has no routes."""

    public_base_url: str | None = None  # the scheme://host the provider calls (behind proxies)
    allowed_hosts: tuple[str, ...] = ()  # where recordings may be downloaded from
    tolerance_seconds: int = 300  # Telnyx timestamps and Vonage tokens older than this: replays
    max_audio_bytes: int = 512 * 1024 * 1024
    max_body_bytes: int = 64 * 1024  # a webhook is a few hundred bytes of form or JSON
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    telnyx_public_key: str | None = None  # base64, from the Telnyx portal
    vonage_signature_secret: str | None = None
    vonage_application_id: str | None = None
    vonage_private_key: str | None = None  # PEM, to download recordings
    telnyx_api_key: str | None = None  # to delete recordings at Telnyx
    delete_provider_copies: bool = True  # delete the provider's copy once Kafka has the call
    twilio_api: str = "https://api.twilio.com"
    telnyx_api: str = "https://api.telnyx.com"
    vonage_api: str = "https://api.nexmo.com"

    def accounts(self) -> ProviderAccounts:
        """The API credentials and hosts among these settings (the fields of the same name)."""
        return ProviderAccounts(**{f.name: getattr(self, f.name) for f in fields(ProviderAccounts)})

    def providers(self) -> list[Provider]:
        """The providers with routes (their webhook secret is set)."""
        secrets: tuple[tuple[Provider, str | None], ...] = (
            ("twilio", self.twilio_auth_token),
            ("telnyx", self.telnyx_public_key),
            ("vonage", self.vonage_signature_secret),
        )
        return [provider for provider, secret in secrets if secret]


@dataclass(frozen=True)
class CallParties:
    caller: str
    callee: str
    direction: Direction


@dataclass(frozen=True)
class RecordingReady:
    recording_id: str
    url: str
    started_at: datetime | None
    ended_at: datetime | None


class Downloader(Protocol):
    def __call__(self, url: str, headers: Mapping[str, str]) -> Iterator[bytes]: ...


# -- signatures ---------------------------------------------------------------------------------
def twilio_signature(auth_token: str, url: str, params: Mapping[str, list[str]]) -> str:
    """Base64 HMAC-SHA1 of the URL followed by every form field, sorted, name then value."""
    signed = url + "".join(name + value for name in sorted(params) for value in params[name])
    mac = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def verify_twilio(auth_token: str, url: str, params: Mapping[str, list[str]], given: str) -> None:
    expected = twilio_signature(auth_token, url, params).encode()
    if not hmac.compare_digest(expected, given.encode("utf-8", "surrogateescape")):
        raise Refused("X-Twilio-Signature does not match")


def verify_telnyx(
    public_key_b64: str, body: bytes, signature_b64: str, timestamp: str, now: float, tolerance: int
) -> None:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(base64.b64decode(signature_b64), timestamp.encode() + b"|" + body)
        sent = int(timestamp)
    except (InvalidSignature, ValueError, binascii.Error) as exc:
        raise Refused("telnyx-signature-ed25519 does not match") from exc
    if abs(now - sent) > tolerance:
        raise Refused("telnyx-timestamp is outside the tolerance: a replay")


VONAGE_CLAIMS = frozenset({"iat", "jti", "payload_hash"})


def verify_vonage(secret: str, authorization: str, body: bytes, now: float, tolerance: int) -> str:
    """The token's ``jti`` once its HS256 signature, age and body hash are checked."""
    token = authorization.removeprefix("Bearer ").strip()
    try:
        claims = jwt.decode(token, OctKey.import_key(secret), algorithms=["HS256"]).claims
    except (JoseError, ValueError) as exc:
        raise Refused("the Vonage token's signature does not match") from exc
    if not claims.keys() >= VONAGE_CLAIMS:
        raise Refused(f"the Vonage token lacks {', '.join(sorted(VONAGE_CLAIMS - claims.keys()))}")
    if abs(now - float(claims["iat"])) > tolerance:
        raise Refused("the Vonage token is too old: a replay")
    if not hmac.compare_digest(str(claims["payload_hash"]), hashlib.sha256(body).hexdigest()):
        raise Refused("the Vonage token was signed for another body")
    return str(claims["jti"])


# -- the join of call and recording webhooks -----------------------------------------------------
class CallJoin:
    """What arrived of each call: its parties, its recording, or both (then it is taken)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            directory / "webhooks.sqlite3", isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS calls (provider TEXT, call_key TEXT, parties TEXT, "
            "recording TEXT, updated REAL, PRIMARY KEY (provider, call_key));"
            "CREATE TABLE IF NOT EXISTS tokens (jti TEXT PRIMARY KEY, seen REAL);"
        )

    def first_use(self, jti: str, now: float) -> bool:
        with self._lock:
            self._db.execute("DELETE FROM tokens WHERE seen < ?", (now - JOIN_KEPT_SECONDS,))
            cursor = self._db.execute("INSERT OR IGNORE INTO tokens VALUES (?, ?)", (jti, now))
            return cursor.rowcount == 1

    def handled(self, token: str) -> bool:
        """Whether a delivery with this idempotency token was handled (within a day)."""
        with self._lock:
            found = self._db.execute("SELECT 1 FROM tokens WHERE jti = ?", (_token_key(token),))
            return found.fetchone() is not None

    def mark_handled(self, token: str, now: float) -> None:
        self.first_use(_token_key(token), now)

    def add(
        self, provider: Provider, call_key: str, now: float, **part: CallParties | RecordingReady
    ) -> tuple[CallParties, RecordingReady] | None:
        """Record one part; returns both parts (and forgets them) once both are here."""
        ((name, value),) = part.items()
        encoded = json.dumps(_plain(value))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM calls WHERE updated < ?", (now - JOIN_KEPT_SECONDS,))
                self._db.execute(
                    "INSERT INTO calls (provider, call_key, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT DO UPDATE SET updated = excluded.updated",
                    (provider, call_key, now),
                )
                column = "parties" if name == "parties" else "recording"
                self._db.execute(
                    f"UPDATE calls SET {column} = ? WHERE provider = ? AND call_key = ?",  # noqa: S608 - one of two constant names
                    (encoded, provider, call_key),
                )
                row = self._db.execute(
                    "SELECT parties, recording FROM calls WHERE provider = ? AND call_key = ?",
                    (provider, call_key),
                ).fetchone()
                complete = row[0] is not None and row[1] is not None
                if complete:
                    self._db.execute(
                        "DELETE FROM calls WHERE provider = ? AND call_key = ?",
                        (provider, call_key),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if not complete:
            return None
        return CallParties(**json.loads(row[0])), _recording(json.loads(row[1]))

    def close(self) -> None:
        self._db.close()


def _token_key(token: str) -> str:
    return "idempotency:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _plain(value: CallParties | RecordingReady) -> dict[str, Any]:
    found = dict(value.__dict__)
    for name in ("started_at", "ended_at"):
        if isinstance(found.get(name), datetime):
            found[name] = found[name].isoformat()
    return found


def _recording(values: dict[str, Any]) -> RecordingReady:
    for name in ("started_at", "ended_at"):
        if values.get(name):
            values[name] = datetime.fromisoformat(values[name])
    return RecordingReady(**values)


# -- downloads ------------------------------------------------------------------------------------
class AllowListedDownloader:
    """GETs a recording from an allow-listed host over HTTPS (HTTP only for loopback tests),
    following at most three redirects, each to an allow-listed host too."""

    def __init__(self, allowed_hosts: tuple[str, ...], timeout: float = 30) -> None:
        self._allowed = {h.lower() for h in allowed_hosts}
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=timeout), retries=False
        )

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or (parts.hostname or "") not in self._allowed:
            raise Refused("the recording's host is not on the allow-list")

    def __call__(self, url: str, headers: Mapping[str, str]) -> Iterator[bytes]:
        for _ in range(4):
            self.check(url)
            response = self._http.request(
                "GET", url, headers=dict(headers), preload_content=False, redirect=False
            )
            if response.status in (301, 302, 303, 307, 308):
                url = urljoin(url, response.headers.get("Location", ""))
                headers = {}  # credentials go to the provider only, never to where it points
                response.release_conn()
                continue
            if response.status != 200:
                response.release_conn()
                raise OSError(f"the recording's host answered HTTP {response.status}")
            return _drain(response)
        raise OSError("too many redirects")


def _drain(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    try:
        yield from response.stream(CHUNK)
    finally:
        response.release_conn()


# -- the router ------------------------------------------------------------------------------------
class WebhookHandler:
    """Joins a provider's call and recording webhooks and hands finished recordings over."""

    def __init__(
        self,
        config: WebhookConfig,
        publisher: Publisher,
        join: CallJoin,
        download: Downloader,
        incoming: Path,
        clock: Callable[[], float],
        copies: ProviderCopies | None = None,
    ) -> None:
        self.config = config
        self.publisher = publisher
        self.join = join
        self._download = download
        self._incoming = incoming
        self.clock = clock
        self._copies = copies
        incoming.mkdir(parents=True, exist_ok=True, mode=0o700)

    def settle(self) -> None:
        """Send what is queued, then delete the provider copies of what Kafka has (after each
        response, and now and then while no webhook comes)."""
        self.publisher.drain()
        if self._copies is not None:
            self._copies.run()

    def parties(self, provider: Provider, call_key: str, parties: CallParties) -> None:
        both = self.join.add(provider, call_key, self.clock(), parties=parties)
        if both is not None:
            self._hand_over(provider, *both)

    def recording(self, provider: Provider, call_key: str, ready: RecordingReady) -> None:
        if not self._allowed(ready.url):
            raise Refused("the recording's host is not on the allow-list")
        both = self.join.add(provider, call_key, self.clock(), recording=ready)
        if both is not None:
            self._hand_over(provider, *both)

    def _allowed(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        return host in {h.lower() for h in self.config.allowed_hosts}

    def _hand_over(self, provider: Provider, parties: CallParties, ready: RecordingReady) -> None:
        call_id = f"{provider}:{ready.recording_id}"
        copy = self._provider_copy(provider, ready)
        if self.publisher.knows(call_id) or self.publisher.seen_provider_copy(copy):
            self.publisher.metrics.duplicates.inc()  # redelivered, or replayed years later
            return
        target = self._incoming / str(uuid.uuid4())
        size = 0
        try:
            with target.open("wb") as out:
                for chunk in self._download(ready.url, self._credentials(provider)):
                    size += len(chunk)
                    if size > self.config.max_audio_bytes:
                        raise OSError("the recording is larger than allowed")
                    out.write(chunk)
            self.publisher.submit(
                FinishedCall(
                    call_id=call_id,
                    direction=parties.direction,
                    caller=parties.caller,
                    callee=parties.callee,
                    audio=target,
                    started_at=ready.started_at,
                    ended_at=ready.ended_at,
                    provider_copy=copy,
                )
            )
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def _provider_copy(self, provider: Provider, ready: RecordingReady) -> ProviderCopy:
        """What the provider's API calls this recording: Twilio's RecordingSid, Telnyx's call
        leg, the file id at the end of Vonage's recording URL."""
        reference = ready.recording_id
        if provider == "vonage":
            reference = urlsplit(ready.url).path.rstrip("/").rsplit("/", 1)[-1]
        if not REFERENCE.match(reference):
            raise SchemaViolation("the provider's recording id has unexpected characters")
        return ProviderCopy(provider, reference, delete=self.config.delete_provider_copies)

    def _credentials(self, provider: Provider) -> dict[str, str]:
        return self.config.accounts().download_headers(provider, self.clock())


@dataclass(frozen=True)
class Webhooks:
    router: APIRouter
    settle: Callable[[], None]  # drain the backlog, delete due provider copies


def build_webhooks(
    config: WebhookConfig,
    publisher: Publisher,
    *,
    state_dir: Path,
    download: Downloader | None = None,
    provider_api: ProviderApi | None = None,
    clock: Callable[[], float] = time.time,
    prefix: str = "/webhooks",
) -> Webhooks:
    """Routes for every provider whose secret ``config`` holds, under ``prefix``:
    ``/twilio/call`` and ``/twilio/recording`` (form posts), ``/telnyx`` and ``/vonage/event``
    (JSON). Finished recordings go to ``publisher``; after each response its backlog drains and
    the provider copies of what Kafka has are deleted (unless ``delete_provider_copies`` is
    off)."""
    copies = None
    if config.delete_provider_copies:
        api = provider_api or HttpProviderApi(config.accounts(), clock)
        copies = ProviderCopies(publisher.backlog, api, publisher.metrics, clock)
    handler = WebhookHandler(
        config,
        publisher,
        CallJoin(state_dir),
        download or AllowListedDownloader(config.allowed_hosts),
        state_dir / "incoming",
        clock,
        copies,
    )
    router = APIRouter(prefix=prefix, tags=["telephony webhooks"])
    if config.twilio_auth_token:
        _twilio_routes(router, handler, config.twilio_auth_token)
    if config.telnyx_public_key:
        _telnyx_route(router, handler, config.telnyx_public_key)
    if config.vonage_signature_secret:
        _vonage_route(router, handler, config.vonage_signature_secret)
    return Webhooks(router, handler.settle)


def webhook_router(
    config: WebhookConfig, publisher: Publisher, *, state_dir: Path, **options: Any
) -> APIRouter:
    """The routes of :func:`build_webhooks` alone."""
    return build_webhooks(config, publisher, state_dir=state_dir, **options).router


@dataclass(frozen=True)
class Delivery:
    """One webhook request, read (bounded) on the event loop and handled in a worker thread."""

    body: bytes
    headers: Mapping[str, str]
    url: str  # as the provider called it (Twilio signs it)


async def _deliver(
    handler: WebhookHandler,
    request: Request,
    background: BackgroundTasks,
    work: Callable[[Delivery], None],
) -> Response:
    """Read the body - at most ``max_body_bytes`` - and hand it to ``work`` in a worker thread;
    outcomes become HTTP answers, and the backlog drains after the response."""
    body = await _bounded_body(request, handler)
    delivery = Delivery(body, request.headers, _public_url(request, handler.config.public_base_url))
    with _answer(handler):
        await run_in_threadpool(work, delivery)
    background.add_task(handler.settle)
    return Response(status_code=204)


async def _bounded_body(request: Request, handler: WebhookHandler) -> bytes:
    limit = handler.config.max_body_bytes
    declared = request.headers.get("content-length", "")
    body = bytearray()
    if not (declared.isdigit() and int(declared) > limit):
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                break
    if len(body) > limit or (declared.isdigit() and int(declared) > limit):
        handler.publisher.metrics.rejected["too_large"].inc()
        log.warning("webhook_body_too_large", limit=limit)
        raise HTTPException(413, "the webhook body is too large")
    return bytes(body)


@contextlib.contextmanager
def _answer(handler: WebhookHandler) -> Iterator[None]:
    """Map outcomes to HTTP: refused 403, unusable 422, backlog full or provider away 503."""
    try:
        yield
    except Refused as exc:
        log.warning("webhook_refused", reason=str(exc))
        handler.publisher.metrics.rejected["bad_request"].inc()
        raise HTTPException(403, "refused") from None
    except (NotAudio, SchemaViolation) as exc:
        raise HTTPException(422, str(exc)) from None
    except KeyError as exc:
        raise HTTPException(422, f"the webhook lacks {exc}") from None
    except (BacklogFull, OSError, urllib3.exceptions.HTTPError) as exc:
        log.warning("webhook_retry_later", reason=type(exc).__name__)
        raise HTTPException(503, "try again later") from None


def _public_url(request: Request, base: str | None) -> str:
    if base is None:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return base.rstrip("/") + request.url.path + query


def _twilio_form(delivery: Delivery, token: str) -> dict[str, str]:
    params: dict[str, list[str]] = {}
    body = delivery.body.decode("utf-8", errors="replace")
    for name, value in parse_qsl(body, keep_blank_values=True):  # Twilio posts url-encoded forms
        params.setdefault(name, []).append(value)
    verify_twilio(token, delivery.url, params, delivery.headers.get("X-Twilio-Signature", ""))
    return {name: values[-1] for name, values in params.items()}


def _twilio_once(
    handler: WebhookHandler, token: str, work: Callable[[dict[str, str]], None]
) -> Callable[[Delivery], None]:
    """A verified Twilio webhook, handled once per ``I-Twilio-Idempotency-Token`` (Twilio sends
    the same token with every retry of one webhook): a retry of a handled one changes nothing."""

    def handle(delivery: Delivery) -> None:
        form = _twilio_form(delivery, token)
        once = delivery.headers.get("I-Twilio-Idempotency-Token", "")
        if once and handler.join.handled(once):
            handler.publisher.metrics.duplicates.inc()
            return
        work(form)
        if once:
            handler.join.mark_handled(once, handler.clock())

    return handle


def _twilio_routes(router: APIRouter, handler: WebhookHandler, token: str) -> None:
    def call(form: dict[str, str]) -> None:
        outbound = form.get("Direction", "inbound").startswith("outbound")
        parties = CallParties(
            form.get("From", ""), form.get("To", ""), "outbound" if outbound else "inbound"
        )
        handler.parties("twilio", form["CallSid"], parties)

    def recording(form: dict[str, str]) -> None:
        if form.get("RecordingStatus") == "completed":
            started = _rfc2822(form.get("RecordingStartTime"))
            ready = RecordingReady(
                form["RecordingSid"], form["RecordingUrl"] + ".wav", started, None
            )
            handler.recording("twilio", form["CallSid"], ready)

    @router.post("/twilio/call", status_code=204)
    async def twilio_call(request: Request, background: BackgroundTasks) -> Response:
        return await _deliver(handler, request, background, _twilio_once(handler, token, call))

    @router.post("/twilio/recording", status_code=204)
    async def twilio_recording(request: Request, background: BackgroundTasks) -> Response:
        once = _twilio_once(handler, token, recording)
        return await _deliver(handler, request, background, once)


def _telnyx_route(router: APIRouter, handler: WebhookHandler, public_key: str) -> None:
    def event(delivery: Delivery) -> None:
        verify_telnyx(
            public_key,
            delivery.body,
            delivery.headers.get("telnyx-signature-ed25519", ""),
            delivery.headers.get("telnyx-timestamp", ""),
            handler.clock(),
            handler.config.tolerance_seconds,
        )
        data = _json(delivery.body)["data"]
        payload = data.get("payload") or {}
        kind = data.get("event_type")
        if kind in ("call.initiated", "call.hangup"):
            outbound = payload.get("direction") == "outgoing"
            parties = CallParties(
                payload.get("from", ""),
                payload.get("to", ""),
                "outbound" if outbound else "inbound",
            )
            handler.parties("telnyx", payload["call_leg_id"], parties)
        elif kind == "call.recording.saved":
            urls = payload.get("recording_urls") or {}
            ready = RecordingReady(
                payload["call_leg_id"],
                urls.get("wav") or urls["mp3"],
                _iso(payload.get("recording_started_at")),
                _iso(payload.get("recording_ended_at")),
            )
            handler.recording("telnyx", payload["call_leg_id"], ready)

    @router.post("/telnyx", status_code=204)
    async def telnyx(request: Request, background: BackgroundTasks) -> Response:
        return await _deliver(handler, request, background, event)


def _vonage_route(router: APIRouter, handler: WebhookHandler, secret: str) -> None:
    def event(delivery: Delivery) -> None:
        now = handler.clock()
        authorization = delivery.headers.get("Authorization", "")
        tolerance = handler.config.tolerance_seconds
        jti = verify_vonage(secret, authorization, delivery.body, now, tolerance)
        if not handler.join.first_use(jti, now):
            raise Refused("the Vonage token was used before: a replay")
        data = _json(delivery.body)
        conversation = data["conversation_uuid"]
        if "recording_url" in data:
            ready = RecordingReady(
                data["recording_uuid"],
                data["recording_url"],
                _iso(data.get("start_time")),
                _iso(data.get("end_time")),
            )
            handler.recording("vonage", conversation, ready)
        elif "from" in data and "to" in data:
            outbound = data.get("direction") == "outbound"
            parties = CallParties(
                str(data["from"]), str(data["to"]), "outbound" if outbound else "inbound"
            )
            handler.parties("vonage", conversation, parties)

    @router.post("/vonage/event", status_code=204)
    async def vonage(request: Request, background: BackgroundTasks) -> Response:
        return await _deliver(handler, request, background, event)


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise SchemaViolation("the webhook body is not JSON") from exc
    if not isinstance(value, dict):
        raise SchemaViolation("the webhook body is not a JSON object")
    return value


def _iso(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rfc2822(text: str | None) -> datetime | None:
    return parsedate_to_datetime(text) if text else None
