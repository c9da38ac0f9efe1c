"""The console's use cases, bundled for the HTTP layer and the CLI, and the console's message
bus: one handler per command, the core's hold handlers among them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ...domain.messages import Command, PlaceHold, ReleaseHold
from ..context import Context
from ..handlers import holds
from ..messagebus import Handler, MessageBus
from ..middleware import log_context
from ..ports.console import ComplianceFacts, LoginThrottle, RecordingSearch, Registers
from . import handlers
from .accounts import Accounts
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
