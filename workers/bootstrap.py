"""One place that wires callvault together; nothing is connected at import time."""

from __future__ import annotations

from dataclasses import dataclass

from .adapters.crypto import Signer
from .adapters.fetch import AudioFetcher
from .adapters.kafka import KafkaBus
from .adapters.postgres import PostgresStore
from .adapters.postgres_console import subject_history
from .adapters.s3 import S3Store
from .codec import Codec
from .metrics import Metrics
from .pipeline import OutboxRelay, Pipeline
from .services.context import Context
from .services.dsr import DsrService
from .services.export import ExportService
from .services.holds import HoldService
from .services.ingest import IngestService
from .services.purge import PurgeService
from .services.retention import RetentionScheduler
from .settings import Settings


@dataclass
class Container:
    settings: Settings
    ctx: Context
    store: PostgresStore
    objects: S3Store
    codec: Codec
    ingest: IngestService
    purge: PurgeService
    holds: HoldService
    export: ExportService
    dsr: DsrService
    scheduler: RetentionScheduler
    _bus: KafkaBus | None = None

    @property
    def bus(self) -> KafkaBus:
        """The Kafka producer, connected on first use (CLI commands that only read the
        database never need a broker)."""
        if self._bus is None:
            self._bus = KafkaBus(self.settings.kafka_bootstrap, f"{self.settings.app_id}-producer")
        return self._bus

    @property
    def pipeline(self) -> Pipeline:
        return Pipeline(
            self.ctx, self.codec, self.bus, self.ingest, self.purge, self.holds, self.dsr
        )

    @property
    def relay(self) -> OutboxRelay:
        return OutboxRelay(self.ctx, self.bus)

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()
        self.store.close()


def object_store(settings: Settings) -> S3Store:
    return S3Store(
        settings.s3_endpoint,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        settings.s3_region,
    )


def bootstrap(settings: Settings, metrics: Metrics | None = None) -> Container:
    store = PostgresStore(
        settings.database_url.get_secret_value(),
        max_size=settings.db_pool_size,
        timeout=settings.db_timeout.as_timedelta().total_seconds(),
    )
    store.open()
    objects = object_store(settings)
    ctx = Context(
        settings=settings,
        store=store,
        objects=objects,
        metrics=metrics or Metrics(),
        signer=Signer(settings.key("signing_key"), settings.signing_key_id),
    )
    fetcher = AudioFetcher(
        objects,
        fetch_root=settings.fetch_root,
        timeout_seconds=settings.fetch_timeout.as_timedelta().total_seconds(),
    )
    purge = PurgeService(ctx)
    history = subject_history(store)  # console: exports list recipients and consultations
    export = ExportService(ctx, history)
    return Container(
        settings=settings,
        ctx=ctx,
        store=store,
        objects=objects,
        codec=Codec(),
        ingest=IngestService(ctx, fetcher),
        purge=purge,
        holds=HoldService(ctx),
        export=export,
        dsr=DsrService(ctx, purge, export, history),
        scheduler=RetentionScheduler(ctx),
    )
