"""OpenID Connect sign-in against a fake provider (discovery, JWKS, token endpoint) that signs
real RS256 ID tokens; the console checks signature, issuer, audience, nonce and role claim."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.unit.conftest import World
from tests.unit.console_world import PASSWORD, ConsoleWorld, build_console
from workers.adapters.http.oidc import OidcClient, OidcConfig
from workers.app.console.model import Role

ISSUER = "https://idp.shop.example/realms/shop"
CLIENT_ID = "callvault-console"
REDIRECT = "http://testserver/oidc/callback"


@dataclass
class FakeProvider:
    """Answers like an OpenID provider; ``claims`` go into the next ID token it issues."""

    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "k1"}))
    claims: dict[str, Any] = field(default_factory=dict)
    nonce: str = ""
    issuer: str = ISSUER
    codes: list[str] = field(default_factory=list)

    def authorize(self, url: str) -> str:
        """The person signs in at the provider; it redirects back with a code."""
        query = parse_qs(urlsplit(url).query)
        assert query["client_id"] == [CLIENT_ID]
        assert query["code_challenge_method"] == ["S256"]
        self.nonce = query["nonce"][0]
        self.codes.append("code-1")
        return f"/oidc/callback?code=code-1&state={query['state'][0]}"

    def id_token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": "u-1",
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce,
            **self.claims,
        }
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{ISSUER}/auth",
                    "token_endpoint": f"{ISSUER}/token",
                    "jwks_uri": f"{ISSUER}/certs",
                },
            )
        if path.endswith("/certs"):
            return httpx.Response(200, json=KeySet([self.key]).as_dict(private=False))
        if path.endswith("/token"):
            form = parse_qs(request.content.decode())
            if form.get("code", [""])[0] not in self.codes or not form.get("code_verifier"):
                return httpx.Response(400, json={"error": "invalid_grant"})
            return httpx.Response(200, json={"id_token": self.id_token(), "token_type": "Bearer"})
        return httpx.Response(404)


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def cw(world: World, provider: FakeProvider) -> ConsoleWorld:
    config = OidcConfig(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret="s3cret-client",
        redirect_url=REDIRECT,
        role_claim="realm_access.roles",
        role_map=(("privacy-office", Role.DPO), ("call-centre", Role.QA)),
    )
    client = OidcClient(config, httpx.Client(transport=httpx.MockTransport(provider.handle)))
    return build_console(world, oidc=client)


def sign_in(
    cw: ConsoleWorld, provider: FakeProvider, roles: list[str], name: str, sub: str = "u-1"
) -> Any:
    provider.claims = {"preferred_username": name, "realm_access": {"roles": roles}, "sub": sub}
    browser = cw.client(follow_redirects=False)
    start = browser.get("/oidc/login")
    assert start.status_code == 302
    assert start.headers["location"].startswith(f"{ISSUER}/auth?")
    assert "samesite=lax" in start.headers["set-cookie"].lower()
    back = browser.get(provider.authorize(start.headers["location"]))
    return browser, back


def test_a_mapped_role_signs_in_and_the_account_is_created(
    cw: ConsoleWorld, provider: FakeProvider
) -> None:
    browser, back = sign_in(cw, provider, ["offline_access", "privacy-office"], "Rasa.DPO")
    assert back.status_code == 303
    assert "samesite=strict" in back.headers["set-cookie"].lower()
    me = browser.get("/api/v1/session").json()
    assert (me["username"], me["role"]) == ("rasa.dpo", "dpo")
    account = cw.console.accounts.user("rasa.dpo")
    assert account is not None
    assert account.password_hash is None  # no password: the provider vouches


def test_no_mapped_role_no_entry(cw: ConsoleWorld, provider: FakeProvider) -> None:
    _, back = sign_in(cw, provider, ["warehouse"], "jonas")
    assert back.status_code == 403
    assert cw.console.accounts.user("jonas") is None


def test_a_token_from_another_issuer_or_with_a_wrong_nonce_is_refused(
    cw: ConsoleWorld, provider: FakeProvider
) -> None:
    provider.issuer = "https://evil.example"
    _, back = sign_in(cw, provider, ["call-centre"], "ona")
    assert back.status_code == 303
    assert back.headers["location"] == "/login"  # refused: back to the sign-in page
    provider.issuer = ISSUER
    provider.claims = {"preferred_username": "ona", "realm_access": {"roles": ["call-centre"]}}
    browser = cw.client(follow_redirects=False)
    start = browser.get("/oidc/login")
    callback = provider.authorize(start.headers["location"])
    provider.nonce = "replayed"
    assert browser.get(callback).headers["location"] == "/login"
    assert cw.console.accounts.user("ona") is None


def test_a_forged_state_is_refused(cw: ConsoleWorld, provider: FakeProvider) -> None:
    browser = cw.client(follow_redirects=False)
    browser.get("/oidc/login")
    forged = browser.get("/oidc/callback?code=code-1&state=not-mine")
    assert forged.headers["location"] == "/login"


def test_a_disabled_account_stays_out(cw: ConsoleWorld, provider: FakeProvider) -> None:
    sign_in(cw, provider, ["call-centre"], "ona")
    cw.console.accounts.set_disabled("ona", True, by="admin1")
    _, back = sign_in(cw, provider, ["call-centre"], "ona")
    assert back.headers["location"] == "/login"


def test_the_role_follows_the_provider(cw: ConsoleWorld, provider: FakeProvider) -> None:
    first, _ = sign_in(cw, provider, ["call-centre"], "ona")
    assert first.get("/api/v1/session").json()["role"] == "qa"
    second, _ = sign_in(cw, provider, ["privacy-office", "call-centre"], "ona")
    assert second.get("/api/v1/session").json()["role"] == "dpo"
    assert first.get("/api/v1/session").status_code == 401  # the old role's session ended
    actions = [(e.details["action"], e.details["by"]) for e in cw.audit("account")]
    assert actions[-3:] == [
        ("user_added", ISSUER),
        ("identity_bound", ISSUER),
        ("role_changed", ISSUER),
    ]
    assert json.dumps(cw.console.accounts.user("ona").role) == '"dpo"'


# --- bound to (issuer, subject), never to a name --------------------------------------------
def test_a_provider_user_named_like_a_password_account_does_not_get_it(
    cw: ConsoleWorld, provider: FakeProvider
) -> None:
    _, back = sign_in(cw, provider, ["call-centre"], "admin1", sub="u-evil")
    assert back.status_code == 403
    admin = cw.console.accounts.user("admin1")
    assert admin is not None
    assert admin.role.value == "admin"  # untouched
    assert (
        cw.client()
        .post("/api/v1/session", json={"username": "admin1", "password": PASSWORD})
        .json()["role"]
        == "admin"
    )


def test_the_account_follows_the_subject_not_the_name(
    cw: ConsoleWorld, provider: FakeProvider
) -> None:
    first, _ = sign_in(cw, provider, ["call-centre"], "ona", sub="u-1")
    assert first.get("/api/v1/session").json()["username"] == "ona"
    renamed, _ = sign_in(cw, provider, ["call-centre"], "ona.k", sub="u-1")
    assert renamed.get("/api/v1/session").json()["username"] == "ona"  # the same account
    _, other = sign_in(cw, provider, ["privacy-office"], "ona", sub="u-2")
    assert other.status_code == 403  # another person now called "ona" at the provider
    assert cw.console.accounts.user("ona").role.value == "qa"
    assert cw.console.accounts.user("ona.k") is None


def test_an_account_made_without_a_password_is_bound_at_its_first_sign_in(
    cw: ConsoleWorld, provider: FakeProvider
) -> None:
    cw.console.accounts.add_user("jonas", Role.QA, None, ["*"], by="cli")  # --no-password
    browser, _ = sign_in(cw, provider, ["call-centre"], "jonas", sub="u-3")
    assert browser.get("/api/v1/session").json()["username"] == "jonas"
    _, later = sign_in(cw, provider, ["call-centre"], "jonas", sub="u-4")
    assert later.status_code == 403


def test_an_id_token_without_a_subject_is_refused(cw: ConsoleWorld, provider: FakeProvider) -> None:
    _, back = sign_in(cw, provider, ["call-centre"], "ona", sub="")
    assert back.headers["location"] == "/login"
    assert cw.console.accounts.user("ona") is None
