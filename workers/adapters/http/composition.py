"""Builds the console from the core's pieces: PostgreSQL and S3 in production, the in-memory
fakes in unit tests; the same use cases either way."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime

from argon2 import PasswordHasher

from ...app.console.accounts import Accounts, ThrottlePolicy
from ...app.console.desk import RequestDesk
from ...app.console.disclosures import Disclosures
from ...app.console.history import SubjectHistory
from ...app.console.oversight import Oversight
from ...app.console.recordings import Keys, Recordings
from ...app.console.service import Console
from ...app.ports.console import (
    ConsoleStore,
    HoldCommands,
    Packager,
    RangedObjects,
    RequestPublisher,
)
from ...app.ports.keys import Keys as KeysPort
from ...i18n import LANGUAGES
from ...settings import Settings
from ..keys import SESSION_PURPOSE
from ..rendition import PyavRenditions


def assemble(
    ports: ConsoleStore,
    objects: RangedObjects,
    hold_commands: HoldCommands,
    packager: Packager,
    requests: RequestPublisher,
    settings: Settings,
    clock: Callable[[], datetime],
    *,
    ring: KeysPort,
    hasher: PasswordHasher | None = None,
) -> Console:
    keys = Keys(ring.unwrap, ring.hasher, settings.default_region)
    accounts = Accounts(
        ports,
        ports,
        ports,
        key=keys.hash,
        clock=clock,
        policy=ThrottlePolicy.of(
            settings.login_max_failures,
            settings.login_window.as_timedelta(),
            settings.login_lock_addresses,
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
        renditions=PyavRenditions(),
    )
    return Console(
        accounts=accounts,
        recordings=recordings,
        disclosures=Disclosures(ports, ports, packager, clock=clock),
        oversight=Oversight(
            ports, ports, ports, hold_commands, clock=clock, localities=settings.localities
        ),
        history=SubjectHistory(ports, ports),
        desk=RequestDesk(
            ports, requests, clock=clock, localities=settings.localities, languages=LANGUAGES
        ),
    )


def session_secret(settings: Settings, keys: KeysPort) -> bytes:
    """The secret that signs cookies: the configured one, else one derived from callvault's
    keys (so that every server of one deployment agrees without another secret to distribute):
    from the master key held in this process, or, with the keys in a token, an HMAC computed
    in the token under the hash key - the master key there cannot derive anything."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode()
    return base64.b64encode(keys.secret(SESSION_PURPOSE))
