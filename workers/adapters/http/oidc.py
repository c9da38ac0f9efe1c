"""Optional sign-in through the shop's OpenID Connect provider (authorization code + PKCE).

The provider's ID token is checked (signature against its JWKS, issuer, audience, expiry,
nonce, subject). The account is the one bound to the token's issuer and ``sub``, never to the
name the provider shows: a first sign-in creates it under that name, and a name that belongs to
a password account or another identity is refused. The person's role comes from one claim
(``CALLVAULT_OIDC_ROLE_CLAIM``, a dotted path such as ``realm_access.roles`` for nested
claims), mapped by ``CALLVAULT_OIDC_ROLE_MAP``
(``claim-value=role,...``; the first pair that matches wins). Nobody without a mapped role gets
in. The state, nonce and PKCE verifier wait in a short-lived signed cookie that is sent on the
provider's redirect back (SameSite=Lax, path /oidc); the session cookie itself stays Strict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ...app.console.errors import NotAllowed, NotFound, Unauthenticated
from ...app.console.model import Identity, Role
from ...app.console.service import Console
from ...settings import Settings
from .security import Sessions

FLOW_COOKIE = "cv_oidc"
FLOW_TTL = 600
SCOPES = "openid profile email"
router = APIRouter(prefix="/oidc", include_in_schema=False)


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str | None
    redirect_url: str
    role_claim: str = "roles"
    role_map: tuple[tuple[str, Role], ...] = ()
    username_claim: str = "preferred_username"


class OidcClient:
    def __init__(self, config: OidcConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self._http = http or httpx.Client(timeout=10)
        self._metadata: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcClient | None:
        if not settings.oidc_issuer:
            return None
        if not settings.oidc_client_id or not settings.oidc_redirect_url:
            raise ValueError("OIDC needs CALLVAULT_OIDC_CLIENT_ID and CALLVAULT_OIDC_REDIRECT_URL")
        pairs = tuple(
            (claim, Role(role))
            for claim, _, role in (item.rpartition("=") for item in settings.oidc_role_map)
        )
        secret = settings.oidc_client_secret
        return cls(
            OidcConfig(
                issuer=settings.oidc_issuer.rstrip("/"),
                client_id=settings.oidc_client_id,
                client_secret=secret.get_secret_value() if secret else None,
                redirect_url=settings.oidc_redirect_url,
                role_claim=settings.oidc_role_claim,
                role_map=pairs,
                username_claim=settings.oidc_username_claim,
            )
        )

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = f"{self.config.issuer}/.well-known/openid-configuration"
            response = self._http.get(url)
            response.raise_for_status()
            found: dict[str, Any] = response.json()
            if found.get("issuer", "").rstrip("/") != self.config.issuer:
                raise Unauthenticated("the identity provider names another issuer")
            self._metadata = found
        return self._metadata

    def authorization_url(self, state: str, nonce: str, verifier: str) -> str:
        url: str = prepare_grant_uri(
            self.metadata()["authorization_endpoint"],
            self.config.client_id,
            "code",
            redirect_uri=self.config.redirect_url,
            scope=SCOPES,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return url

    def claims(self, code: str, nonce: str, verifier: str) -> dict[str, Any]:
        """Exchange the code and return the verified ID token's claims."""
        secret = self.config.client_secret
        response = self._http.post(
            self.metadata()["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.config.redirect_url,
                "client_id": self.config.client_id,
                "code_verifier": verifier,
            },
            auth=(self.config.client_id, secret) if secret else httpx.USE_CLIENT_DEFAULT,
        )
        if response.status_code != 200:
            raise Unauthenticated("the identity provider refused the sign-in")
        id_token = response.json().get("id_token")
        if not id_token:
            raise Unauthenticated("the identity provider sent no ID token")
        keys = KeySet.import_key_set(self._http.get(self.metadata()["jwks_uri"]).json())
        try:
            token = jwt.decode(id_token, keys, algorithms=["RS256", "ES256", "PS256"])
            jwt.JWTClaimsRegistry(
                now=int(time.time()),
                leeway=60,
                iss={"essential": True, "value": self.config.issuer},
                aud={"essential": True, "value": self.config.client_id},
                exp={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("the ID token did not verify") from exc
        return dict(token.claims)

    def identity(self, claims: dict[str, Any]) -> tuple[Identity, Role]:
        """The person (bound by issuer and subject) and their role, from verified claims;
        NotAllowed when no role is mapped."""
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise Unauthenticated("the ID token names no subject")
        username = str(claims.get(self.config.username_claim) or "").strip().lower()
        person = Identity(self.config.issuer, subject, username)
        values = _claim(claims, self.config.role_claim)
        for claim_value, role in self.config.role_map:
            if claim_value in values:
                return person, role
        raise NotAllowed("your identity provider grants you no role in this console")


def _claim(claims: dict[str, Any], path: str) -> set[str]:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {str(v) for v in value}
    return set()


def _client(request: Request) -> OidcClient:
    client: OidcClient | None = request.app.state.oidc
    if client is None:
        raise NotFound("OpenID Connect sign-in is not configured")
    return client


def _flow(request: Request) -> URLSafeTimedSerializer:
    sessions: Sessions = request.app.state.sessions
    return sessions.serializer("callvault-oidc-flow")


@router.get("/login")
def login(request: Request) -> Response:
    client = _client(request)
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(48)
    response = RedirectResponse(client.authorization_url(state, nonce, verifier), status_code=302)
    response.set_cookie(
        FLOW_COOKIE,
        _flow(request).dumps({"s": state, "n": nonce, "v": verifier}),
        max_age=FLOW_TTL,
        path="/oidc",
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back to us
        secure=request.app.state.sessions.secure,
    )
    return response


@router.get("/callback")
def callback(request: Request, code: str = "", state: str = "") -> Response:
    client = _client(request)
    try:
        flow = _flow(request).loads(request.cookies.get(FLOW_COOKIE, ""), max_age=FLOW_TTL)
    except BadSignature:
        raise Unauthenticated("the sign-in took too long or did not start here") from None
    if not code or state != flow["s"]:
        raise Unauthenticated("the sign-in answer does not match its request")
    person, role = client.identity(client.claims(code, flow["n"], flow["v"]))
    console: Console = request.app.state.console
    principal = console.accounts.sign_in_federated(person, role)
    response = RedirectResponse("/", status_code=303)
    request.app.state.sessions.issue(response, principal)
    response.delete_cookie(FLOW_COOKIE, path="/oidc")
    return response
