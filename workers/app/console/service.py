"""The console's use cases, bundled for the HTTP layer and the CLI, and the console's message
bus: one handler per command, the core's hold handlers among them. :func:`console` puts them
together over the ports ``workers.bootstrap`` builds (PostgreSQL and S3 in production, the
in-memory fakes in unit tests): the same use cases either way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from argon2 import PasswordHasher

from ...domain.messages import Command, PlaceHold, ReleaseHold
from ...i18n import LANGUAGES
from ..context import Context
from ..handlers import holds
from ..messagebus import Handler, MessageBus
from ..middleware import log_context
from ..ports.console import (
    ComplianceFacts,
    LoginThrottle,
    RecordingSearch,
    Registers,
    Renditions,
    RequestPublisher,
)
from ..ports.keys import Keys
from . import handlers
from .accounts import Accounts, ThrottlePolicy
from .desk import RequestDesk
from .disclosures import Disclosures
from .history import SubjectHistory
from .messages import (
    AddFederatedUser,
    AddUser,
    BindIdentity,
    ChangeAccount,
    ChooseLanguage,
    CreateToken,
    Disclose,
    RecordAccess,
    RegisterRequest,
    RevokeToken,
)
from .oversight import Oversight
from .recordings import Recordings


@dataclass(frozen=True)
class Console:
    accounts: Accounts
    recordings: Recordings
    disclosures: Disclosures
    oversight: Oversight
    history: SubjectHistory
    desk: RequestDesk


@dataclass(frozen=True)
class ConsoleReads:
    """The console's read models and the sign-in tallies, from one store."""

    search: RecordingSearch
    registers: Registers
    facts: ComplianceFacts
    tallies: LoginThrottle


def console_bus(ctx: Context) -> MessageBus:
    """Staff's commands. No retry middleware: a person waiting gets a 503 at once and tries
    again, rather than a request held open for the retry budget."""
    table: dict[type[Command], Callable[..., str]] = {
        RecordAccess: handlers.record_access,
        Disclose: handlers.disclose,
        AddUser: handlers.add_user,
        AddFederatedUser: handlers.add_federated_user,
        BindIdentity: handlers.bind_identity,
        ChangeAccount: handlers.change_account,
        ChooseLanguage: handlers.choose_language,
        CreateToken: handlers.create_token,
        RevokeToken: handlers.revoke_token,
        RegisterRequest: handlers.register_request,
        PlaceHold: holds.place_hold,
        ReleaseHold: holds.release_hold,
    }
    bound: dict[type[Command], Handler] = {k: partial(h, ctx=ctx) for k, h in table.items()}
    return MessageBus(bound, [log_context])


def console(
    ctx: Context,
    reads: ConsoleReads,
    requests: RequestPublisher,
    *,
    keys: Keys,
    renditions: Renditions | None,
    hasher: PasswordHasher | None = None,
) -> Console:
    """The console's use cases over the core's context (its unit of work, object store and
    clock), the keys, its read models, its own message bus, the player's renditions and the
    publisher of the requests the DPO registers."""
    settings = ctx.settings
    bus = console_bus(ctx)
    recordings = Recordings(
        bus,
        ctx,
        reads.search,
        ctx.objects,
        keys=keys,
        region=settings.default_region,
        seek_window=settings.access_seek_window.as_timedelta(),
        renditions=renditions,
    )
    return Console(
        accounts=staff_accounts(ctx, reads.tallies, keys=keys, hasher=hasher, bus=bus),
        recordings=recordings,
        disclosures=Disclosures(bus, ctx, reads.registers),
        oversight=Oversight(
            bus,
            ctx,
            reads.facts,
            reads.registers,
            hash_key=keys.hasher,
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
    keys: Keys,
    hasher: PasswordHasher | None = None,
    bus: MessageBus | None = None,
) -> Accounts:
    """The console's accounts (the command line's ``user`` and ``token`` use them alone)."""
    settings = ctx.settings
    return Accounts(
        bus or console_bus(ctx),
        ctx,
        tallies,
        key=keys.hasher,
        policy=ThrottlePolicy.of(
            settings.login_max_failures,
            settings.login_window.as_timedelta(),
            settings.login_lock_addresses,
        ),
        federated_tenants=frozenset(settings.oidc_tenants),
        **({"hasher": hasher} if hasher is not None else {}),
    )
