"""The copies cloud providers keep of the recordings callvault fetched from them.

Twilio, Telnyx and Vonage keep every recording until someone deletes it, so neither retention
nor an erasure would ever reach that copy. Once Kafka has acknowledged a call, its provider copy
is queued for deletion (:meth:`~.backlog.Backlog.mark_sent`); :class:`ProviderCopies` deletes it
through the provider's API and retries failures with a growing delay, counted per provider, so
an alert can name what is left at the provider and for how long.

The APIs, as the providers document them:

* Twilio: ``DELETE /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.json`` with the
  account's basic auth; 204.
* Telnyx: ``GET /v2/recordings?filter[call_leg_id]=...`` for the call leg's recordings, then
  ``DELETE /v2/recordings/{id}`` for each, with the API key as a bearer token; 200.
* Vonage: ``DELETE /v3/media/{file id}`` (the last part of the recording's URL) with an
  application JWT; 204.

A 404 means the copy is gone already, which is what was wanted.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import structlog
import urllib3
from joserfc import jwt
from joserfc.jwk import RSAKey

from .backlog import Backlog
from .metrics import ConnectorMetrics

log = structlog.get_logger("callvault.connector.provider_copies")
REFERENCE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # what may go into an API path
RETRY_SECONDS = (30, 60, 300, 900, 3600)  # then every hour, until it works


class ProviderError(Exception):
    """The provider did not delete the copy (it answered an error, or could not be reached)."""


@dataclass(frozen=True)
class ProviderAccounts:
    """How callvault signs in to each provider's API."""

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    telnyx_api_key: str | None = None
    vonage_application_id: str | None = None
    vonage_private_key: str | None = None  # PEM
    twilio_api: str = "https://api.twilio.com"
    telnyx_api: str = "https://api.telnyx.com"
    vonage_api: str = "https://api.nexmo.com"

    def download_headers(self, provider: str, now: float) -> dict[str, str]:
        """Credentials for fetching a recording (Telnyx's URLs are signed: none)."""
        if provider == "telnyx":
            return {}
        return self.api_headers(provider, now)

    def api_headers(self, provider: str, now: float) -> dict[str, str]:
        if provider == "twilio" and self.twilio_account_sid and self.twilio_auth_token:
            pair = f"{self.twilio_account_sid}:{self.twilio_auth_token}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        if provider == "telnyx" and self.telnyx_api_key:
            return {"Authorization": f"Bearer {self.telnyx_api_key}"}
        if provider == "vonage" and self.vonage_application_id and self.vonage_private_key:
            issued = int(now)
            claims = {"application_id": self.vonage_application_id, "iat": issued}
            claims |= {"exp": issued + 300, "jti": str(uuid.uuid4())}
            key = RSAKey.import_key(self.vonage_private_key)
            return {"Authorization": f"Bearer {jwt.encode({'alg': 'RS256'}, claims, key)}"}
        return {}

    def missing_for_deletion(self, providers: Collection[str]) -> list[str]:
        """The settings each of ``providers`` still needs before its copies can be deleted."""
        needs = {
            "twilio": [("CALLVAULT_TWILIO_ACCOUNT_SID", self.twilio_account_sid)],
            "telnyx": [("CALLVAULT_TELNYX_API_KEY", self.telnyx_api_key)],
            "vonage": [
                ("CALLVAULT_VONAGE_APPLICATION_ID", self.vonage_application_id),
                ("CALLVAULT_VONAGE_PRIVATE_KEY_FILE", self.vonage_private_key),
            ],
        }
        return [name for p in providers for name, value in needs[p] if not value]


class ProviderApi(Protocol):
    def delete(self, provider: str, reference: str) -> None: ...


class HttpProviderApi:
    """Deletes recordings through the providers' REST APIs."""

    def __init__(
        self,
        accounts: ProviderAccounts,
        clock: Callable[[], float] = time.time,
        timeout: float = 30,
    ) -> None:
        self._accounts = accounts
        self._clock = clock
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=timeout), retries=False
        )

    def delete(self, provider: str, reference: str) -> None:
        if not REFERENCE.match(reference):
            raise ProviderError("the provider's recording reference has unexpected characters")
        part = quote(reference, safe="")
        if provider == "twilio":
            sid = quote(self._accounts.twilio_account_sid or "", safe="")
            self._call("twilio", "DELETE", f"/2010-04-01/Accounts/{sid}/Recordings/{part}.json")
        elif provider == "telnyx":
            query = urlencode({"filter[call_leg_id]": reference, "page[size]": 250})
            listed = self._call("telnyx", "GET", f"/v2/recordings?{query}")
            for recording in listed.get("data", []):
                found = str(recording.get("id", ""))
                if REFERENCE.match(found):
                    self._call("telnyx", "DELETE", f"/v2/recordings/{quote(found, safe='')}")
        elif provider == "vonage":
            self._call("vonage", "DELETE", f"/v3/media/{part}")
        else:
            raise ProviderError(f"no deletion for provider {provider!r}")

    def _call(self, provider: str, method: str, path: str) -> dict[str, Any]:
        base = getattr(self._accounts, f"{provider}_api").rstrip("/")
        headers = self._accounts.api_headers(provider, self._clock())
        try:
            response = self._http.request(method, base + path, headers=headers, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            raise ProviderError(f"{provider} could not be reached: {type(exc).__name__}") from exc
        if response.status == 404 or (method == "DELETE" and response.status in (200, 202, 204)):
            return {}
        if method == "GET" and response.status == 200:
            try:
                found = json.loads(response.data or b"{}")
            except ValueError as exc:
                raise ProviderError(f"{provider} answered something that is not JSON") from exc
            return found if isinstance(found, dict) else {}
        raise ProviderError(f"{provider} answered HTTP {response.status}")


class ProviderCopies:
    """Works through the queued deletions of provider copies that are due."""

    def __init__(
        self,
        backlog: Backlog,
        api: ProviderApi,
        metrics: ConnectorMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backlog = backlog
        self._api = api
        self._metrics = metrics
        self._clock = clock

    def run(self) -> int:
        """Delete every copy that is due; returns how many are gone."""
        done = 0
        for item in self._backlog.due_deletions(self._clock()):
            try:
                self._api.delete(item.provider, item.reference)
            except ProviderError as exc:
                delay = RETRY_SECONDS[min(item.attempts, len(RETRY_SECONDS) - 1)]
                self._backlog.deletion_failed(item.digest, self._clock() + delay)
                self._metrics.provider_failures[item.provider].inc()
                log.warning(
                    "provider_copy_not_deleted",
                    provider=item.provider,
                    attempts=item.attempts + 1,
                    retry_in=delay,
                    reason=str(exc),
                )
                continue
            self._backlog.deletion_done(item.digest)
            self._metrics.provider_deleted[item.provider].inc()
            log.info("provider_copy_deleted", provider=item.provider)
            done += 1
        self.update_gauges()
        return done

    def update_gauges(self) -> None:
        waiting, oldest = self._backlog.deletions_waiting(self._clock())
        self._metrics.provider_waiting.set(waiting)
        self._metrics.provider_oldest.set(oldest)
