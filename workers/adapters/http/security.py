"""Who is asking and whether the request may change anything: signed session cookies,
bearer tokens, CSRF tokens, role gates, and the headers every response carries."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...app.console.errors import NotAllowed, Unauthenticated
from ...app.console.model import Principal, Role
from ...app.console.service import Console

SESSION_COOKIE = "cv_session"
PRE_SESSION_COOKIE = "cv_pre"  # carries the CSRF token of the sign-in form
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


@dataclass(frozen=True)
class HttpConfig:
    session_secret: bytes
    session_ttl: timedelta
    cookie_secure: bool = False
    public_origin: str | None = None  # the origin browsers see (a reverse proxy's), if any
    trusted_proxies: tuple[str, ...] = ()  # whose X-Forwarded-For/-Proto are believed


@dataclass(frozen=True)
class Session:
    username: str
    role: str
    via: str
    csrf: str


class Sessions:
    """Sessions live in the browser, signed: any server behind a load balancer can read them,
    and none keeps state. A session names its role, so a role change ends it."""

    def __init__(self, config: HttpConfig) -> None:
        self._config = config
        self._signer = URLSafeTimedSerializer(config.session_secret, salt="callvault-session")
        self._pre = URLSafeTimedSerializer(config.session_secret, salt="callvault-pre-session")

    @property
    def secure(self) -> bool:
        return self._config.cookie_secure

    def serializer(self, purpose: str) -> URLSafeTimedSerializer:
        """A signer for another short-lived cookie (its own salt)."""
        return URLSafeTimedSerializer(self._config.session_secret, salt=purpose)

    def issue(self, response: Response, principal: Principal) -> Session:
        session = Session(principal.username, principal.role.value, principal.via, _token())
        value = self._signer.dumps(
            {"u": session.username, "r": session.role, "v": session.via, "c": session.csrf}
        )
        self._set(response, SESSION_COOKIE, value, self._config.session_ttl)
        response.delete_cookie(PRE_SESSION_COOKIE, path="/")
        return session

    def read(self, request: Request) -> Session | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            data = self._signer.loads(raw, max_age=int(self._config.session_ttl.total_seconds()))
        except BadSignature:
            return None
        return Session(data["u"], data["r"], data["v"], data["c"])

    def end(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", samesite="strict", httponly=True)

    def pre_session(self, request: Request, response: Response) -> str:
        """The sign-in form's CSRF token, kept in a short-lived signed cookie."""
        raw = request.cookies.get(PRE_SESSION_COOKIE)
        if raw:
            try:
                token: str = self._pre.loads(raw, max_age=3600)
                return token
            except BadSignature:
                pass
        token = _token()
        self._set(response, PRE_SESSION_COOKIE, self._pre.dumps(token), timedelta(hours=1))
        return token

    def pre_session_token(self, request: Request) -> str | None:
        raw = request.cookies.get(PRE_SESSION_COOKIE)
        if not raw:
            return None
        try:
            token: str = self._pre.loads(raw, max_age=3600)
        except BadSignature:
            return None
        return token

    def _set(self, response: Response, name: str, value: str, ttl: timedelta) -> None:
        response.set_cookie(
            name,
            value,
            max_age=int(ttl.total_seconds()),
            path="/",
            httponly=True,
            samesite="strict",
            secure=self._config.cookie_secure,
        )


def _token() -> str:
    return secrets.token_urlsafe(24)


def same_token(expected: str | None, given: str | None) -> bool:
    return bool(expected and given and hmac.compare_digest(expected, given))


@dataclass(frozen=True)
class Caller:
    principal: Principal
    session: Session | None  # None for API clients with a bearer token


def caller_of(request: Request) -> Caller:
    """The authenticated caller, or :class:`Unauthenticated` (401)."""
    console: Console = request.app.state.console
    sessions: Sessions = request.app.state.sessions
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        principal = (
            console.accounts.principal_for_token(value.strip())
            if scheme.lower() == "bearer"
            else None
        )
        if principal is None:
            raise Unauthenticated("invalid or revoked API token")
        return Caller(principal, None)
    session = sessions.read(request)
    if session is None:
        raise Unauthenticated("sign in, or send Authorization: Bearer TOKEN")
    principal = console.accounts.resume(session.username, session.role, session.via)
    if principal is None:
        raise Unauthenticated("the session has ended")
    return Caller(principal, session)


def api_caller(request: Request) -> Caller:
    """A caller of the JSON API. Browser sessions may change things only from this origin:
    a JSON body or the CSRF header is required and a cross-site origin is refused."""
    caller = caller_of(request)
    if caller.session is not None and request.method in UNSAFE_METHODS:
        check_same_origin(request)
        content_type = request.headers.get("content-type", "")
        json_body = content_type.split(";", 1)[0].strip() == "application/json"
        if not json_body and not same_token(caller.session.csrf, request.headers.get(CSRF_HEADER)):
            raise NotAllowed("a browser request that changes state needs its CSRF token")
    return caller


def check_same_origin(request: Request) -> None:
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise NotAllowed("cross-site request refused")
    origin = request.headers.get("origin")
    if origin and origin != own_origin(request):
        raise NotAllowed("cross-origin request refused")


def own_origin(request: Request) -> str:
    """The console's origin as the browser sees it: the configured public URL behind a
    reverse proxy, else the request's own scheme and host."""
    config: HttpConfig = request.app.state.http
    return config.public_origin or f"{request.url.scheme}://{request.url.netloc}"


def client_address(request: Request) -> str:
    """The client's address (a trusted proxy's X-Forwarded-For already applied)."""
    return request.client.host if request.client else "unknown"


def allow(*roles: Role) -> Callable[[Caller], Principal]:
    """A dependency giving the principal when their role is one of ``roles`` (else 403)."""
    allowed = frozenset(roles)

    def check(caller: Caller = Depends(api_caller)) -> Principal:  # noqa: B008 - FastAPI idiom
        if caller.principal.role not in allowed:
            raise NotAllowed("the role %(role)s may not do this", role=caller.principal.role)
        return caller.principal

    return check


def roles_extra(*roles: Role) -> dict[str, Any]:
    """OpenAPI extension naming the roles a route admits (documentation, and checked by the
    test that every route refuses the others)."""
    return {"x-callvault-roles": sorted(r.value for r in roles)}


class SecurityHeaders:
    """CSP, frame denial, no sniffing, no referrer; nothing personal or audible is cached
    (every response but the static assets is ``no-store``)."""

    def __init__(self, app: ASGIApp, *, https: bool = False) -> None:
        self._app = app
        self._https = https  # served to browsers over TLS: tell them to stay on it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "content-security-policy" not in headers:
                    headers["content-security-policy"] = CSP
                headers["x-frame-options"] = "DENY"
                headers["x-content-type-options"] = "nosniff"
                headers["referrer-policy"] = (
                    "same-origin"  # no-referrer would make forms send Origin: null
                )
                headers["cross-origin-opener-policy"] = "same-origin"
                headers["cross-origin-resource-policy"] = "same-origin"
                headers["permissions-policy"] = "camera=(), microphone=(), geolocation=()"
                if self._https:
                    headers["strict-transport-security"] = "max-age=31536000"
                if not static:
                    headers["cache-control"] = "no-store"
                    headers["pragma"] = "no-cache"
            await send(message)

        await self._app(scope, receive, send_with_headers)
