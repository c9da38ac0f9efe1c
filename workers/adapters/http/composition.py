"""Builds the console from the core's pieces: PostgreSQL and S3 in production, the in-memory
fakes in unit tests; the same use cases either way."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime

from argon2 import PasswordHasher

from ...app.console.accounts import Accounts, ThrottlePolicy
from ...app.console.disclosures import Disclosures
from ...app.console.history import SubjectHistory
from ...app.console.oversight import Oversight
from ...app.console.recordings import Keys, Recordings
from ...app.console.service import Console
from ...app.ports.console import ConsoleStore, HoldCommands, Packager, RangedObjects
from ...settings import Settings
from ..keys import key_ring


def assemble(
    ports: ConsoleStore,
    objects: RangedObjects,
    hold_commands: HoldCommands,
    packager: Packager,
    settings: Settings,
    clock: Callable[[], datetime],
    *,
    hasher: PasswordHasher | None = None,
) -> Console:
    keys = Keys(key_ring(settings).unwrap, settings.key("hash_key"), settings.default_region)
    accounts = Accounts(
        ports,
        ports,
        ports,
        key=keys.hash,
        clock=clock,
        policy=ThrottlePolicy(
            per_user=settings.login_max_failures, window=settings.login_window.as_timedelta()
        ),
        **({"hasher": hasher} if hasher is not None else {}),
    )
    recordings = Recordings(
        ports,
        ports,
        objects,
        vault_bucket=settings.vault_bucket,
        keys=keys,
        clock=clock,
        seek_window=settings.access_seek_window.as_timedelta(),
    )
    return Console(
        accounts=accounts,
        recordings=recordings,
        disclosures=Disclosures(ports, ports, packager, clock=clock),
        oversight=Oversight(ports, ports, ports, hold_commands, clock=clock),
        history=SubjectHistory(ports, ports),
    )


def session_secret(settings: Settings) -> bytes:
    """The secret that signs cookies: the configured one, else one derived from the master key
    (so that every server of one deployment agrees without another secret to distribute)."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode()
    derived = hmac.new(settings.key("master_key"), b"callvault console session", hashlib.sha256)
    return base64.b64encode(derived.digest())
