"""Assembles the console's use cases from the ports ``workers.bootstrap`` gives (PostgreSQL and
S3 in production, the in-memory fakes in unit tests); the same use cases either way."""

from __future__ import annotations

import base64

from argon2 import PasswordHasher

from ...app.console.accounts import Accounts, ThrottlePolicy
from ...app.console.desk import RequestDesk
from ...app.console.disclosures import Disclosures
from ...app.console.history import SubjectHistory
from ...app.console.oversight import Oversight
from ...app.console.recordings import Keys, Recordings
from ...app.console.service import Console, ConsoleReads, console_bus
from ...app.context import Context
from ...app.messagebus import MessageBus
from ...app.ports.console import LoginThrottle, RequestPublisher
from ...app.ports.keys import Keys as KeysPort
from ...i18n import LANGUAGES
from ...settings import Settings
from ..keys import SESSION_PURPOSE
from ..rendition import PyavRenditions


def assemble(
    ctx: Context,
    reads: ConsoleReads,
    requests: RequestPublisher,
    *,
    ring: KeysPort,
    hasher: PasswordHasher | None = None,
) -> Console:
    """The console's use cases over the core's context (its unit of work, object store,
    keys and clock), its read models, its own message bus, and the publisher of the
    requests the DPO registers."""
    settings: Settings = ctx.settings
    keys = Keys(ring.unwrap, ring.hasher, settings.default_region)
    bus = console_bus(ctx)
    recordings = Recordings(
        bus,
        ctx,
        reads.search,
        ctx.objects,
        keys=keys,
        seek_window=settings.access_seek_window.as_timedelta(),
        renditions=PyavRenditions(),
    )
    return Console(
        accounts=staff_accounts(ctx, reads.tallies, ring=ring, hasher=hasher, bus=bus),
        recordings=recordings,
        disclosures=Disclosures(bus, ctx, reads.registers),
        oversight=Oversight(
            bus,
            ctx,
            reads.facts,
            reads.registers,
            hash_key=keys.hash,
            localities=settings.localities,
        ),
        history=SubjectHistory(reads.registers),
        desk=RequestDesk(
            bus, requests, clock=ctx.clock, localities=settings.localities, languages=LANGUAGES
        ),
    )


def staff_accounts(
    ctx: Context,
    tallies: LoginThrottle,
    *,
    ring: KeysPort,
    hasher: PasswordHasher | None = None,
    bus: MessageBus | None = None,
) -> Accounts:
    """The console's accounts (the command line's ``user`` and ``token`` use them alone)."""
    settings: Settings = ctx.settings
    return Accounts(
        bus or console_bus(ctx),
        ctx,
        tallies,
        key=ring.hasher,
        policy=ThrottlePolicy.of(
            settings.login_max_failures,
            settings.login_window.as_timedelta(),
            settings.login_lock_addresses,
        ),
        federated_tenants=frozenset(settings.oidc_tenants),
        **({"hasher": hasher} if hasher is not None else {}),
    )


def session_secret(settings: Settings, keys: KeysPort) -> bytes:
    """The secret that signs cookies: the configured one, else one derived from callvault's
    keys (so that every server of one deployment agrees without another secret to distribute):
    from the master key held in this process, or, with the keys in a token, an HMAC computed
    in the token under the hash key - the master key there cannot derive anything."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode()
    return base64.b64encode(keys.secret(SESSION_PURPOSE))
