"""Builds the console from the core's pieces: PostgreSQL and S3 in production, the in-memory
fakes in unit tests; the same use cases either way."""

from __future__ import annotations

import base64

from argon2 import PasswordHasher

from ...app.console.accounts import Accounts, ThrottlePolicy
from ...app.console.disclosures import Disclosures
from ...app.console.history import SubjectHistory
from ...app.console.oversight import Oversight
from ...app.console.recordings import Keys, Recordings
from ...app.console.service import Console, ConsoleReads, console_bus
from ...app.context import Context
from ...app.ports.keys import Keys as KeysPort
from ...settings import Settings
from ..keys import SESSION_PURPOSE


def assemble(
    ctx: Context,
    reads: ConsoleReads,
    *,
    ring: KeysPort,
    hasher: PasswordHasher | None = None,
) -> Console:
    """The console's use cases over the core's context (its unit of work, object store,
    keys and clock), its read models, and its own message bus."""
    settings: Settings = ctx.settings
    keys = Keys(ring.unwrap, ring.hasher, settings.default_region)
    bus = console_bus(ctx)
    accounts = Accounts(
        bus,
        ctx,
        reads.tallies,
        key=keys.hash,
        policy=ThrottlePolicy.of(
            settings.login_max_failures,
            settings.login_window.as_timedelta(),
            settings.login_lock_addresses,
        ),
        federated_tenants=frozenset(settings.oidc_tenants),
        **({"hasher": hasher} if hasher is not None else {}),
    )
    recordings = Recordings(
        bus,
        ctx,
        reads.search,
        ctx.objects,
        keys=keys,
        seek_window=settings.access_seek_window.as_timedelta(),
    )
    return Console(
        accounts=accounts,
        recordings=recordings,
        disclosures=Disclosures(bus, ctx, reads.registers),
        oversight=Oversight(bus, ctx, reads.facts, reads.registers, hash_key=keys.hash),
        history=SubjectHistory(reads.registers),
    )


def session_secret(settings: Settings, keys: KeysPort) -> bytes:
    """The secret that signs cookies: the configured one, else one derived from callvault's
    keys (so that every server of one deployment agrees without another secret to distribute):
    from the master key held in this process, or, with the keys in a token, an HMAC computed
    in the token under the hash key - the master key there cannot derive anything."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode()
    return base64.b64encode(keys.secret(SESSION_PURPOSE))
