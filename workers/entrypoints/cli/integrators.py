"""Commands for the telephony team: publish call-ended events (test an adapter) and demo
traffic. They need Kafka and the landing bucket only - never callvault's database or keys."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click
from rich.progress import track

from ...adapters.kafka import codec
from ...domain import events
from ...domain.retention import rfc3339
from .common import container, settings, user_errors

SOURCE = "urn:callvault:cli"


def cloudevent(event_type: str, data: dict[str, Any]) -> bytes:
    """A record's value: an event the command line sends, in the Kafka codec's envelope."""
    return codec.encode(codec.envelope(event_type, data, source=SOURCE))


def publish_records(
    logical_topic: str, records: list[tuple[str | None, bytes]], *, progress: bool = False
) -> None:
    """Publish to one of callvault's topics (by its settings name), with a progress bar for
    many records."""
    with container() as built:
        topic = built.settings.topics()[logical_topic]
        batches = [records[i : i + 500] for i in range(0, len(records), 500)]
        chosen = (
            track(batches, description="publishing", transient=True)
            if progress and len(batches) > 1
            else batches
        )
        for batch in chosen:
            built.bus.publish([(topic, key, value) for key, value in batch])


def upload_landing(path: Path) -> dict[str, Any]:
    """Put a local audio file in the landing bucket under a key callvault generates; returns
    the event's ``recording`` block."""
    data = path.read_bytes()
    with container() as built:
        key = f"landing/{uuid.uuid4()}{path.suffix.lower()[:8]}"
        landing = built.settings.landing_bucket
        built.objects.put_stream(landing, key, [data], content_type="application/octet-stream")
    return {
        "uri": f"s3://{landing}/{key}",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@click.command()
@click.option(
    "--file",
    "jsonl",
    type=click.File("r"),
    help="JSON lines: CloudEvents, or call data objects to wrap in one ('-' for standard input).",
)
@click.option("--call-id", help="The telephony system's call id (default: a new one).")
@click.option(
    "--direction",
    type=click.Choice(["inbound", "outbound"]),
    default="inbound",
    show_default=True,
    help="Who called whom.",
)
@click.option(
    "--caller", default="anonymous", show_default=True, help="The caller's number, in any notation."
)
@click.option(
    "--callee",
    default="+370 521 44500",
    show_default=True,
    help="The callee's number, in any notation.",
)
@click.option(
    "--tenant", default="default", show_default=True, help="Selects the retention policy."
)
@click.option(
    "--audio",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A local audio file: uploaded to the landing bucket and referenced.",
)
@click.option("--uri", help="Recording URI, when not uploading --audio.")
@click.option(
    "--notice/--no-notice", default=True, help="Did the caller hear the recording notice?"
)
@click.option("--customer-email", help="The customer's e-mail (for look-ups).")
@click.option("--customer-id", help="The shop's customer id.")
@click.option("--order-id", "order_ids", multiple=True, help="An order number (repeatable).")
def publish(
    jsonl: TextIO | None,
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
    with user_errors():
        if jsonl is not None:
            records = _records_from(jsonl)
        else:
            if audio is None and uri is None:
                raise click.UsageError("give --audio FILE or --uri URI (or --file)")
            recording = upload_landing(audio) if audio else {"uri": uri}
            data = _call(call_id, direction, caller, callee, tenant, notice, recording)
            customer = {
                "email": customer_email,
                "customer_id": customer_id,
                "order_ids": list(order_ids),
            }
            if any(customer.values()):
                data["customer"] = {k: v for k, v in customer.items() if v}
            records = [(data["call_id"], cloudevent(events.CALL_ENDED, data))]
        publish_records("calls_ended", records, progress=True)
    click.echo(f"published {len(records)} event(s)")


def _records_from(lines: TextIO) -> list[tuple[str | None, bytes]]:
    records: list[tuple[str | None, bytes]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise click.BadParameter(f"line {number} is not JSON", param_hint="--file") from exc
        if not isinstance(value, dict):
            raise click.BadParameter(f"line {number} is not a JSON object", param_hint="--file")
        if "specversion" not in value:
            value = codec.envelope(events.CALL_ENDED, value, source=SOURCE)
        key = (value.get("data") or {}).get("call_id")
        records.append((key if isinstance(key, str) else None, codec.encode(value)))
    return records


def _call(
    call_id: str | None,
    direction: str,
    caller: str,
    callee: str,
    tenant: str,
    notice: bool,
    recording: dict[str, Any],
) -> dict[str, Any]:
    now = rfc3339(datetime.now(UTC))
    return {
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


@click.command()
@click.option("--count", default=40, show_default=True, help="Calls to publish (0 = forever).")
@click.option("--rate", default=2.0, show_default=True, help="Calls per second.")
@click.option("--seed", type=int, default=None, help="Random seed, for repeatable traffic.")
@click.option(
    "--lifecycle",
    is_flag=True,
    help="Instead of traffic: narrate the whole lifecycle (store, hold, requests, dead letter, "
    "retention purge); needs a worker with CALLVAULT_RETENTION_TENANTS=demo-short=PT1M.",
)
@click.option(
    "--due-in",
    default=45.0,
    show_default=True,
    help="--lifecycle: seconds until the demo-short recordings fall due.",
)
def demo(count: int, rate: float, seed: int | None, lifecycle: bool, due_in: float) -> None:
    """Publish demo telephony traffic (real speech audio, every phone notation, odd bad events),
    or with --lifecycle tell the whole lifecycle of recordings as it happens."""
    if lifecycle:
        from ...demo.lifecycle import tour

        with user_errors(), container() as built:
            tour(built, click.echo, due_in=due_in)
        return
    from ...demo.traffic import run

    with user_errors():
        sent = run(settings(), count, rate, seed)
    click.echo(f"published {sent} demo call(s)")
