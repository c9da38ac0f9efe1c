"""The console's use cases, bundled for the HTTP layer and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from .accounts import Accounts
from .desk import RequestDesk
from .disclosures import Disclosures
from .history import SubjectHistory
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
