"""``callvault keys``: check the configured keys against the database, rotate the master key
(re-wrap every data key) and the hash key (re-key every digest), create the keys inside a
PKCS#11 token. Both rotations run in batches, each batch one audited transaction; an
interrupted rotation resumes where it stood when the command is run again."""

from __future__ import annotations

from collections.abc import Callable

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ...app.handlers.keys import begin_hash_rotation, verify_keys
from ...bootstrap import App
from ...domain import messages as m
from .common import EXIT_CONFIG, container, fail, settings, user_errors

batch_option = click.option(
    "--batch",
    default=500,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Recordings per transaction.",
)


@click.group()
def keys() -> None:
    """Master, hash and signing keys: check them, rotate them, create them in a token."""


@keys.command("check")
def keys_check() -> None:
    """Compare the configured keys with the check values `callvault migrate` stored (exit 3
    when one differs, naming the setting)."""
    with user_errors(), container() as built:
        verify_keys(built.ctx, register=False)
        ring = built.keys
        click.echo(
            f"keys match this database: master {ring.current_master_id} (current of "
            f"{', '.join(ring.master_ids)}), hash key, signing key {ring.signing_key_id}"
        )
        for key, where in ring.whereabouts():
            click.echo(f"  {key}: {where}")
        click.echo("check values (they reveal nothing about the keys):")
        for check in ring.checks():
            click.echo(f"  {check.kind} {check.key_id}: {check.value}")


@keys.command("generate")
def keys_generate() -> None:
    """Create the keys inside the PKCS#11 token (CALLVAULT_KEYS_BACKEND=pkcs11) that the
    settings name and the token lacks: the master key CALLVAULT_MASTER_KEY_ID (AES-256), the
    hash key (HMAC-SHA256) and the signing key pair (Ed25519, or ECDSA P-256 where the token
    has no EdDSA), each sensitive and non-extractable. Existing keys are left as they are; for
    a rotation, name a new id or label and run it again."""
    from ...adapters.pkcs11 import generate

    with user_errors():
        chosen = settings()
        if chosen.keys_backend != "pkcs11":
            fail("keys generate needs CALLVAULT_KEYS_BACKEND=pkcs11 (and its token)", EXIT_CONFIG)
        created = generate(chosen)
    for line in created:
        click.echo(f"created {line}")
    if not created:
        click.echo("the token has every key the settings name already")


@keys.command("import-to-hsm")
def keys_import_to_hsm() -> None:
    """Move the hash keys into the PKCS#11 token: CALLVAULT_HASH_KEY (and each key of
    CALLVAULT_HASH_KEYS_RETIRED) becomes a non-extractable object of the token, so the
    digests on record stay valid and the bytes can leave the settings. Run it with
    CALLVAULT_KEYS_BACKEND=pkcs11 and the old key settings still given, after `keys generate`;
    master and signing keys move by rotation to keys generated in the token (docs/keys.md)."""
    from ...adapters.pkcs11 import import_hash_keys

    with user_errors(), container() as built:
        chosen = built.settings
        if chosen.keys_backend != "pkcs11" or chosen.hash_key is None:
            fail(
                "keys import-to-hsm needs CALLVAULT_KEYS_BACKEND=pkcs11 (and its token) and "
                "CALLVAULT_HASH_KEY, the key to move",
                EXIT_CONFIG,
            )
        # the hash key must be this database's; new token keys are registered, as by migrate
        verify_keys(built.ctx, register=True)
        imported = import_hash_keys(chosen)
    for label, what in imported:
        click.echo(f"imported {what} as {label!r}")
    retired = [label for label, what in imported if what == "retired"]
    click.echo(
        "now remove CALLVAULT_HASH_KEY and CALLVAULT_HASH_KEYS_RETIRED from the settings"
        + (f"; set CALLVAULT_PKCS11_HASH_LABELS_RETIRED={','.join(retired)}" if retired else "")
    )


@keys.command("rotate")
@batch_option
def keys_rotate(batch: int) -> None:
    """Re-wrap every data key under the current master key (CALLVAULT_MASTER_KEY_ID), then
    retire the others: they may then leave CALLVAULT_MASTER_KEYS.

    \b
    1. Add the new key: CALLVAULT_MASTER_KEYS=old-id=...,new-id=... and
       CALLVAULT_MASTER_KEY_ID=new-id; restart every worker and `serve`.
    2. callvault keys rotate   (workers may keep running)
    3. Remove the old key from the settings; restart."""
    with user_errors(), container() as built:
        verify_keys(built.ctx, register=True)  # the new master key is registered first
        current = built.keys.current_master_id
        total = built.ctx.read(lambda uow: uow.counts.count_wrapped_elsewhere(current))
        done = _batches(
            built, total, "re-wrapping data keys", lambda after: m.RewrapDataKeys(after, batch)
        )
        outcome = built.messagebus.handle(m.RetireMasterKeys()).split(":")
    if outcome[0] == "pending":
        raise click.ClickException(
            f"{outcome[1]} data key(s) are still wrapped under another master key (a worker "
            "with the old settings may be running): run `callvault keys rotate` again"
        )
    retired = [k for k in outcome[2].split(",") if k]
    click.echo(f"re-wrapped {done} data key(s) under master key {current}")
    if retired:
        click.echo(
            f"retired master key(s) {', '.join(retired)}: remove them from "
            "CALLVAULT_MASTER_KEYS (and CALLVAULT_MASTER_KEY) and restart"
        )


@keys.command("rehash")
@batch_option
def keys_rehash(batch: int) -> None:
    """Re-key every digest under CALLVAULT_HASH_KEY; the key they were made with must be in
    CALLVAULT_HASH_KEYS_RETIRED.

    \b
    1. Stop every worker and `serve`.
    2. CALLVAULT_HASH_KEY=new key, CALLVAULT_HASH_KEYS_RETIRED=old key
    3. callvault keys rehash   (run it again if it is interrupted)
    4. Start the workers; keep the old key in CALLVAULT_HASH_KEYS_RETIRED for as long as
       the input and dead-letter topics keep events (default 30 days): it recognises
       redelivered calls purged or discarded before the rotation. Then remove it."""
    with user_errors(), container() as built:
        previous = begin_hash_rotation(built.ctx)
        if previous is None:
            click.echo("the digests are keyed with CALLVAULT_HASH_KEY already")
            return
        total = built.ctx.read(lambda uow: uow.counts.count_by_status()).get("stored", 0)
        done = _batches(
            built, total, "re-keying digests", lambda after: m.RekeyDigests(after, batch)
        )
        outcome = built.messagebus.handle(m.FinishHashRotation(previous)).split(":")
    click.echo(f"re-keyed the digests of {done} recording(s) and {outcome[1]} hold(s)")
    if outcome[2] != "0":
        click.echo(
            f"{outcome[2]} hold digest(s) match no identifier on record: re-place those holds"
        )
    click.echo("keep the old key in CALLVAULT_HASH_KEYS_RETIRED for the grace period")


def _batches(built: App, total: int, what: str, command: Callable[[str], m.Command]) -> int:
    """Hand batch commands to the bus until the last id is reached; a progress bar shows
    the recordings changed out of those that needed it."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    done, after = 0, ""
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(what, total=total or None)
        while True:
            _, changed, last = built.messagebus.handle(command(after)).split(":")
            done += int(changed)
            progress.update(task, advance=int(changed))
            if not last:
                return done
            after = last
