"""The JSON API of the contract (``/api/v1``), plus the DPO's and the admin's additions
(docs/console.md). Personal data travel in bodies only, never in a URL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...app.console.disclosures import DisclosureRequest
from ...app.console.errors import Invalid, NotAllowed, NotFound
from ...app.console.model import PURPOSES_OF, AccessKind, ApiToken, Principal, Role
from ...app.console.oversight import HoldOrder
from ...app.console.recordings import Audio, SearchQuery
from ...app.console.service import Console
from ...domain.model import Recording, parse_subject
from ...domain.retention import rfc3339
from .security import (
    Caller,
    Sessions,
    allow,
    api_caller,
    caller_of,
    check_same_origin,
    client_address,
    roles_extra,
)
from .views import access_item, disclosure_item, hold_item, overview_dict, report_dict, request_item

SEARCHERS = (Role.QA, Role.COMPLAINTS, Role.DPO)
DPO = (Role.DPO,)
ADMIN = (Role.ADMIN,)

router = APIRouter(prefix="/api/v1")


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(console_of)]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- session ----------------------------------------------------------------------------------
class Credentials(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class Me(BaseModel):
    username: str
    role: str
    purposes: list[str]


def _me(principal: Principal) -> Me:
    return Me(
        username=principal.username,
        role=principal.role.value,
        purposes=sorted(p.value for p in PURPOSES_OF[principal.role]),
    )


@router.post("/session", response_model=Me, tags=["session"])
def sign_in(body: Credentials, request: Request, response: Response, console: ConsoleDep) -> Me:
    """Sign in with a name and password; sets the session cookie for the browser."""
    check_same_origin(request)
    principal = console.accounts.sign_in(body.username, body.password, client_address(request))
    sessions: Sessions = request.app.state.sessions
    sessions.issue(response, principal)
    return _me(principal)


@router.get("/session", response_model=Me, tags=["session"])
def whoami(caller: Annotated[Caller, Depends(caller_of)]) -> Me:
    return _me(caller.principal)


@router.delete("/session", status_code=204, tags=["session"])
def sign_out(request: Request, caller: Annotated[Caller, Depends(caller_of)]) -> Response:
    response = Response(status_code=204)
    sessions: Sessions = request.app.state.sessions
    sessions.end(response)
    return response


# --- recordings -------------------------------------------------------------------------------
class SearchBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    phone_numbers: list[str] = Field(default_factory=list, max_length=50)
    emails: list[str] = Field(default_factory=list, max_length=50)
    customer_ids: list[str] = Field(default_factory=list, max_length=50)
    order_ids: list[str] = Field(default_factory=list, max_length=50)
    call_ids: list[str] = Field(default_factory=list, max_length=200)
    from_: datetime | None = Field(default=None, alias="from")
    to: datetime | None = None
    agent_id: str | None = Field(default=None, max_length=128)
    limit: int = Field(default=200, ge=1, le=500)
    include_customer: bool = Field(
        default=False,
        description="Add the customer's name and e-mail (roles complaints and dpo only), for "
        "`purpose` (and its `case_ref`); each shown on record; never of a restricted recording "
        "but for legal_claim.",
    )
    purpose: str | None = Field(default=None, description="why the customer is looked at")
    case_ref: str | None = Field(default=None, max_length=64)

    @field_validator("to", mode="before")
    @classmethod
    def _whole_last_day(cls, value: Any) -> Any:
        """A date alone as ``to`` means up to the end of that day (UTC)."""
        if isinstance(value, str) and len(value) == 10:
            return f"{value}T23:59:59.999999Z"
        return value

    def query(self) -> SearchQuery:
        subject = parse_subject(self.model_dump())
        return SearchQuery(
            phone_numbers=subject.phone_numbers,
            emails=subject.emails,
            customer_ids=subject.customer_ids,
            order_ids=subject.order_ids,
            call_ids=tuple(self.call_ids),
            start=_utc(self.from_),
            end=_utc(self.to),
            agent_id=self.agent_id,
            limit=self.limit,
        )


def recording_item(recording: Recording) -> dict[str, Any]:
    return {
        "recording_id": recording.recording_id,
        "call_id": recording.call_id,
        "tenant": recording.tenant,
        "direction": recording.direction,
        "agent_id": recording.agent_id,
        "started_at": rfc3339(recording.started_at),
        "ended_at": rfc3339(recording.collected_at),
        "retention_due_at": rfc3339(recording.retention_due_at),
        "restricted": recording.restricted,
        "held": recording.held,
    }


@router.post("/recordings/search", tags=["recordings"], openapi_extra=roles_extra(*SEARCHERS))
def search(
    body: SearchBody,
    console: ConsoleDep,
    principal: Annotated[Principal, Depends(allow(*SEARCHERS))],
) -> dict[str, Any]:
    """Recordings of a person (phone numbers in any notation, e-mails, customer and order
    ids) and/or of calls, within dates and for an agent; newest first."""
    if body.include_customer and body.purpose is None:
        raise Invalid("include_customer needs the purpose it serves")
    found = console.recordings.search(principal, body.query())
    customers = (
        console.recordings.customers(principal, found, body.purpose, body.case_ref)
        if body.include_customer
        else {}
    )
    items = [with_customer(recording_item(r), customers) for r in found]
    return {"items": items}


def with_customer(item: dict[str, Any], customers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    customer = customers.get(item["recording_id"])
    return item | {"customer": customer} if customer is not None else item


@router.get(
    "/recordings/{recording_id}", tags=["recordings"], openapi_extra=roles_extra(*SEARCHERS)
)
def recording_detail(
    recording_id: str,
    console: ConsoleDep,
    principal: Annotated[Principal, Depends(allow(*SEARCHERS))],
    purpose: Annotated[
        str | None, Query(description="given: the customer's name and e-mail too, on record")
    ] = None,
    case_ref: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """A recording's facts; with a ``purpose`` (complaints and dpo), its customer as well."""
    recording = console.recordings.recording(principal, recording_id)
    item = recording_item(recording)
    item.update(
        content_type=recording.content_type,
        size_bytes=recording.size_bytes,
        sha256=recording.sha256,
    )
    customers = console.recordings.customers(principal, [recording], purpose, case_ref)
    return with_customer(item, customers)


def audio_response(audio: Audio, *, download: bool) -> StreamingResponse:
    headers = {
        "accept-ranges": "bytes",
        "content-length": str(audio.length),
        "cache-control": "no-store",
        "content-disposition": "attachment" if download else "inline",
    }
    if audio.status == 206:
        headers["content-range"] = f"bytes {audio.first}-{audio.last}/{audio.size}"
    return StreamingResponse(
        audio.body, status_code=audio.status, media_type=audio.content_type, headers=headers
    )


@router.get(
    "/recordings/{recording_id}/audio",
    tags=["recordings"],
    openapi_extra=roles_extra(*SEARCHERS),
    response_class=StreamingResponse,
    responses={206: {"description": "the byte range asked for"}},
)
def audio(
    recording_id: str,
    request: Request,
    console: ConsoleDep,
    principal: Annotated[Principal, Depends(allow(*SEARCHERS))],
    purpose: Annotated[str, Query(description="quality|training|complaint|legal_claim|incident")],
    case_ref: Annotated[str | None, Query(max_length=64)] = None,
    rendition: Annotated[
        Literal["original", "browser"],
        Query(
            description="original: the bytes as stored; browser: what every browser plays "
            "(the original where it can, else 16-bit PCM WAV decoded as it streams)"
        ),
    ] = "original",
) -> StreamingResponse:
    """The audio with Range support, byte-identical unless a browser rendition is asked for;
    each access goes on record."""
    kind = AccessKind.PLAYBACK if principal_via_browser(request) else AccessKind.DOWNLOAD
    found = console.recordings.audio(
        principal,
        recording_id,
        purpose,
        case_ref,
        request.headers.get("range"),
        kind,
        for_browsers=rendition == "browser",
    )
    return audio_response(found, download=kind is AccessKind.DOWNLOAD)


def principal_via_browser(request: Request) -> bool:
    return "authorization" not in request.headers


# --- the DPO ----------------------------------------------------------------------------------
@router.get("/access-log", tags=["dpo"], openapi_extra=roles_extra(*DPO))
def access_log(
    console: ConsoleDep,
    principal: Annotated[Principal, Depends(allow(*DPO))],
    recording_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    entries = console.oversight.access_log(principal, recording_id, limit)
    return {"items": [access_item(a) for a in entries]}


class DisclosureBody(BaseModel):
    recipient: str = Field(max_length=200)
    recipient_kind: Literal["law_enforcement", "telecom_provider", "other"]
    legal_basis: str = Field(max_length=500)
    reference: str = Field(max_length=200)
    recording_ids: list[str] = Field(min_length=1, max_length=500)


@router.post("/disclosures", tags=["dpo"], openapi_extra=roles_extra(*DPO))
def disclose(
    body: DisclosureBody,
    console: ConsoleDep,
    principal: Annotated[Principal, Depends(allow(*DPO))],
) -> dict[str, Any]:
    """Register a disclosure and package the recordings for the recipient (expiring ZIP)."""
    disclosure, export = console.disclosures.disclose(
        principal,
        DisclosureRequest(
            body.recipient,
            body.recipient_kind,
            body.legal_basis,
            body.reference,
            tuple(body.recording_ids),
        ),
    )
    return {"disclosure_id": disclosure.disclosure_id, "export": export}


@router.get("/disclosures", tags=["dpo"], openapi_extra=roles_extra(*DPO))
def disclosures(
    console: ConsoleDep, principal: Annotated[Principal, Depends(allow(*DPO))]
) -> dict[str, Any]:
    return {"items": [disclosure_item(d) for d in console.disclosures.register(principal)]}


@router.get("/holds", tags=["dpo"], openapi_extra=roles_extra(*DPO))
def holds(
    console: ConsoleDep, principal: Annotated[Principal, Depends(allow(*DPO))]
) -> dict[str, Any]:
    """Legal holds in force, with the recordings each covers."""
    return {"items": [hold_item(h) for h in console.oversight.holds(principal)]}


class HoldBody(BaseModel):
    hold_id: str | None = Field(default=None, max_length=64)
    reason: str = Field(max_length=500)
    case_ref: str | None = Field(default=None, max_length=64)
    scope: dict[str, Any] = Field(
        description='{"recording_ids": [..]}, {"call_ids": [..]} or {"subject": SUBJECT}'
    )

    def order(self) -> HoldOrder:
        scope = self.scope
        return HoldOrder(
            reason=self.reason,
            case_ref=self.case_ref,
            hold_id=self.hold_id,
            recording_ids=tuple(str(r) for r in scope.get("recording_ids") or ()),
            call_ids=tuple(str(c) for c in scope.get("call_ids") or ()),
            subject=parse_subject(scope.get("subject") or {}),
        )


@router.post("/holds", status_code=201, tags=["dpo"], openapi_extra=roles_extra(*DPO))
def place_hold(
    body: HoldBody, console: ConsoleDep, principal: Annotated[Principal, Depends(allow(*DPO))]
) -> dict[str, Any]:
    """Place a legal hold at once (the holds worker's own command, handled in the console's
    transaction and audited with the DPO's name); 409 when the id was used before."""
    hold_id = console.oversight.place_hold(principal, body.order())
    return {"hold_id": hold_id, "status": "placed"}


@router.post("/holds/{hold_id}/release", tags=["dpo"], openapi_extra=roles_extra(*DPO))
def release_hold(
    hold_id: str, console: ConsoleDep, principal: Annotated[Principal, Depends(allow(*DPO))]
) -> dict[str, Any]:
    """Release a hold at once; what no other hold keeps becomes purgeable again."""
    console.oversight.release_hold(principal, hold_id)
    return {"hold_id": hold_id, "status": "released"}


@router.get("/requests", tags=["dpo"], openapi_extra=roles_extra(*DPO))
def requests(
    console: ConsoleDep,
    principal: Annotated[Principal, Depends(allow(*DPO))],
    open_only: Annotated[bool, Query(alias="open")] = True,
) -> dict[str, Any]:
    """Data-subject requests (open ones by default), with deadlines and answers."""
    found = console.oversight.requests(principal, open_only=open_only)
    return {"items": [request_item(r) for r in found]}


@router.get("/overview", tags=["dpo"], openapi_extra=roles_extra(*DPO))
def overview(
    console: ConsoleDep, principal: Annotated[Principal, Depends(allow(*DPO))]
) -> dict[str, Any]:
    return overview_dict(console.oversight.overview(principal))


@router.get("/reports/monthly", tags=["dpo"], openapi_extra=roles_extra(*DPO))
def monthly_report(
    console: ConsoleDep,
    principal: Annotated[Principal, Depends(allow(*DPO))],
    month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
) -> dict[str, Any]:
    return report_dict(console.oversight.monthly_report(principal, month))


# --- the administrator ------------------------------------------------------------------------
class NewUser(BaseModel):
    username: str = Field(max_length=64)
    role: Literal["qa", "complaints", "dpo", "admin"]
    password: str | None = Field(default=None, max_length=1024)
    tenants: list[str] = Field(
        min_length=1, max_length=100, description="whose recordings they see; ['*'] for all"
    )


class Tenants(BaseModel):
    tenants: list[str] = Field(min_length=1, max_length=100)


def _user_item(console: Console, username: str) -> dict[str, Any]:
    user = console.accounts.user(username)
    if user is None:
        raise NotFound("no user %(user)s", user=username)
    return {
        "username": user.username,
        "role": user.role.value,
        "disabled": user.disabled,
        "sign_in": "password" if user.password_hash else "oidc",
        "tenants": sorted(user.tenants),
        "created_at": rfc3339(user.created_at) if user.created_at else None,
    }


@router.get("/users", tags=["admin"], openapi_extra=roles_extra(*ADMIN))
def users(
    console: ConsoleDep, principal: Annotated[Principal, Depends(allow(*ADMIN))]
) -> dict[str, Any]:
    return {"items": [_user_item(console, u.username) for u in console.accounts.users()]}


@router.post("/users", status_code=201, tags=["admin"], openapi_extra=roles_extra(*ADMIN))
def add_user(
    body: NewUser, console: ConsoleDep, principal: Annotated[Principal, Depends(allow(*ADMIN))]
) -> dict[str, Any]:
    """A user scoped to tenants (at least one; ``*`` for every tenant); audited."""
    console.accounts.add_user(
        body.username, Role(body.role), body.password, body.tenants, by=principal.username
    )
    return _user_item(console, body.username)


@router.put("/users/{username}/tenants", tags=["admin"], openapi_extra=roles_extra(*ADMIN))
def set_tenants(
    username: str,
    body: Tenants,
    console: ConsoleDep,
    principal: Annotated[Principal, Depends(allow(*ADMIN))],
) -> dict[str, Any]:
    console.accounts.set_tenants(username, body.tenants, by=principal.username)
    return _user_item(console, username)


@router.post("/users/{username}/disable", tags=["admin"], openapi_extra=roles_extra(*ADMIN))
def disable_user(
    username: str, console: ConsoleDep, principal: Annotated[Principal, Depends(allow(*ADMIN))]
) -> dict[str, Any]:
    """Disable the account and revoke its API tokens; its sessions end at the next request."""
    console.accounts.set_disabled(username, True, by=principal.username)
    return _user_item(console, username)


@router.post("/users/{username}/enable", tags=["admin"], openapi_extra=roles_extra(*ADMIN))
def enable_user(
    username: str, console: ConsoleDep, principal: Annotated[Principal, Depends(allow(*ADMIN))]
) -> dict[str, Any]:
    console.accounts.set_disabled(username, False, by=principal.username)
    return _user_item(console, username)


# --- one's own API tokens ---------------------------------------------------------------------
EVERYONE = (*SEARCHERS, *ADMIN)


@router.post("/tokens", status_code=201, tags=["tokens"], openapi_extra=roles_extra(*EVERYONE))
def create_token(
    console: ConsoleDep, caller: Annotated[Caller, Depends(api_caller)]
) -> dict[str, Any]:
    """An API token for the person signed in - only for oneself, and only from a browser
    session (a token cannot mint tokens); shown once, only its hash is kept; audited."""
    if caller.session is None:
        raise NotAllowed("an API token is made from a signed-in session, not with a token")
    me = caller.principal.username
    token_id, token = console.accounts.create_token(me, by=me)
    return {"token_id": token_id, "token": token}


@router.get("/tokens", tags=["tokens"], openapi_extra=roles_extra(*EVERYONE))
def tokens(console: ConsoleDep, caller: Annotated[Caller, Depends(api_caller)]) -> dict[str, Any]:
    """One's own tokens (ids and dates; never a secret)."""
    mine = console.accounts.tokens_of(caller.principal.username)
    return {"items": [token_item(t) for t in mine]}


@router.delete(
    "/tokens/{token_id}", status_code=204, tags=["tokens"], openapi_extra=roles_extra(*EVERYONE)
)
def revoke_token(
    token_id: str, console: ConsoleDep, caller: Annotated[Caller, Depends(api_caller)]
) -> Response:
    """Revoke one's own token; an administrator may revoke anyone's."""
    me = caller.principal
    owner = None if me.role is Role.ADMIN else me.username
    console.accounts.revoke_token(token_id, by=me.username, owner=owner)
    return Response(status_code=204)


def token_item(token: ApiToken) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "created_at": rfc3339(token.created_at),
        "revoked_at": rfc3339(token.revoked_at) if token.revoked_at else None,
    }
