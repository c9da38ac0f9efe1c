"""The ``callvault`` command."""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from . import console_cli
from .domain import events
from .domain.errors import ConfigError
from .domain.retention import rfc3339
from .settings import Settings, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group()
def cli() -> None:
    """callvault: phone-call recordings kept lawful under the GDPR."""


@cli.command()
@click.option(
    "--only",
    default="",
    help="Comma-separated subset of roles: "
    "ingest,retention,holds,dsr,scheduler,outbox (default: all).",
)
def worker(only: str) -> None:
    """Run the workers (every role in one process unless --only says otherwise)."""
    from .worker import run_worker

    run_worker(_settings(), tuple(r.strip() for r in only.split(",") if r.strip()))


@cli.command()
def migrate() -> None:
    """Bring the database schema, buckets and topics up to date (idempotent)."""
    from .bootstrap import object_store
    from .logs import configure
    from .migrate import migrate as run

    settings = _settings()
    configure(settings.log_format, settings.log_level)
    report = run(settings, object_store(settings))
    _echo_json(report.__dict__)


def _cloudevent(event_type: str, data: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "time": rfc3339(datetime.now(UTC)),
        "datacontenttype": "application/json",
        "data": data,
    }


def _publish(topic_name: str, records: list[tuple[str | None, bytes]]) -> None:
    from .adapters.kafka import KafkaBus

    settings = _settings()
    bus = KafkaBus(settings.kafka_bootstrap, f"{settings.app_id}-cli")
    try:
        topic = settings.topics()[topic_name]
        bus.publish([(topic, key, value) for key, value in records])
    finally:
        bus.close()


def upload_landing(path: Path) -> dict[str, Any]:
    """Put a local audio file in the landing bucket; returns the event's ``recording`` block."""
    from .bootstrap import object_store

    settings = _settings()
    data = path.read_bytes()
    key = f"landing/{uuid.uuid4()}{path.suffix.lower()}"
    object_store(settings).put_stream(
        settings.landing_bucket, key, [data], content_type="application/octet-stream"
    )
    return {
        "uri": f"s3://{settings.landing_bucket}/{key}",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@cli.command()
@click.option(
    "--file",
    "jsonl",
    type=click.File("r"),
    help="JSON lines: CloudEvents, or call data objects to wrap in one ('-' for standard input).",
)
@click.option("--call-id")
@click.option("--direction", type=click.Choice(["inbound", "outbound"]), default="inbound")
@click.option("--caller", default="anonymous")
@click.option("--callee", default="+370 521 44500")
@click.option("--tenant", default="default")
@click.option(
    "--audio",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A local audio file: uploaded to the landing bucket and referenced.",
)
@click.option("--uri", help="Recording URI, when not uploading --audio.")
@click.option("--notice/--no-notice", default=True, help="Did the caller hear the notice?")
@click.option("--customer-email")
@click.option("--customer-id")
@click.option("--order-id", "order_ids", multiple=True)
def publish(
    jsonl: Any,
    call_id: str | None,
    direction: str,
    caller: str,
    callee: str,
    tenant: str,
    audio: Path | None,
    uri: str | None,
    notice: bool,
    customer_email: str | None,
    customer_id: str | None,
    order_ids: tuple[str, ...],
) -> None:
    """Publish call-ended events (for integrators testing a telephony adapter, and demos)."""
    records: list[tuple[str | None, bytes]] = []
    if jsonl is not None:
        for line in jsonl:
            if line.strip():
                value = json.loads(line)
                if "specversion" not in value:
                    value = _cloudevent(events.CALL_ENDED, value, "urn:callvault:cli")
                key = value.get("data", {}).get("call_id")
                records.append((key, json.dumps(value).encode()))
    else:
        if audio is None and uri is None:
            raise click.UsageError("give --audio FILE or --uri URI (or --file)")
        recording = upload_landing(audio) if audio else {"uri": uri}
        now = rfc3339(datetime.now(UTC))
        data: dict[str, Any] = {
            "call_id": call_id or f"cli-{uuid.uuid4()}",
            "tenant": tenant,
            "direction": direction,
            "caller": caller,
            "callee": callee,
            "started_at": now,
            "ended_at": now,
            "notice_played": notice,
            "recording": recording,
        }
        if customer_email or customer_id or order_ids:
            data["customer"] = {
                k: v
                for k, v in {
                    "email": customer_email,
                    "customer_id": customer_id,
                    "order_ids": list(order_ids),
                }.items()
                if v
            }
        records.append(
            (
                data["call_id"],
                json.dumps(_cloudevent(events.CALL_ENDED, data, "urn:callvault:cli")).encode(),
            )
        )
    _publish("calls_ended", records)
    click.echo(f"published {len(records)} event(s)")


@cli.group()
def hold() -> None:
    """Legal holds: place, release, list."""


@hold.command("place")
@click.argument("hold_id")
@click.option("--reason", required=True)
@click.option("--case-ref")
@click.option("--recording-id", "recording_ids", multiple=True)
@click.option("--call-id", "call_ids", multiple=True)
@click.option("--phone", "phones", multiple=True)
@click.option("--email", "emails", multiple=True)
@click.option("--customer-id", "customer_ids", multiple=True)
@click.option("--order-id", "order_ids", multiple=True)
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
    subject = {
        k: list(v)
        for k, v in {
            "phone_numbers": phones,
            "emails": emails,
            "customer_ids": customer_ids,
            "order_ids": order_ids,
        }.items()
        if v
    }
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
    event = _cloudevent(events.HOLD_PLACED, data, "urn:callvault:cli")
    _publish("holds_commands", [(hold_id, json.dumps(event).encode())])
    click.echo(f"hold {hold_id} placed (command published)")


@hold.command("release")
@click.argument("hold_id")
def hold_release(hold_id: str) -> None:
    """Publish a hold.released command."""
    event = _cloudevent(events.HOLD_RELEASED, {"hold_id": hold_id}, "urn:callvault:cli")
    _publish("holds_commands", [(hold_id, json.dumps(event).encode())])
    click.echo(f"hold {hold_id} released (command published)")


@hold.command("list")
def hold_list() -> None:
    """Holds in force, with how many recordings each keeps."""
    from .adapters.postgres import PostgresStore

    store = PostgresStore(_settings().database_url.get_secret_value())
    store.open()
    with store.transaction() as tx:
        rows = [
            {
                "hold_id": h.hold_id,
                "reason": h.reason,
                "case_ref": h.case_ref,
                "scope": h.scope_kind.value,
                "placed_at": h.placed_at,
                "recordings": len(tx.recordings_in_scope(h)),
            }
            for h in tx.active_holds()
        ]
    store.close()
    _echo_json(rows)


@cli.group()
def audit() -> None:
    """The tamper-evident audit trail."""


def _audit_entries(store: Any) -> Iterator[Any]:
    after = 0
    while True:
        with store.transaction() as tx:
            page = tx.audit_entries(after, 5000)
        if not page:
            return
        yield from page
        after = page[-1].seq


@audit.command("verify")
def audit_verify() -> None:
    """Check every entry's hash chain; exit 1 at the first broken link."""
    from .adapters.postgres import PostgresStore
    from .domain.audit import verify_chain

    store = PostgresStore(_settings().database_url.get_secret_value())
    store.open()
    checked, broken = verify_chain(_audit_entries(store))
    store.close()
    if broken is not None:
        click.echo(f"audit chain BROKEN at entry {broken} ({checked} entries verified before it)")
        sys.exit(1)
    click.echo(f"audit chain intact: {checked} entries verified")


@cli.group()
def dsr() -> None:
    """Data-subject requests: submit and follow them."""


@dsr.command("submit")
@click.argument(
    "request_type",
    type=click.Choice(
        ["access", "erasure", "rectification", "restriction", "objection", "portability"]
    ),
)
@click.option("--request-id", default=lambda: f"cli-{uuid.uuid4()}")
@click.option("--phone", "phones", multiple=True)
@click.option("--email", "emails", multiple=True)
@click.option("--customer-id", "customer_ids", multiple=True)
@click.option("--order-id", "order_ids", multiple=True)
@click.option("--unverified", is_flag=True, help="Mark the identity as not verified.")
@click.option("--new-name")
@click.option("--new-email")
@click.option("--lift", is_flag=True, help="restriction: lift instead of apply")
def dsr_submit(
    request_type: str,
    request_id: str,
    phones: tuple[str, ...],
    emails: tuple[str, ...],
    customer_ids: tuple[str, ...],
    order_ids: tuple[str, ...],
    unverified: bool,
    new_name: str | None,
    new_email: str | None,
    lift: bool,
) -> None:
    """Publish a dsr.requested event as the DSR portal would."""
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
    if request_type == "rectification":
        data["rectification"] = {
            k: v for k, v in {"name": new_name, "email": new_email}.items() if v is not None
        }
    if request_type == "restriction":
        data["restriction"] = "lift" if lift else "apply"
    event = _cloudevent(events.DSR_REQUESTED, data, "urn:callvault:cli")
    _publish("dsr_requests", [(request_id, json.dumps(event).encode())])
    click.echo(request_id)


@dsr.command("status")
@click.argument("request_id")
def dsr_status(request_id: str) -> None:
    """The request's state and its last answer."""
    from .adapters.postgres import PostgresStore

    store = PostgresStore(_settings().database_url.get_secret_value())
    store.open()
    with store.transaction() as tx:
        record = tx.dsr_request(request_id)
    store.close()
    if record is None:
        raise click.ClickException(f"no request {request_id} has been received")
    _echo_json(
        {
            "request_id": record.request_id,
            "type": record.dsr_type,
            "status": record.status,
            "due_at": record.due_at,
            "pending_recordings": record.pending_recording_ids,
            "result": record.result,
        }
    )


@cli.command("public-key")
def public_key() -> None:
    """The Ed25519 public key that verifies deletion certificates."""
    from .adapters.crypto import Signer

    settings = _settings()
    signer = Signer(settings.key("signing_key"), settings.signing_key_id)
    _echo_json(
        {"key_id": signer.key_id, "algorithm": "Ed25519", "public_key": signer.public_key_b64}
    )


@cli.command("verify-certificate")
@click.argument("certificate", type=click.File("r"))
@click.option("--public-key", "public_key_b64", help="base64 Ed25519 key (default: our own)")
def verify_certificate(certificate: Any, public_key_b64: str | None) -> None:
    """Verify a deletion certificate (JSON) from a dsr.completed event."""
    from .adapters.crypto import Signer, verify_signature

    value = json.load(certificate)
    value = value.get("data", value).get("certificate", value)
    if public_key_b64 is None:
        settings = _settings()
        public_key_b64 = Signer(settings.key("signing_key"), settings.signing_key_id).public_key_b64
    body = {k: v for k, v in value.items() if k != "signature"}
    if not verify_signature(public_key_b64, body, value["signature"]):
        click.echo("certificate signature INVALID")
        sys.exit(1)
    click.echo(f"certificate valid: {len(body['recordings'])} recording(s)")


@cli.command()
@click.option("--count", default=40, show_default=True, help="Calls to publish (0 = forever).")
@click.option("--rate", default=2.0, show_default=True, help="Calls per second.")
@click.option("--seed", type=int, default=None)
def demo(count: int, rate: float, seed: int | None) -> None:
    """Publish demo telephony traffic: real speech audio, every phone notation, odd bad events."""
    from .demo import run

    sent = run(count, rate, seed)
    click.echo(f"published {sent} demo call(s)")


def _container() -> Any:
    from .bootstrap import bootstrap

    return bootstrap(_settings())


@cli.command()
@click.option("--repair", is_flag=True, help="Delete orphan objects; re-announce overdue ones.")
@click.option("--json", "as_json", is_flag=True)
def reconcile(repair: bool, as_json: bool) -> None:
    """Compare the vault bucket with PostgreSQL: orphans, missing objects, overdue recordings."""
    from .services.ops import Reconciler

    container = _container()
    result = Reconciler(container.ctx).run(repair=repair)
    container.close()
    if as_json:
        _echo_json(result.__dict__)
        return
    for kind, count in result.counts().items():
        click.echo(f"{kind:<22}{count}")
    for key in result.orphan_objects[:20]:
        click.echo(f"  orphan  {key}")
    for recording_id in result.missing_objects[:20]:
        click.echo(f"  missing {recording_id}")
    if result.repaired:
        click.echo(f"repaired: {result.repaired}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """One screen for a human: recordings, overdue, DSRs, holds, dead letters, consumer lag."""
    from .ops_cli import gather_status, render_status

    report = gather_status(_container())
    if as_json:
        _echo_json(report)
    else:
        click.echo(render_status(report))


@cli.group()
def deadletter() -> None:
    """Rejected events: inspect and replay after a fix."""


@deadletter.command("list")
@click.option("--error-code")
@click.option("--limit", default=50, show_default=True)
def deadletter_list(error_code: str | None, limit: int) -> None:
    """Dead letters with code, time and source offset; personal data masked."""
    from .ops_cli import read_dead_letters

    rows = [r for r in read_dead_letters(_settings()) if error_code in (None, r["error_code"])]
    for row in rows[-limit:]:
        click.echo(
            f"{row['partition']}:{row['offset']:<6} {row['failed_at']:<27} "
            f"{row['error_code']:<18} {row['source_topic']}[{row['source_partition']}]"
            f"@{row['source_offset']}  {row['error']}"
        )
    click.echo(f"{len(rows)} dead letter(s)")


@deadletter.command("replay")
@click.option(
    "--offset",
    "offsets",
    multiple=True,
    help="PARTITION:OFFSET of a dead letter (as `deadletter list` shows it); repeatable.",
)
@click.option("--error-code", help="Replay every dead letter with this code.")
def deadletter_replay(offsets: tuple[str, ...], error_code: str | None) -> None:
    """Publish the original bytes again to their source topic (processing is idempotent)."""
    from .ops_cli import replay_dead_letters

    if not offsets and not error_code:
        raise click.UsageError("choose dead letters with --offset or --error-code")
    chosen = {_partition_offset(text) for text in offsets}
    count = replay_dead_letters(_settings(), chosen, error_code)
    click.echo(f"replayed {count} event(s)")


def _partition_offset(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise click.BadParameter(f"{text!r} is not PARTITION:OFFSET", param_hint="--offset")
    return int(partition), int(offset)


# console: web console, its users and API tokens (workers/console_cli.py)
cli.add_command(console_cli.serve)
cli.add_command(console_cli.user)
cli.add_command(console_cli.token)


def main() -> None:
    cli()
