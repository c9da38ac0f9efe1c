"""The console over the unit-test world: the real use cases and ASGI app on the in-memory
fakes, staff of every role, and an HTTP client that speaks to the app in-process."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tests.fakes.console import ConsoleState, memory_console_reads
from tests.unit.conftest import World
from workers.adapters.console_outbound import BusRequests
from workers.adapters.http.app import create_app, http_config
from workers.adapters.http.composition import session_secret
from workers.adapters.http.oidc import OidcClient
from workers.app.console.model import Role
from workers.app.console.service import Console, ConsoleReads, console
from workers.domain.messages import CarryOutRequest
from workers.domain.model import DsrRequest

PASSWORD = "correct horse battery"
# Argon2id still, with the cost cut so that each test's four accounts take milliseconds.
FAST_ARGON2ID = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
STAFF = {"qa1": Role.QA, "cx1": Role.COMPLAINTS, "dpo1": Role.DPO, "admin1": Role.ADMIN}


@dataclass
class ConsoleWorld:
    world: World
    reads: ConsoleReads
    console: Console
    app: Any
    tokens: dict[str, str]

    @property
    def state(self) -> ConsoleState:
        """The console's tables in the fake database."""
        state: ConsoleState = self.world.db.state.console
        return state

    def audit(self, action: str) -> list[Any]:
        """The audit trail's entries of this action, oldest first."""
        return [e for e in self.world.db.state.audit if e.action == action]

    def client(self, language: str = "en", **kwargs: Any) -> TestClient:
        """A browser whose user reads ``language`` (the console's default is Lithuanian)."""
        client = TestClient(self.app, base_url="http://testserver", **kwargs)
        client.headers["accept-language"] = language
        return client

    def api(self, username: str) -> TestClient:
        """An API client holding only a bearer token."""
        client = self.client()
        client.headers["authorization"] = f"Bearer {self.tokens[username]}"
        return client

    def signed_in(self, username: str) -> TestClient:
        client = self.client()
        answer = client.post("/api/v1/session", json={"username": username, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return client

    def dsr(self, request_id: str, dsr_type: str, subject: dict[str, Any]) -> str:
        """A request carried out as the worker does, with the console's history wired in as
        bootstrap wires it: exports list recipients and consultations, answers list the
        recipients to tell."""
        data = {
            "request_id": request_id,
            "type": dsr_type,
            "received_at": self.world.clock.now.isoformat(),
            "identity_verified": True,
            "subject": subject,
        }
        request = DsrRequest.from_data(f"ev-{request_id}", data)
        return self.world.handle(CarryOutRequest(request))


def build_console(
    world: World,
    *,
    oidc: OidcClient | None = None,
    hasher: PasswordHasher = FAST_ARGON2ID,
    **overrides: Any,
) -> ConsoleWorld:
    settings = world.settings.model_copy(update=overrides) if overrides else world.settings
    ctx = replace(world.ctx, settings=settings)
    reads = memory_console_reads(world.db)
    requests = BusRequests(lambda: world.bus, "dsr.requests", "urn:callvault:console")
    keys, renditions = world.container.keys, world.container.renditions
    uses = console(ctx, reads, requests, keys=keys, renditions=renditions, hasher=hasher)
    secret = session_secret(settings, keys)
    app = create_app(uses, http_config(settings, secret), settings, oidc=oidc)
    world.ctx.history = uses.history
    tokens = {}
    for username, role in STAFF.items():
        uses.accounts.add_user(username, role, PASSWORD, ["*"], by="cli:test")
        tokens[username] = uses.accounts.create_token(username, by="cli:test")[1]
    return ConsoleWorld(world, reads, uses, app, tokens)
