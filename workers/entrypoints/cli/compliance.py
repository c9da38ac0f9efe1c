"""Commands for the compliance team and the DPO: legal holds, data-subject requests, the
audit trail and deletion certificates."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

import click

from ...adapters.signatures import check_certificate, check_document
from ...app.handlers.audit import TrailCheck, verify_trail
from ...domain import events
from ...domain.errors import NotFound
from ...domain.messages import CheckpointAudit
from ...domain.model import Hold
from ...domain.retention import rfc3339
from .common import EXIT_FAILED, container, echo_json, json_option, user_errors, when
from .integrators import cloudevent, publish_records


@click.group()
def hold() -> None:
    """Legal holds: place, release, list, show."""


@hold.command("place")
@click.argument("hold_id")
@click.option("--reason", required=True, help="Why the recordings are kept (kept sealed at rest).")
@click.option("--case-ref", help="The case or inquiry reference (kept sealed at rest).")
@click.option(
    "--recording-id", "recording_ids", multiple=True, help="Hold this recording (repeatable)."
)
@click.option(
    "--call-id", "call_ids", multiple=True, help="Hold the recording of this call (repeatable)."
)
@click.option(
    "--phone",
    "phones",
    multiple=True,
    help="Hold every recording of this person, by phone number in any notation.",
)
@click.option("--email", "emails", multiple=True, help="... by e-mail.")
@click.option("--customer-id", "customer_ids", multiple=True, help="... by customer id.")
@click.option("--order-id", "order_ids", multiple=True, help="... by order number.")
def hold_place(
    hold_id: str,
    reason: str,
    case_ref: str | None,
    recording_ids: tuple[str, ...],
    call_ids: tuple[str, ...],
    phones: tuple[str, ...],
    emails: tuple[str, ...],
    customer_ids: tuple[str, ...],
    order_ids: tuple[str, ...],
) -> None:
    """Publish a hold.placed command (exactly one kind of scope)."""
    subject = _subject(phones, emails, customer_ids, order_ids)
    scopes = [
        s
        for s in (
            {"recording_ids": list(recording_ids)} if recording_ids else None,
            {"call_ids": list(call_ids)} if call_ids else None,
            {"subject": subject} if subject else None,
        )
        if s
    ]
    if len(scopes) != 1:
        raise click.UsageError("give recording ids, call ids, or subject identifiers - one kind")
    data: dict[str, Any] = {"hold_id": hold_id, "reason": reason, "scope": scopes[0]}
    if case_ref:
        data["case_ref"] = case_ref
    with user_errors():
        publish_records("holds_commands", [(hold_id, cloudevent(events.HOLD_PLACED, data))])
    click.echo(f"hold {hold_id}: placed (command published)")


def _subject(*lists: tuple[str, ...]) -> dict[str, list[str]]:
    names = ("phone_numbers", "emails", "customer_ids", "order_ids")
    return {name: list(values) for name, values in zip(names, lists, strict=True) if values}


@hold.command("release")
@click.argument("hold_id")
def hold_release(hold_id: str) -> None:
    """Publish a hold.released command."""
    event = cloudevent(events.HOLD_RELEASED, {"hold_id": hold_id})
    with user_errors():
        publish_records("holds_commands", [(hold_id, event)])
    click.echo(f"hold {hold_id}: released (command published)")


def _hold_row(hold: Hold, recordings: list[str]) -> dict[str, Any]:
    return {
        "hold_id": hold.hold_id,
        "reason": hold.reason,
        "case_ref": hold.case_ref,
        "scope": hold.scope_kind.value,
        "placed_at": hold.placed_at,
        "released_at": hold.released_at,
        "recordings": recordings,
    }


@hold.command("list")
@json_option
def hold_list(as_json: bool) -> None:
    """Holds in force, with how many recordings each keeps."""
    with user_errors(), container() as built, built.database.unit_of_work() as uow:
        rows = [
            _hold_row(h, [r.recording_id for r in uow.recordings.in_scope(h, lock=False)])
            for h in uow.holds.active()
        ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['hold_id']:<24} {row['scope']:<14} placed {when(row['placed_at'])}  "
            f"{len(row['recordings'])} recording(s)  {row['case_ref'] or ''}"
        )
    click.echo(f"{len(rows)} hold(s) in force")


@hold.command("show")
@click.argument("hold_id")
@json_option
def hold_show(hold_id: str, as_json: bool) -> None:
    """One hold: its reason, case reference, scope, dates and the recordings it covers."""
    with user_errors(), container() as built, built.database.unit_of_work() as uow:
        found = uow.holds.get(hold_id)
        if found is None:
            raise NotFound(f"no hold {hold_id} has been placed")
        covered = (
            [r.recording_id for r in uow.recordings.in_scope(found, lock=False)]
            if found.active
            else []
        )
        row = _hold_row(found, covered)
    if as_json:
        echo_json(row)
        return
    for name in ("hold_id", "reason", "case_ref", "scope"):
        click.echo(f"{name:<12} {row[name] or '-'}")
    click.echo(f"{'placed_at':<12} {when(row['placed_at'])}")
    click.echo(f"{'released_at':<12} {when(row['released_at'])}")
    click.echo(f"{'recordings':<12} {len(covered)}")
    for recording_id in covered:
        click.echo(f"  {recording_id}")


@click.group()
def dsr() -> None:
    """Data-subject requests: submit, follow, list the open ones."""


@dsr.command("submit")
@click.argument(
    "request_type",
    type=click.Choice(
        ["access", "erasure", "rectification", "restriction", "objection", "portability"]
    ),
)
@click.option(
    "--request-id",
    default=lambda: f"cli-{uuid.uuid4()}",
    help="The request's id (default: a new one).",
)
@click.option(
    "--phone", "phones", multiple=True, help="The person's phone number, any notation (repeatable)."
)
@click.option("--email", "emails", multiple=True, help="The person's e-mail (repeatable).")
@click.option(
    "--customer-id", "customer_ids", multiple=True, help="The shop's customer id (repeatable)."
)
@click.option("--order-id", "order_ids", multiple=True, help="An order number (repeatable).")
@click.option("--tenant", help="Limit matching to this tenant.")
@click.option(
    "--language",
    type=click.Choice(["lt", "en"]),
    help="The language of the answer's letters (default: CALLVAULT_LANGUAGE).",
)
@click.option("--unverified", is_flag=True, help="Mark the identity as not verified.")
@click.option("--new-name", help="rectification: the corrected name.")
@click.option("--new-email", help="rectification: the corrected e-mail.")
@click.option("--lift", is_flag=True, help="restriction: lift instead of apply.")
def dsr_submit(
    request_type: str,
    request_id: str,
    phones: tuple[str, ...],
    emails: tuple[str, ...],
    customer_ids: tuple[str, ...],
    order_ids: tuple[str, ...],
    tenant: str | None,
    language: str | None,
    unverified: bool,
    new_name: str | None,
    new_email: str | None,
    lift: bool,
) -> None:
    """Publish a dsr.requested event as the DSR portal would; prints the request id."""
    data: dict[str, Any] = {
        "request_id": request_id,
        "type": request_type,
        "received_at": rfc3339(datetime.now(UTC)),
        "identity_verified": not unverified,
        "subject": {
            "phone_numbers": list(phones),
            "emails": list(emails),
            "customer_ids": list(customer_ids),
            "order_ids": list(order_ids),
        },
    }
    if tenant:
        data["tenant"] = tenant
    if language:
        data["language"] = language
    if request_type == "rectification":
        data["rectification"] = {
            k: v for k, v in {"name": new_name, "email": new_email}.items() if v is not None
        }
    if request_type == "restriction":
        data["restriction"] = "lift" if lift else "apply"
    with user_errors():
        publish_records(
            "dsr_requests",
            [(request_id, cloudevent(events.DSR_REQUESTED, data))],
        )
    click.echo(request_id)


@dsr.command("status")
@click.argument("request_id")
@json_option
def dsr_status(request_id: str, as_json: bool) -> None:
    """The request's state and its last answer."""
    with user_errors(), container() as built, built.database.unit_of_work() as uow:
        record = uow.requests.get(request_id)
        if record is None:
            raise NotFound(f"no request {request_id} has been received")
    row: dict[str, Any] = {
        "request_id": record.request_id,
        "type": record.dsr_type,
        "status": record.status,
        "received_at": record.received_at,
        "due_at": record.due_at,
        "completed_at": record.completed_at,
        "pending_recordings": list(record.pending),
        "result": record.result,
    }
    if as_json:
        echo_json(row)
        return
    for name in ("request_id", "type", "status"):
        click.echo(f"{name:<13} {row[name]}")
    for name in ("received_at", "due_at", "completed_at"):
        click.echo(f"{name:<13} {when(row[name])}")
    click.echo(f"{'recordings':<13} {len(record.result.get('recordings') or [])}")
    click.echo(f"{'pending':<13} {len(record.pending)} (held)")


@dsr.command("list")
@json_option
def dsr_list(as_json: bool) -> None:
    """Open requests (being carried out, or waiting for a hold) with their deadlines."""
    with user_errors(), container() as built, built.database.unit_of_work() as uow:
        records = uow.requests.open()
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "request_id": r.request_id,
            "type": r.dsr_type,
            "status": r.status,
            "due_at": r.due_at,
            "days_left": round((r.due_at - now).total_seconds() / 86400, 1) if r.due_at else None,
            "pending_recordings": len(r.pending),
        }
        for r in records
    ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['request_id']:<40} {row['type']:<13} {row['status']:<11} "
            f"due {when(row['due_at'])} ({row['days_left']} days)  "
            f"{row['pending_recordings']} held"
        )
    click.echo(f"{len(rows)} open request(s)")


@click.group()
def audit() -> None:
    """The tamper-evident audit trail."""


@audit.command("verify")
@click.option(
    "--keys",
    "key_set",
    type=click.File("r"),
    help="A key set from `callvault public-key` to check the checkpoint (default: this "
    "installation's).",
)
@click.option(
    "--full",
    is_flag=True,
    help="Read the whole chain from its first entry, not only what was "
    "appended since the last verification.",
)
@click.option("--from", "first", type=click.IntRange(min=1), help="Check entries from this one.")
@click.option("--to", "last", type=click.IntRange(min=1), help="Check entries up to this one.")
@json_option
def audit_verify(
    key_set: TextIO | None, full: bool, first: int | None, last: int | None, as_json: bool
) -> None:
    """Check the hash chain from the newest verified, signed checkpoint (each partition's
    verification is recorded, signed, so only what was appended since is read; --full reads
    all of it, --from/--to a range), and the chain against the newest signed checkpoint kept
    in the object store (an edited, deleted or truncated tail shows even when every hash was
    recomputed); exit 1 when either fails."""
    with user_errors(), container() as built:
        keys = json.load(key_set)["keys"] if key_set else [built.keys.public_key()]
        found = verify_trail(
            built.ctx,
            lambda doc, kind: check_document(doc, keys, kind),
            full=full,
            first=first if first is not None else (1 if last is not None else None),
            last=last,
        )
    against = found.checkpoint
    if as_json:
        echo_json(
            {
                "intact": found.broken_at is None,
                "entries": found.checked,
                "broken_at": found.broken_at,
                "since": found.since,
                "start": found.start,
                "marked": found.marked,
                "checkpoint": {"ok": against.ok, "seq": against.seq, "reason": against.reason},
            }
        )
    else:
        _echo_trail(found)
    if not found.ok:
        sys.exit(EXIT_FAILED)


def _echo_trail(found: TrailCheck) -> None:
    if found.broken_at is None:
        click.echo(f"audit chain intact: {found.checked} entries verified (from {found.start})")
    else:
        click.echo(
            f"audit chain BROKEN at entry {found.broken_at} ({found.checked} entries verified "
            f"before it, from {found.start})"
        )
    against = found.checkpoint
    click.echo(
        f"checkpoint: {against.reason}" if against.ok else f"checkpoint FAILED: {against.reason}"
    )
    if found.marked:
        click.echo(f"verified through the checkpoint: {', '.join(found.marked)}")


@audit.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the chain's head now and keep it outside the database (the worker does it every
    CALLVAULT_AUDIT_CHECKPOINT_INTERVAL)."""
    with user_errors(), container() as built:
        outcome = built.messagebus.handle(CheckpointAudit())
        built.relay.publish_pending()
    click.echo(outcome)


@click.command("public-key")
def public_key() -> None:
    """The key set that verifies deletion certificates (publish it for regulators)."""
    with user_errors(), container() as built:
        echo_json({"keys": built.keys.public_keys()})


@click.command("verify-certificate")
@click.argument("certificate", type=click.File("r"))
@click.option(
    "--keys",
    "key_set",
    type=click.File("r"),
    help="A key set from `callvault public-key` (default: this installation's).",
)
@json_option
def verify_certificate(certificate: TextIO, key_set: TextIO | None, as_json: bool) -> None:
    """Verify a deletion certificate (JSON, or a whole dsr.completed event) against a key set."""
    value = json.load(certificate)
    value = value.get("data", value)
    value = value.get("certificate", value)
    with user_errors():
        keys = json.load(key_set)["keys"] if key_set else _own_keys()
    valid, reason = check_certificate(value, keys)
    if as_json:
        echo_json({"valid": valid, "reason": reason, "request_id": value.get("request_id")})
    else:
        click.echo(
            f"certificate valid: {len(value.get('recordings', []))} recording(s)"
            if valid
            else f"certificate INVALID: {reason}"
        )
    if not valid:
        sys.exit(EXIT_FAILED)


def _own_keys() -> list[dict[str, str]]:
    with container() as built:
        keys: list[dict[str, str]] = built.keys.public_keys()
        return keys
