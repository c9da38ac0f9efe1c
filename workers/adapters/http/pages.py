"""Server-rendered pages for people: sign-in, search, listen (purpose first), and the DPO's
and the administrator's desks. Forms post back with a CSRF token; nothing needs a script."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import FileSystemLoader
from markupsafe import Markup

from ...app.console.desk import CHANNELS, VERIFICATIONS, Registration
from ...app.console.disclosures import DisclosureRequest
from ...app.console.errors import ConsoleError, Invalid, NotAllowed, NotFound, Unauthenticated
from ...app.console.model import (
    CASE_REF_REQUIRED,
    PURPOSES_OF,
    SEARCHERS,
    Principal,
    RecipientKind,
    Role,
)
from ...app.console.oversight import HoldOrder, Series
from ...app.console.recordings import SearchQuery
from ...app.console.service import Console
from ...domain.calendar import Localities
from ...domain.errors import TransientError
from ...domain.identifiers import Subject
from ...domain.model import DsrType
from ...i18n import LANGUAGES, N_, Localizer, environment, negotiate
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

TEMPLATES = Jinja2Templates(env=environment(FileSystemLoader(Path(__file__).parent / "templates")))
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


def localities_of(request: Request) -> Localities:
    localities: Localities = request.app.state.localities
    return localities


LANGUAGE_COOKIE = "callvault_language"  # a language code only: no personal data
LANGUAGE_COOKIE_TTL = 365 * 24 * 3600


def localizer(request: Request, principal: Principal | None) -> Localizer:
    """The reader's language - their choice, else their browser's, else their tenants'
    (``Localities.language_for``) - and their calendar: their tenants' time zone
    (``Localities.calendar_for``)."""
    localities = localities_of(request)
    tenants = principal.tenants if principal else frozenset()
    language = (
        (principal.language if principal else None)
        or chosen_before_sign_in(request)
        or negotiate(request.headers.get("accept-language"))
        or localities.language_for(tenants)
    )
    return Localizer(language, localities.calendar_for(tenants))


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
            "l10n": context.pop("l10n", None) or localizer(request, principal),
            "languages": LANGUAGES,
            "csrf": caller.session.csrf if caller and caller.session else "",
            "nav": _nav(principal),
            **context,
        },
        status_code=status_code,
    )


def _nav(principal: Principal | None) -> list[tuple[str, str]]:
    """Links and their labels (translated in the template)."""
    if principal is None:
        return []
    links: list[tuple[str, str]] = []
    if principal.role in SEARCHERS:
        links.append(("/search", N_("Search")))
    if principal.role is Role.DPO:
        links += [
            ("/dpo", N_("Overview")),
            ("/dpo/holds", N_("Holds")),
            ("/dpo/requests", N_("Requests")),
            ("/dpo/access-log", N_("Access log")),
            ("/dpo/disclosures", N_("Disclosures")),
            ("/dpo/report", N_("Monthly report")),
        ]
    if principal.role is Role.ADMIN:
        links.append(("/admin/users", N_("Users")))
    return links


def translated(l10n: Localizer, error: ConsoleError) -> str:
    """A refusal in the reader's language."""
    message = l10n.gettext(error.message)
    return message % error.values if error.values else message


def error_page(request: Request, error: ConsoleError, status: int | None = None) -> HTMLResponse:
    """A refusal told to a person, in their language (``status``: the error's own, unless
    given)."""
    try:
        caller: Caller | None = caller_of(request)
    except (ConsoleError, TransientError):  # the database may be what is away
        caller = None
    l10n = localizer(request, caller.principal if caller else None)
    return render(
        request,
        "error.html",
        caller,
        status or error.status,
        l10n=l10n,
        message=translated(l10n, error),
        status=status or error.status,
    )


def _lines(text: str | None) -> tuple[str, ...]:
    """Several values typed one per line or separated by commas."""
    return tuple(v.strip() for v in (text or "").replace(",", "\n").splitlines() if v.strip())


# --- sign-in ----------------------------------------------------------------------------------
def chosen_before_sign_in(request: Request) -> str | None:
    """The language picked on the sign-in page (``?lang=``, then remembered in a cookie)."""
    for picked in (request.query_params.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
        if picked in LANGUAGES:
            return picked
    return None


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    cookies = Response()
    token = sessions_of(request).pre_session(request, cookies)
    page = render(
        request, "login.html", None, oidc=request.app.state.oidc is not None, login_csrf=token
    )
    for value in cookies.headers.getlist("set-cookie"):
        page.headers.append("set-cookie", value)
    if (picked := chosen_before_sign_in(request)) is not None:
        page.set_cookie(
            LANGUAGE_COOKIE,
            picked,
            max_age=LANGUAGE_COOKIE_TTL,
            httponly=True,
            samesite="lax",
            secure=sessions_of(request).secure,
        )
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
            error=translated(localizer(request, None), error),
        )
    response = RedirectResponse("/", status_code=303)
    sessions.issue(response, principal)
    return response


@router.post("/logout")
def logout(request: Request, caller: FormCaller) -> Response:
    response = RedirectResponse("/login", status_code=303)
    sessions_of(request).end(response)
    return response


@router.post("/language")
def choose_language(
    request: Request, caller: FormCaller, form: Form, console: ConsoleDep
) -> Response:
    """The console's language for this user, kept with their account."""
    language = form.get("language", "")
    if language not in LANGUAGES:
        raise Invalid("no such language")
    console.accounts.choose_language(caller.principal, language)
    back = request.headers.get("referer", "")
    origin = f"{request.url.scheme}://{request.url.netloc}/"
    return RedirectResponse(back if back.startswith(origin) else "/", status_code=303)


def http_error_page(request: Request, status: int) -> HTMLResponse:
    """Routing's own refusals - an unknown page, a method a page does not take - told to a
    person in their language."""
    if status == 404:
        return error_page(request, NotFound("there is no such page"))
    return error_page(request, ConsoleError("this page cannot be used that way"), status)


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
        start=_day(request, caller, form.get("from"), end=False),
        end=_day(request, caller, form.get("to"), end=True),
        agent_id=(form.get("agent_id") or "").strip() or None,
    )
    found = console.recordings.search(caller.principal, query)
    items = [recording_item(r) for r in found]  # the customer only once a purpose is chosen
    shown = {k: v for k, v in form.items() if k != CSRF_FIELD}
    return render(request, "search.html", caller, items=items, form=shown)


def _day(request: Request, caller: Caller, text: str | None, *, end: bool) -> datetime | None:
    """A day of the search form, in the searcher's local time: from its first instant, or
    to its last."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise Invalid("dates are YYYY-MM-DD") from None
    start, following = localizer(request, caller.principal).calendar.day(day)
    return following - timedelta(microseconds=1) if end else start


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
    query["rendition"] = "browser"
    return render(
        request,
        "player.html",
        caller,
        item=recording_item(recording),
        customer=customers.get(recording.recording_id),
        purpose=chosen.value,
        case_ref=case_ref,
        src=f"/api/v1/recordings/{recording_id}/audio?{urlencode(query)}",
        channels=recording.channels,
        # the caller is on the left: the customer on an inbound call, the agent on an outbound
        customer_channel=0 if recording.direction == "inbound" else 1,
    )


# --- the DPO (each use case refuses other roles) ------------------------------------------------
@router.get("/dpo")
def overview(request: Request, caller: PageCaller, console: ConsoleDep) -> HTMLResponse:
    data = console.oversight.overview(caller.principal)
    l10n = localizer(request, caller.principal)
    answered = data.requests_on_time + data.requests_late
    charts = [
        _chart(l10n, N_("Recordings stored and purged per day"), data.per_day),
        _chart(l10n, N_("Worst purge lag per day (retention)"), data.lag_per_day, " s"),
    ]
    deadlines = gauge(
        l10n.gettext("Requests answered within the deadline"),
        data.requests_on_time,
        answered,
        l10n.gettext("none yet"),
    )
    return render(
        request,
        "overview.html",
        caller,
        l10n=l10n,
        data=data,
        charts=charts,
        deadlines=deadlines,
    )


def _chart(l10n: Localizer, title: str, series: Series, unit: str = "") -> Markup:
    rows = {l10n.gettext(name): values for name, values in series.rows.items()}
    return bar_chart(l10n, l10n.gettext(title), series.days, rows, unit)


def say(request: Request, caller: Caller, message: str, **values: object) -> str:
    """A text (marked with ``N_``) in the caller's language, its placeholders filled."""
    return localizer(request, caller.principal).gettext(message) % values


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
        notice=say(request, caller, N_("Hold %(hold)s placed."), hold=hold_id),
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
        notice=say(request, caller, N_("Hold %(hold)s released."), hold=hold_id),
    )


@router.get("/dpo/requests")
def requests_page(request: Request, caller: PageCaller, console: ConsoleDep) -> HTMLResponse:
    return _requests_page(request, caller, console, notice=None)


@router.post("/dpo/requests")
def register_request(
    request: Request, caller: FormCaller, form: Form, console: ConsoleDep
) -> HTMLResponse:
    """A request that came by e-mail, letter or phone, registered by the DPO."""
    try:
        received_on = date.fromisoformat(form.get("received_on", ""))
    except ValueError:
        raise Invalid("dates are YYYY-MM-DD") from None
    registration = Registration(
        request_id=form.get("request_id", ""),
        dsr_type=form.get("type", ""),
        subject=Subject(
            phone_numbers=_lines(form.get("phone")),
            emails=_lines(form.get("email")),
            customer_ids=_lines(form.get("customer_id")),
            order_ids=_lines(form.get("order_id")),
        ),
        received_on=received_on,
        channel=form.get("channel", ""),
        verification=form.get("verification", ""),
        verified_by=form.get("verified_by", "").strip(),
        language=form.get("language", ""),
        tenant=(form.get("tenant") or "").strip() or None,
        rectification={
            k: v.strip() for k in ("name", "email") if (v := form.get(f"new_{k}") or "").strip()
        },
        lift_restriction=form.get("restriction") == "lift",
    )
    due = console.desk.register(caller.principal, registration)
    l10n = localizer(request, caller.principal)
    notice = l10n.gettext(
        "Request %(id)s registered: callvault carries it out as it would a portal's, and "
        "lists it here within seconds. Deadline: %(due)s."
    ) % {"id": registration.request_id, "due": l10n.day(due)}
    return _requests_page(request, caller, console, notice=notice, l10n=l10n)


def _requests_page(
    request: Request, caller: Caller, console: Console, **extra: Any
) -> HTMLResponse:
    open_requests = console.oversight.requests(caller.principal, open_only=True)
    recent = console.oversight.requests(caller.principal, open_only=False)
    return render(
        request,
        "requests.html",
        caller,
        open_requests=[request_item(r) for r in open_requests],
        recent=[request_item(r) for r in recent if r.completed_at][:100],
        new_request_id=f"dpo-{uuid.uuid4().hex}",
        today=console.desk.today(caller.principal).isoformat(),
        types=[t.value for t in DsrType],
        channels=CHANNELS,
        verifications=VERIFICATIONS,
        default_language=localities_of(request).language_for(caller.principal.tenants),
        **extra,
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
    l10n = localizer(request, caller.principal)
    year, number = (int(part) for part in report.month.split("-"))
    settings = request.app.state.settings
    return render(
        request,
        "report.html",
        caller,
        l10n=l10n,
        report=report_dict(report),
        month_name=l10n.month(year, number),
        notice=settings,
        retention=l10n.period(settings.retention),  # "1 metai", not P1Y
        retention_tenants=[f"{t}: {l10n.period(p)}" for t, p in settings.policy.per_tenant],
    )


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
    message = say(request, caller, N_("User %(user)s added."), user=username)
    return _users_page(request, caller, console, message=message)


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
    done = N_("User %(user)s disabled.") if action == "disable" else N_("User %(user)s enabled.")
    return _users_page(request, caller, console, message=say(request, caller, done, user=username))


@router.post("/admin/tokens/{token_id}/revoke")
def revoke_token(
    token_id: str, request: Request, caller: FormCaller, console: ConsoleDep
) -> HTMLResponse:
    _admin(caller)
    console.accounts.revoke_token(token_id, by=caller.principal.username)
    message = say(request, caller, N_("Token %(token)s revoked."), token=token_id)
    return _users_page(request, caller, console, message=message)
