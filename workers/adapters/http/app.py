"""``create_app``: the console's ASGI app. Other routers (telephony webhooks) can be mounted
next to the console's through ``extra_routers``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ...app.console.errors import (
    ConsoleError,
    RangeNotSatisfiable,
    Throttled,
    Unauthenticated,
    Unavailable,
)
from ...app.console.service import Console
from ...domain.errors import TransientError
from ...settings import Settings
from ..probes import Readiness, probe_answer
from . import api, pages
from .oidc import OidcClient
from .oidc import router as oidc_router
from .security import HttpConfig, SecurityHeaders, Sessions

STATIC = Path(__file__).parent / "static"

log = structlog.get_logger("callvault.console")


def create_app(
    console: Console,
    config: HttpConfig,
    settings: Settings,
    *,
    oidc: OidcClient | None = None,
    extra_routers: Sequence[APIRouter] = (),
    readiness: Readiness | None = None,
) -> FastAPI:
    app = FastAPI(
        title="callvault console",
        version="1",
        summary="Purpose-bound access to call recordings: search, listen, disclose, oversee.",
        docs_url=None,  # the interactive docs load scripts from elsewhere; /openapi.json stays
        redoc_url=None,
    )
    app.state.console = console
    app.state.http = config
    app.state.sessions = Sessions(config)
    app.state.settings = settings
    app.state.localities = settings.localities
    app.state.oidc = oidc
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(oidc_router)
    for router in extra_routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders, https=(config.public_origin or "").startswith("https://"))
    if config.trusted_proxies:  # outermost: every layer sees the client's own address
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(config.trusted_proxies))
    app.add_exception_handler(ConsoleError, _console_error)
    app.add_exception_handler(pages.SignInRequired, _sign_in)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(TransientError, _unavailable)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    probed = readiness or Readiness({})

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        """PostgreSQL and the object store answered lately (``adapters.probes``)."""
        status, body = probe_answer("/readyz", probed) or (404, {})
        return JSONResponse(body, status_code=status)

    return app


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _console_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ConsoleError)
    headers: dict[str, str] = {}
    if isinstance(error, Throttled):
        headers["retry-after"] = str(error.retry_after)
    if isinstance(error, RangeNotSatisfiable):
        headers["content-range"] = f"bytes */{error.size}"
    if isinstance(error, Unauthenticated):
        headers["www-authenticate"] = "Bearer"
    if _is_api(request):
        return JSONResponse({"detail": str(error)}, status_code=error.status, headers=headers)
    if isinstance(error, Unauthenticated):
        return RedirectResponse("/login", status_code=303)
    page = pages.error_page(request, error)
    page.headers.update(headers)
    return page


async def _unavailable(request: Request, error: Exception) -> Response:
    """An outage of PostgreSQL or the object store is a 503 with Retry-After, never a 500."""
    log.warning("console_service_unavailable", path=request.url.path, error=str(error))
    unavailable = Unavailable()
    headers = {"retry-after": str(unavailable.retry_after)}
    if _is_api(request):
        return JSONResponse({"detail": str(unavailable)}, status_code=503, headers=headers)
    try:
        page: Response = pages.error_page(request, unavailable)
    except TransientError:  # the page looks up who is signed in: the database is away
        page = PlainTextResponse(str(unavailable), status_code=503)
    page.headers.update(headers)
    return page


async def _http_error(request: Request, error: Exception) -> Response:
    """Routing's own refusals (no such page, wrong method): JSON for programs, and for
    people a page in their language."""
    assert isinstance(error, StarletteHTTPException)
    if _is_api(request) or error.status_code < 400:
        return await http_exception_handler(request, error)
    page = pages.http_error_page(request, error.status_code)
    page.headers.update(error.headers or {})
    return page


async def _sign_in(request: Request, error: Exception) -> Response:
    return RedirectResponse("/login", status_code=303)


async def _invalid(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    if _is_api(request):
        # the offending values are not echoed: they may be phone numbers or e-mails
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in error.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)
    return pages.error_page(request, ConsoleError("the form is incomplete or malformed"))


def http_config(settings: Settings, secret: bytes) -> HttpConfig:
    """Cookies (signed with ``secret``), the public origin and the trusted proxies."""
    return HttpConfig(
        session_secret=secret,
        session_ttl=settings.session_ttl.as_timedelta(),
        cookie_secure=settings.secure_cookies,
        public_origin=settings.public_url,
        trusted_proxies=settings.forwarded_allow_ips,
    )


def build_app(
    settings: Settings,
    console: Console,
    secret: bytes,
    *,
    extra_routers: Sequence[APIRouter] = (),
    readiness: Readiness | None = None,
) -> FastAPI:
    """The app as ``callvault serve`` runs it, from settings; ``secret`` signs its cookies."""
    return create_app(
        console,
        http_config(settings, secret),
        settings,
        oidc=OidcClient.from_settings(settings),
        extra_routers=extra_routers,
        readiness=readiness,
    )
