"""Server-rendered pages for people: sign-in, search, listen (purpose first), and the DPO's
and the administrator's desks. Forms post back with a CSRF token; nothing needs a script."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ...app.console.disclosures import DisclosureRequest
from ...app.console.errors import ConsoleError, Invalid, NotAllowed, Unauthenticated
from ...app.console.model import (
    CASE_REF_REQUIRED,
    PURPOSES_OF,
    SEARCHERS,
    Principal,
    RecipientKind,
    Role,
)
from ...app.console.oversight import HoldOrder
from ...app.console.recordings import SearchQuery
from ...app.console.service import Console
from ...domain.identifiers import Subject
from ...domain.retention import parse_timestamp
from .api import recording_item
from .charts import bar_chart, gauge
from .security import (
    CSRF_FIELD,
    Caller,
    Sessions,
    caller_of,
    check_same_origin,
    client_address,
    same_token,
)
from .views import access_item, disclosure_item, hold_item, report_dict, request_item

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)


class SignInRequired(Exception):
    """A page was asked for without a session: the person goes to the sign-in page."""


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


async def form_data(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def page_caller(request: Request) -> Caller:
    """A signed-in person (API tokens do not open pages)."""
    if "authorization" in request.headers:
        raise NotAllowed("pages are for people signed in; API clients use /api/v1")
    try:
        return caller_of(request)
    except Unauthenticated:
        raise SignInRequired from None


def form_caller(
    request: Request,
    form: Annotated[dict[str, str], Depends(form_data)],
    caller: Annotated[Caller, Depends(page_caller)],
) -> Caller:
    """A signed-in person posting a form of this site (its CSRF token checked)."""
    check_same_origin(request)
    assert caller.session is not None
    if not same_token(caller.session.csrf, form.get(CSRF_FIELD)):
        raise NotAllowed("the form has expired; reload the page and try again")
    return caller


PageCaller = Annotated[Caller, Depends(page_caller)]
FormCaller = Annotated[Caller, Depends(form_caller)]
Form = Annotated[dict[str, str], Depends(form_data)]
ConsoleDep = Annotated[Console, Depends(console_of)]


def render(
    request: Request,
    name: str,
    caller: Caller | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    principal = caller.principal if caller else None
    return TEMPLATES.TemplateResponse(
        request,
        name,
        {
            "me": principal,
            "csrf": caller.session.csrf if caller and caller.session else "",
            "nav": _nav(principal),
            **context,
        },
        status_code=status_code,
    )


def _nav(principal: Principal | None) -> list[tuple[str, str]]:
    if principal is None:
        return []
    links: list[tuple[str, str]] = []
    if principal.role in SEARCHERS:
        links.append(("/search", "Search"))
    if principal.role is Role.DPO:
        links += [
            ("/dpo", "Overview"),
            ("/dpo/holds", "Holds"),
            ("/dpo/requests", "Requests"),
            ("/dpo/access-log", "Access log"),
            ("/dpo/disclosures", "Disclosures"),
            ("/dpo/report", "Monthly report"),
        ]
    if principal.role is Role.ADMIN:
        links.append(("/admin/users", "Users"))
    return links


def error_page(request: Request, error: ConsoleError) -> HTMLResponse:
    try:
        caller: Caller | None = caller_of(request)
    except ConsoleError:
        caller = None
    return render(
        request, "error.html", caller, error.status, message=str(error), status=error.status
    )


def _lines(text: str | None) -> tuple[str, ...]:
    """Several values typed one per line or separated by commas."""
    return tuple(v.strip() for v in (text or "").replace(",", "\n").splitlines() if v.strip())


# --- sign-in ----------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    cookies = Response()
    token = sessions_of(request).pre_session(request, cookies)
    page = render(
        request, "login.html", None, oidc=request.app.state.oidc is not None, login_csrf=token
    )
    for value in cookies.headers.getlist("set-cookie"):
        page.headers.append("set-cookie", value)
    return page


@router.post("/login")
def login(request: Request, form: Form, console: ConsoleDep) -> Response:
    check_same_origin(request)
    sessions = sessions_of(request)
    if not same_token(sessions.pre_session_token(request), form.get(CSRF_FIELD)):
        raise NotAllowed("the sign-in form has expired; reload it and try again")
    try:
        principal = console.accounts.sign_in(
            form.get("username", ""), form.get("password", ""), client_address(request)
        )
    except ConsoleError as error:
        return render(
            request,
            "login.html",
            None,
            error.status,
            oidc=request.app.state.oidc is not None,
            login_csrf=form.get(CSRF_FIELD),
            error=str(error),
        )
    response = RedirectResponse("/", status_code=303)
    sessions.issue(response, principal)
    return response


@router.post("/logout")
def logout(request: Request, caller: FormCaller) -> Response:
    response = RedirectResponse("/login", status_code=303)
    sessions_of(request).end(response)
    return response


@router.get("/")
def home(caller: PageCaller) -> Response:
    role = caller.principal.role
    # the overview counts every tenant: a DPO of some tenants starts at the requests
    desk = "/dpo" if caller.principal.every_tenant else "/dpo/requests"
    target = {Role.DPO: desk, Role.ADMIN: "/admin/users"}.get(role, "/search")
    return RedirectResponse(target, status_code=303)


# --- search and listen ------------------------------------------------------------------------
@router.get("/search")
def search_form(request: Request, caller: PageCaller) -> HTMLResponse:
    if caller.principal.role not in SEARCHERS:
        raise NotAllowed("this role does not consult recordings")
    return render(request, "search.html", caller, items=None, form={})


@router.post("/search")
def search(request: Request, caller: FormCaller, form: Form, console: ConsoleDep) -> HTMLResponse:
    query = SearchQuery(
        phone_numbers=_lines(form.get("phone")),
        emails=_lines(form.get("email")),
        customer_ids=_lines(form.get("customer_id")),
        order_ids=_lines(form.get("order_id")),
        call_ids=_lines(form.get("call_id")),
        start=_day(form.get("from"), end=False),
        end=_day(form.get("to"), end=True),
        agent_id=(form.get("agent_id") or "").strip() or None,
    )
    found = console.recordings.search(caller.principal, query)
    items = [recording_item(r) for r in found]  # the customer only once a purpose is chosen
    shown = {k: v for k, v in form.items() if k != CSRF_FIELD}
    return render(request, "search.html", caller, items=items, form=shown)


def _day(text: str | None, *, end: bool) -> Any:
    if not text:
        return None
    suffix = "T23:59:59Z" if end else "T00:00:00Z"
    try:
        return parse_timestamp(text + suffix if len(text) == 10 else text)
    except ValueError:
        raise Invalid("dates are YYYY-MM-DD") from None


@router.get("/recordings/{recording_id}")
def recording_page(
    recording_id: str, request: Request, caller: PageCaller, console: ConsoleDep
) -> HTMLResponse:
    recording = console.recordings.recording(caller.principal, recording_id)
    return render(
        request,
        "recording.html",
        caller,
        item=recording_item(recording),
        purposes=sorted(p.value for p in PURPOSES_OF[caller.principal.role]),
        case_ref_for=sorted(p.value for p in CASE_REF_REQUIRED),
    )


@router.post("/recordings/{recording_id}/listen")
def listen(
    recording_id: str, request: Request, caller: FormCaller, form: Form, console: ConsoleDep
) -> HTMLResponse:
    """The player appears only once a purpose (and, where needed, a case) was given and the
    recording may be heard for it; the audio request itself goes on record, and so does the
    customer's name and e-mail shown beside it (for the roles that need them)."""
    purpose = form.get("purpose", "")
    case_ref = (form.get("case_ref") or "").strip() or None
    recordings = console.recordings
    chosen = recordings.check_purpose(caller.principal, purpose, case_ref)
    recording = recordings.recording(caller.principal, recording_id)
    recordings.may_play(caller.principal, recording, chosen)
    customers = recordings.customers(caller.principal, [recording], chosen.value, case_ref)
    query = {"purpose": chosen.value} | ({"case_ref": case_ref} if case_ref else {})
    return render(
        request,
        "player.html",
        caller,
        item=recording_item(recording),
        customer=customers.get(recording.recording_id),
        purpose=chosen.value,
        case_ref=case_ref,
        src=f"/api/v1/recordings/{recording_id}/audio?{urlencode(query)}",
        content_type=recording.content_type or "application/octet-stream",
    )


# --- the DPO (each use case refuses other roles) ------------------------------------------------
@router.get("/dpo")
def overview(request: Request, caller: PageCaller, console: ConsoleDep) -> HTMLResponse:
    data = console.oversight.overview(caller.principal)
    answered = data.requests_on_time + data.requests_late
    charts = [
        bar_chart("Recordings stored and purged per day", data.per_day.days, data.per_day.rows),
        bar_chart(
            "Worst purge lag per day (retention)",
            data.lag_per_day.days,
            data.lag_per_day.rows,
            " s",
        ),
    ]
    return render(
        request,
        "overview.html",
        caller,
        data=data,
        charts=charts,
        deadlines=gauge("Requests answered within the deadline", data.requests_on_time, answered),
    )


@router.get("/dpo/holds")
def holds_page(request: Request, caller: PageCaller, console: ConsoleDep) -> HTMLResponse:
    views = console.oversight.holds(caller.principal)
    return render(request, "holds.html", caller, holds=[hold_item(v) for v in views], notice=None)


@router.post("/dpo/holds")
def place_hold(
    request: Request, caller: FormCaller, form: Form, console: ConsoleDep
) -> HTMLResponse:
    scope_kind = form.get("scope_kind", "recording_ids")
    targets = _lines(form.get("targets"))
    order = HoldOrder(
        reason=form.get("reason", ""),
        case_ref=(form.get("case_ref") or "").strip() or None,
        hold_id=(form.get("hold_id") or "").strip() or None,
        recording_ids=targets if scope_kind == "recording_ids" else (),
        call_ids=targets if scope_kind == "call_ids" else (),
        subject=Subject(
            phone_numbers=targets if scope_kind == "phone_numbers" else (),
            emails=targets if scope_kind == "emails" else (),
            customer_ids=targets if scope_kind == "customer_ids" else (),
            order_ids=targets if scope_kind == "order_ids" else (),
        ),
    )
    hold_id = console.oversight.place_hold(caller.principal, order)
    views = console.oversight.holds(caller.principal)
    return render(
        request,
        "holds.html",
        caller,
        holds=[hold_item(v) for v in views],
        notice=f"Hold {hold_id} placed.",
    )


@router.post("/dpo/holds/{hold_id}/release")
def release_hold(
    hold_id: str, request: Request, caller: FormCaller, console: ConsoleDep
) -> HTMLResponse:
    console.oversight.release_hold(caller.principal, hold_id)
    views = console.oversight.holds(caller.principal)
    return render(
        request,
        "holds.html",
        caller,
        holds=[hold_item(v) for v in views if v.hold.hold_id != hold_id],
        notice=f"Hold {hold_id} released.",
    )


@router.get("/dpo/requests")
def requests_page(request: Request, caller: PageCaller, console: ConsoleDep) -> HTMLResponse:
    open_requests = console.oversight.requests(caller.principal, open_only=True)
    recent = console.oversight.requests(caller.principal, open_only=False)
    return render(
        request,
        "requests.html",
        caller,
        open_requests=[request_item(r) for r in open_requests],
        recent=[request_item(r) for r in recent if r.completed_at][:100],
    )


@router.get("/dpo/access-log")
def access_log_page(
    request: Request,
    caller: PageCaller,
    console: ConsoleDep,
    recording_id: str | None = None,
) -> HTMLResponse:
    entries = console.oversight.access_log(caller.principal, recording_id or None)
    return render(
        request,
        "access_log.html",
        caller,
        entries=[access_item(a) | {"role": a.role.value, "kind": a.kind.value} for a in entries],
        recording_id=recording_id or "",
    )


@router.get("/dpo/disclosures")
def disclosures_page(request: Request, caller: PageCaller, console: ConsoleDep) -> HTMLResponse:
    register = console.disclosures.register(caller.principal)
    return render(
        request,
        "disclosures.html",
        caller,
        register=[disclosure_item(d) for d in register],
        kinds=[k.value for k in RecipientKind],
        result=None,
    )


@router.post("/dpo/disclosures")
def disclose(request: Request, caller: FormCaller, form: Form, console: ConsoleDep) -> HTMLResponse:
    disclosure, export = console.disclosures.disclose(
        caller.principal,
        DisclosureRequest(
            recipient=form.get("recipient", ""),
            recipient_kind=form.get("recipient_kind", ""),
            legal_basis=form.get("legal_basis", ""),
            reference=form.get("reference", ""),
            recording_ids=_lines(form.get("recording_ids")),
        ),
    )
    register = console.disclosures.register(caller.principal)
    return render(
        request,
        "disclosures.html",
        caller,
        register=[disclosure_item(d) for d in register],
        kinds=[k.value for k in RecipientKind],
        result={"disclosure": disclosure_item(disclosure), "export": export},
    )


@router.get("/dpo/report")
def report_page(
    request: Request, caller: PageCaller, console: ConsoleDep, month: str | None = None
) -> HTMLResponse:
    report = console.oversight.monthly_report(caller.principal, month or None)
    settings = request.app.state.settings
    return render(request, "report.html", caller, report=report_dict(report), notice=settings)


# --- the administrator ------------------------------------------------------------------------
def _admin(caller: Caller) -> None:
    if caller.principal.role is not Role.ADMIN:
        raise NotAllowed("only an administrator may manage users")


def _users_page(request: Request, caller: Caller, console: Console, **extra: Any) -> HTMLResponse:
    users = console.accounts.users()
    tokens = {u.username: console.accounts.tokens_of(u.username) for u in users}
    return render(
        request,
        "users.html",
        caller,
        users=users,
        tokens=tokens,
        roles=[r.value for r in Role],
        **({"created_token": None, "message": None} | extra),
    )


@router.get("/admin/users")
def users_page(request: Request, caller: PageCaller, console: ConsoleDep) -> HTMLResponse:
    _admin(caller)
    return _users_page(request, caller, console)


@router.post("/admin/users")
def add_user(request: Request, caller: FormCaller, form: Form, console: ConsoleDep) -> HTMLResponse:
    _admin(caller)
    username = form.get("username", "").strip()
    console.accounts.add_user(
        username,
        Role(form.get("role", "qa")),
        form.get("password") or None,
        _lines(form.get("tenants")),
        by=caller.principal.username,
    )
    return _users_page(request, caller, console, message=f"User {username} added.")


@router.post("/admin/users/{username}/{action}")
def change_user(
    username: str, action: str, request: Request, caller: FormCaller, console: ConsoleDep
) -> HTMLResponse:
    _admin(caller)
    me = caller.principal.username
    if action == "token":
        if username != me:
            raise NotAllowed("an API token is made only by the person it is for")
        _token_id, token = console.accounts.create_token(me, by=me)
        return _users_page(request, caller, console, created_token=token)
    if action not in ("disable", "enable"):
        raise Invalid("unknown action")
    console.accounts.set_disabled(username, action == "disable", by=me)
    return _users_page(request, caller, console, message=f"User {username}: {action}d.")


@router.post("/admin/tokens/{token_id}/revoke")
def revoke_token(
    token_id: str, request: Request, caller: FormCaller, console: ConsoleDep
) -> HTMLResponse:
    _admin(caller)
    console.accounts.revoke_token(token_id, by=caller.principal.username)
    return _users_page(request, caller, console, message=f"Token {token_id} revoked.")
