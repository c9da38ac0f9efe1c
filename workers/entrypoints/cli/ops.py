"""Commands for operators: run the workers, migrate, look at the state of things, reconcile,
and deal with dead letters and failed follow-ups."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import click
from rich.progress import Progress

from ...adapters.kafka.bus import DeadLetter
from ...adapters.logs import mask
from ...app.background import status_summary
from ...app.handlers.ingest import remove_landing_copy
from ...app.handlers.reconcile import reconcile as run_reconcile
from ...bootstrap import App
from ...domain.errors import NotFound, UnsupportedUri, UriNotAllowed
from ...domain.retention import IsoDuration, rfc3339
from ...domain.uris import locate
from .common import (
    EXIT_FAILED,
    confirm,
    container,
    echo_json,
    json_option,
    settings,
    user_errors,
    yes_option,
)


@click.command()
@click.option(
    "--only",
    default="",
    help="Comma-separated subset of roles: ingest,retention,holds,dsr,scheduler,outbox "
    "(default: all).",
)
def worker(only: str) -> None:
    """Run the workers (every role in one process unless --only says otherwise)."""
    from ..worker import run_worker

    with user_errors():
        chosen = settings()
        chosen.need("kafka_bootstrap", "database_url", "s3_endpoint")
        chosen.need_keys()
        run_worker(chosen, tuple(r.strip() for r in only.split(",") if r.strip()))


@click.command()
@json_option
def migrate(as_json: bool) -> None:
    """Bring the database schema, buckets and topics up to date, and apply the configured
    retention policy (idempotent)."""
    with user_errors(), container() as built:
        report = built.migrate()
    if as_json:
        echo_json(report.__dict__)
        return
    click.echo(f"migrations applied  {', '.join(report.migrations_applied) or 'none (up to date)'}")
    for bucket, how in report.buckets.items():
        click.echo(f"bucket              {bucket}: {how}")
    click.echo(f"topics created      {', '.join(report.topics_created) or 'none (all exist)'}")
    click.echo(f"retention backstop  {report.backstop}")
    click.echo(f"retention policy    {report.policy}")
    click.echo(f"keys registered     {', '.join(report.keys_registered) or 'none (all known)'}")


@click.command()
@json_option
def status(as_json: bool) -> None:
    """One screen for a human: recordings, overdue, DSRs, holds, dead letters, consumer lag."""
    with user_errors(), container() as built:
        report = status_summary(built.ctx)
        report["dead_letters"] = len(built.read_dead_letters(timeout_ms=800))
        report["consumer_lag"] = _lag(built)
    if as_json:
        echo_json(report)
    else:
        click.echo(render_status(report))


def _lag(built: App) -> dict[str, int]:
    chosen = built.settings
    inputs = [chosen.topic_calls_ended, chosen.topic_dsr_requests, chosen.topic_holds_commands]
    with built.lag_probe() as probe:
        return {f"{t}[{p}]": lag for (t, p), lag in sorted(probe.measure(inputs).items())}


def render_status(report: dict[str, Any]) -> str:
    recordings = report["recordings"]
    lag = report.get("consumer_lag", {})
    lines = [
        "callvault status",
        "----------------",
        f"recordings stored      {recordings.get('stored', 0)}",
        f"  being purged         {recordings.get('purging', 0)}",
        f"  purged (tombstones)  {recordings.get('purged', 0)}",
        f"  held                 {recordings.get('held', 0)}",
        f"overdue (not held)     {report['overdue']}",
        f"oldest overdue         {report['oldest_overdue_seconds']:.0f} s",
        f"open DSRs              {report['open_dsr_requests']}",
        f"nearest DSR deadline   {report['nearest_dsr_deadline'] or '-'}",
        f"legal holds active     {report['holds_active']}",
        f"dead letters           {report['dead_letters']}",
        f"consumer lag (total)   {sum(lag.values())}",
    ]
    lines += [f"  {name:<30}{value}" for name, value in lag.items() if value]
    return "\n".join(lines)


@click.command()
@click.option(
    "--repair",
    is_flag=True,
    help="Delete orphan versions, sync legal holds, purge overdue recordings, abort stale uploads.",
)
@click.option(
    "--orphan-grace",
    default="PT15M",
    show_default=True,
    help="Versions younger than this (ISO 8601) are never counted as orphans.",
)
@yes_option
@json_option
def reconcile(repair: bool, orphan_grace: str, yes: bool, as_json: bool) -> None:
    """Compare the vault bucket with PostgreSQL: orphans, missing objects, overdue recordings,
    legal holds out of step. Exits 1 when it finds something (and does not repair it)."""
    if repair:
        confirm("Repair deletes orphan object versions and purges overdue recordings. Go on?", yes)
    with user_errors(), container() as built:
        total = sum(
            v
            for k, v in built.ctx.read(lambda uow: uow.counts.count_by_status()).items()
            if k != "held"
        )
        with Progress(transient=True) as progress:
            task = progress.add_task("reconciling", total=total)
            result = run_reconcile(
                built.ctx,
                repair=repair,
                orphan_grace=_duration(orphan_grace).as_timedelta(),
                progress=lambda n: progress.advance(task, n),
            )
    if as_json:
        echo_json(result.as_dict())
    else:
        for kind, count in result.counts().items():
            click.echo(f"{kind:<22}{count}")
        for key in result.orphan_objects[:20]:
            click.echo(f"  orphan  {key}")
        for recording_id in result.missing_objects[:20]:
            click.echo(f"  missing {recording_id}")
        if result.repaired:
            click.echo(f"repaired: {result.repaired}")
    if any(result.counts().values()) and not repair:
        raise SystemExit(EXIT_FAILED)


@click.group()
def deadletter() -> None:
    """Rejected events: inspect, replay after a fix, or discard (deleting their audio)."""


def _discarded(built: App) -> set[tuple[int, int]]:
    return built.database.discarded_dead_letters(built.settings.topic_deadletter)


def _row(letter: DeadLetter, discarded: set[tuple[int, int]]) -> dict[str, Any]:
    data = letter.data
    return {
        "position": f"{letter.partition}:{letter.offset}",
        "failed_at": data.get("failed_at"),
        "error_code": data.get("error_code"),
        "error": mask(str(data.get("error", ""))),
        "source": f"{data.get('source_topic')}[{data.get('partition')}]@{data.get('offset')}",
        "discarded": (letter.partition, letter.offset) in discarded,
    }


@deadletter.command("list")
@click.option("--error-code", help="Only dead letters with this code.")
@click.option("--limit", default=50, show_default=True, help="Show at most this many (the newest).")
@json_option
def deadletter_list(error_code: str | None, limit: int, as_json: bool) -> None:
    """Dead letters with code, time and source offset; personal data masked."""
    with user_errors(), container() as built:
        letters = [
            d for d in built.read_dead_letters() if error_code in (None, d.data.get("error_code"))
        ]
        discarded = _discarded(built)
    rows = [_row(d, discarded) for d in letters][-limit:]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        flag = " (discarded)" if row["discarded"] else ""
        click.echo(
            f"{row['position']:<8} {row['failed_at']:<27} {row['error_code']:<18} "
            f"{row['source']}  {row['error']}{flag}"
        )
    click.echo(f"{len(letters)} dead letter(s)")


def _chosen(
    letters: list[DeadLetter], positions: tuple[str, ...], error_code: str | None
) -> list[DeadLetter]:
    wanted = {_partition_offset(text) for text in positions}
    found = [
        d
        for d in letters
        if (d.partition, d.offset) in wanted
        or (error_code and d.data.get("error_code") == error_code)
    ]
    missing = wanted - {(d.partition, d.offset) for d in found}
    if missing:
        raise NotFound(f"no dead letter at {', '.join(f'{p}:{o}' for p, o in sorted(missing))}")
    return found


position_option = click.option(
    "--offset",
    "positions",
    multiple=True,
    help="PARTITION:OFFSET of a dead letter (as `deadletter list` shows it); repeatable.",
)
code_option = click.option("--error-code", help="Every dead letter with this code.")


@deadletter.command("replay")
@position_option
@code_option
def deadletter_replay(positions: tuple[str, ...], error_code: str | None) -> None:
    """Publish the original bytes again to their source topic (processing is idempotent;
    discarded dead letters are skipped)."""
    if not positions and not error_code:
        raise click.UsageError("choose dead letters with --offset or --error-code")
    with user_errors(), container() as built:
        discarded = _discarded(built)
        chosen = [
            d
            for d in _chosen(built.read_dead_letters(), positions, error_code)
            if (d.partition, d.offset) not in discarded
        ]
        built.bus.publish(
            [
                (d.data["source_topic"], d.data.get("key"), base64.b64decode(d.data["value_b64"]))
                for d in chosen
            ],
            [d.original_headers() for d in chosen],
        )
    click.echo(f"replayed {len(chosen)} event(s)")


@deadletter.command("discard")
@position_option
@code_option
@yes_option
def deadletter_discard(positions: tuple[str, ...], error_code: str | None, yes: bool) -> None:
    """Give up on dead letters for good: delete the audio they left in the landing bucket and
    never replay them."""
    if not positions and not error_code:
        raise click.UsageError("choose dead letters with --offset or --error-code")
    with user_errors(), container() as built:
        chosen = _chosen(built.read_dead_letters(), positions, error_code)
        confirm(f"Discard {len(chosen)} dead letter(s) and delete their landing audio?", yes)
        now = datetime.now(UTC)
        for letter in chosen:
            _remove_landing_audio(letter, built)
            built.database.discard_dead_letter(
                built.settings.topic_deadletter, letter.partition, letter.offset, now
            )
    click.echo(f"discarded {len(chosen)} dead letter(s)")


def _remove_landing_audio(letter: DeadLetter, built: App) -> None:
    """Delete the landing object a dead-lettered call.ended names (only ever inside the
    landing bucket)."""
    try:
        event = json.loads(base64.b64decode(letter.data.get("value_b64") or ""))
        uri = event["data"]["recording"]["uri"]
        where = locate(uri, landing_bucket=built.settings.landing_bucket, allowed_hosts=())
    except (ValueError, KeyError, TypeError, UnsupportedUri, UriNotAllowed):
        return
    remove_landing_copy(where, built.ctx)


def _duration(text: str) -> IsoDuration:
    try:
        return IsoDuration.parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--orphan-grace") from None


def _partition_offset(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise click.BadParameter(f"{text!r} is not PARTITION:OFFSET", param_hint="--offset")
    return int(partition), int(offset)


@click.group()
def followups() -> None:
    """Follow-up work that failed for good (a purge, a legal-hold sync, a resumed erasure):
    list it, and make it due again once the cause is fixed."""


@followups.command("list")
@click.option("--limit", default=100, show_default=True, help="Show at most this many (oldest).")
@json_option
def followups_list(limit: int, as_json: bool) -> None:
    """Parked follow-ups: id, kind, attempts, when and why they failed (masked)."""
    with user_errors(), container() as built:
        parked = built.database.parked_follow_ups(limit)
        total = built.database.parked_count()
    rows = [
        {
            "id": p.id,
            "kind": p.kind,
            "attempts": p.attempts,
            "failed_at": rfc3339(p.failed_at),
            "error": mask(p.error),
        }
        for p in parked
    ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['id']:<8} {row['kind']:<20} {row['attempts']:>3}x  {row['failed_at']:<27} "
            f"{row['error']}"
        )
    click.echo(f"{total} parked follow-up(s)")


@followups.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every parked follow-up.")
@yes_option
def followups_retry(ids: tuple[int, ...], every: bool, yes: bool) -> None:
    """Make parked follow-ups due again (by id, or --all): a worker with the retention role
    carries them out; one that fails for good again is parked again."""
    if bool(ids) == every:
        raise click.UsageError("give follow-up ids or --all (not both)")
    with user_errors(), container() as built:
        if every:
            confirm(f"Retry all {built.database.parked_count()} parked follow-up(s)?", yes)
        done = built.database.retry_parked(None if every else ids)
    if ids and done < len(set(ids)):
        click.echo(f"retried {done} of {len(set(ids))}: the others are not parked", err=True)
        raise SystemExit(EXIT_FAILED)
    click.echo(f"retried {done} follow-up(s)")


@click.group()
def partitions() -> None:
    """The partitioned tables: recordings by month, the audit trail by range."""


@partitions.command("list")
@json_option
def partitions_list(as_json: bool) -> None:
    """Each partition: its range, rows (estimated), size, and for a month of recordings
    whether it still holds recordings not yet purged."""
    from ...adapters.postgres.partitions import list_partitions

    with user_errors():
        found = list_partitions(settings().migration_dsn)
    if as_json:
        echo_json([p.__dict__ for p in found])
        return
    for p in found:
        state = {None: "", True: "recordings", False: "tombstones only"}[p.alive]
        click.echo(
            f"{p.partition:<24} {p.lower or 'MINVALUE':>25} .. {p.upper or '':<25} "
            f"{max(p.rows, 0):>12,} rows {p.bytes / 2**20:>10,.0f} MiB  {state}"
        )


@partitions.command("archive")
@click.option("--dry-run", is_flag=True, help="Only name the months that would be archived.")
@yes_option
def partitions_archive(dry_run: bool, yes: bool) -> None:
    """Detach every month of recordings that holds only tombstones and ended longer ago than
    the longest retention policy and a margin, into the callvault_archive schema (dump it and
    drop it, or keep it as evidence). Needs the schema owner (CALLVAULT_DATABASE_ADMIN_URL);
    the live table waits at most 2 s at a time."""
    from ...adapters.postgres.migrate import BACKSTOP_MARGIN_DAYS, longest_policy_days
    from ...adapters.postgres.partitions import archive_partitions

    with user_errors():
        chosen = settings()
        kept = longest_policy_days(chosen) + BACKSTOP_MARGIN_DAYS
        names = archive_partitions(chosen.migration_dsn, kept, dry_run=True)
        if not names:
            click.echo("nothing to archive")
            return
        if dry_run:
            click.echo(f"would archive: {', '.join(names)}")
            return
        confirm(f"Detach {', '.join(names)} into callvault_archive?", yes)
        done = archive_partitions(chosen.migration_dsn, kept, dry_run=False)
    click.echo(f"archived into callvault_archive: {', '.join(done) or 'none'}")
