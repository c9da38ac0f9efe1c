"""What every handler shares: the ports, the keys, the clock and the metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..adapters.crypto import Signer
from ..metrics import Metrics
from ..ports import ObjectStore, Store
from ..settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    settings: Settings
    store: Store
    objects: ObjectStore
    metrics: Metrics
    signer: Signer
    clock: Callable[[], datetime] = field(default=utc_now)

    @property
    def master_key(self) -> bytes:
        return self.settings.key("master_key")

    @property
    def hash_key(self) -> bytes:
        return self.settings.key("hash_key")

    @property
    def source(self) -> str:
        return self.settings.source_uri
