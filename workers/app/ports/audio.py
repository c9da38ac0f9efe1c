"""The audio source port: where ingest reads a call's recording from (the landing bucket, an
allow-listed HTTPS host, a local directory). Real adapter: :mod:`workers.adapters.fetch`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from ...domain.uris import AudioLocation


class AudioSource(Protocol):
    def open(self, where: AudioLocation) -> Iterator[bytes]:
        """The recording's bytes, streamed from where the event says they are."""
        ...
