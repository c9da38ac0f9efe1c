"""The one composition root. The worker, the CLI, the demo, the benchmarks and the tests build
callvault here; tests pass fakes. Nothing connects at import time, and a command builds only
what it uses: the telephony team's ``callvault publish`` needs Kafka and the landing bucket,
never the database or callvault's keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, partial
from typing import Any

import structlog

from .adapters.fetch import AudioFetcher
from .adapters.kafka.bus import KafkaBus
from .adapters.kafka.codec import Codec
from .adapters.kafka.security import KafkaSecurity, kafka_security
from .adapters.keys import key_ring
from .adapters.metrics import Metrics
from .adapters.pdf import WeasyTypesetter
from .adapters.postgres import PostgresDatabase
from .adapters.postgres.console import subject_history
from .adapters.postgres.schema import expected_migrations
from .adapters.probes import KafkaCheck, Readiness, bucket_check, database_check
from .adapters.s3 import S3Store
from .app.background import Dispatcher, Relay
from .app.context import Context, utc_now
from .app.handlers import (
    audit,
    exports,
    holds,
    ingest,
    keys,
    purge,
    reconcile,
    requests,
    retention,
)
from .app.letters import LetterWriter
from .app.messagebus import Handler, MessageBus, Middleware
from .app.middleware import CountOutcomes, DeadLetters, Retry, log_context
from .app.retry import RetryPolicy
from .domain import messages as m
from .entrypoints.inputs import Inputs
from .settings import Settings

log = structlog.get_logger("callvault.bootstrap")


@dataclass
class Container:
    """callvault's parts, each built on first use. ``overrides`` replace real adapters."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], datetime] = utc_now
    overrides: dict[str, Any] = field(default_factory=dict)

    # adapters --------------------------------------------------------------------------------
    @cached_property
    def retry(self) -> RetryPolicy:
        if "retry" in self.overrides:
            policy: RetryPolicy = self.overrides["retry"]
            return policy
        return RetryPolicy(self.settings.retry_budget.as_timedelta().total_seconds())

    @cached_property
    def keys(self) -> Any:
        if "keys" in self.overrides:
            return self.overrides["keys"]
        return key_ring(self.settings)

    @cached_property
    def db(self) -> Any:
        if "db" in self.overrides:
            return self.overrides["db"]
        s = self.settings
        db = PostgresDatabase(
            s.dsn,
            sealer=self.keys.sealer,
            source=s.source_uri,
            clock=self.clock,
            max_size=s.db_pool_size,
            timeout=s.db_timeout.as_timedelta().total_seconds(),
        )
        db.open(wait_seconds=s.connect_timeout.as_timedelta().total_seconds())
        try:
            role = db.check_schema(expected_migrations())
        except BaseException:
            db.close()
            raise
        if role.too_powerful:
            log.warning(
                "database_role_too_powerful",
                role=role.role,
                superuser=role.superuser,
                owns_schema=role.owns_schema,
                hint="connect as a role with callvault's grants only; the owner runs "
                "`callvault migrate` (CALLVAULT_DATABASE_ADMIN_URL)",
            )
        return db

    @cached_property
    def objects(self) -> Any:
        if "objects" in self.overrides:
            return self.overrides["objects"]
        return object_store(self.settings, self.retry)

    @cached_property
    def kafka(self) -> Any:
        """The Kafka producer, connected on first use."""
        if "kafka" in self.overrides:
            return self.overrides["kafka"]
        return KafkaBus(
            self.settings.kafka, f"{self.settings.app_id}-producer", self.kafka_security
        )

    @cached_property
    def kafka_security(self) -> KafkaSecurity:
        """How every Kafka client of this process connects (``CALLVAULT_KAFKA_*``)."""
        return kafka_security(self.settings)

    @cached_property
    def fetcher(self) -> Any:
        if "fetcher" in self.overrides:
            return self.overrides["fetcher"]
        s = self.settings
        return AudioFetcher(
            self.objects,
            fetch_root=s.fetch_root,
            timeout_seconds=s.fetch_timeout.as_timedelta().total_seconds(),
            allowed_networks=s.fetch_allowed_networks,
        )

    def readiness(
        self, *, kafka: bool = True, conditions: dict[str, Callable[[], bool]] | None = None
    ) -> Readiness:
        """What ``/readyz`` checks (not started): PostgreSQL, the vault bucket and, unless
        ``kafka`` is false, Kafka - each over this process's own settings."""
        s = self.settings
        checks: dict[str, Callable[[], object]] = {
            "postgresql": database_check(self.db),
            "s3": bucket_check(self.objects, s.vault_bucket),
        }
        if kafka:
            checks["kafka"] = KafkaCheck(s.kafka, self.kafka_security)
        return Readiness(checks, conditions)

    # the application -------------------------------------------------------------------------
    @cached_property
    def history(self) -> Any:
        """Disclosures and consultations of the console, for access exports and Art. 19."""
        if "history" in self.overrides:
            return self.overrides["history"]
        return subject_history(self.db) if isinstance(self.db, PostgresDatabase) else None

    @cached_property
    def typesetter(self) -> Any:
        """Letters as PDF: WeasyPrint, loaded on the first letter."""
        if "typesetter" in self.overrides:
            return self.overrides["typesetter"]
        return WeasyTypesetter()

    @cached_property
    def ctx(self) -> Context:
        return Context(
            settings=self.settings,
            uow=self.db.unit_of_work,
            objects=self.objects,
            keys=self.keys,
            metrics=self.metrics,
            retry=self.retry,
            clock=self.clock,
            history=self.history,
            letters=LetterWriter(self.settings, self.typesetter),
        )

    @cached_property
    def dead_letters(self) -> DeadLetters:
        s = self.settings
        return DeadLetters(
            self.kafka, s.topic_deadletter, s.source_uri, self.metrics, self.retry, self.clock
        )

    @cached_property
    def bus(self) -> MessageBus:
        middleware: list[Middleware] = [
            log_context,
            CountOutcomes(self.metrics, {t: n for n, t in self.settings.topics().items()}),
            _LazyDeadLetters(lambda: self.dead_letters),
            Retry(self.retry),
        ]
        return MessageBus(handlers(self.ctx, self.fetcher), middleware)

    @cached_property
    def inputs(self) -> Inputs:
        return Inputs(
            Codec(),
            self.bus,
            lambda: self.dead_letters,
            self.settings,
            lambda: self.keys.hasher,
            self.metrics,
        )

    @cached_property
    def relay(self) -> Relay:
        return Relay(self.db, self.kafka, self.ctx)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        return Dispatcher(self.db, self.bus, self.ctx)

    def close(self) -> None:
        for name in ("kafka", "db"):
            if name in self.__dict__ and name not in self.overrides:
                self.__dict__[name].close()


@dataclass
class _LazyDeadLetters:
    """Dead-lettering needs a Kafka producer only when a Kafka input fails for good."""

    resolve: Callable[[], DeadLetters]

    def __call__(self, envelope: Any, call_next: Any) -> str:
        if envelope.delivery is None:
            result: str = call_next(envelope)
            return result
        return self.resolve()(envelope, call_next)


def handlers(ctx: Context, fetcher: Any) -> dict[type[m.Command], Handler]:
    def bind(handler: Callable[..., str]) -> Handler:
        return partial(handler, ctx=ctx)

    return {
        m.StoreCall: partial(ingest.store_call, ctx=ctx, source=fetcher),
        m.PurgeRecordings: bind(purge.purge_recordings),
        m.SweepPurgedKeys: bind(purge.sweep_purged_keys),
        m.AnnounceDue: bind(retention.announce_due),
        m.ResumeStalledPurges: bind(retention.resume_stalled_purges),
        m.PlaceHold: bind(holds.place_hold),
        m.ReleaseHold: bind(holds.release_hold),
        m.SyncLegalHolds: bind(holds.sync_legal_holds),
        m.RepairHoldDrift: bind(holds.repair_hold_drift),
        m.CarryOutRequest: bind(requests.carry_out_request),
        m.RejectRequest: bind(requests.reject_request),
        m.ResumeErasures: bind(requests.resume_erasures),
        m.EraseLateRecordings: bind(requests.erase_late_recordings),
        m.ForgetErasedSubjects: bind(requests.forget_erased_subjects),
        m.DeleteExports: bind(exports.delete_exports),
        m.RemoveExpiredExports: bind(exports.remove_expired_exports),
        m.SweepCopies: bind(exports.sweep_copies),
        m.CheckpointAudit: bind(audit.checkpoint_audit),
        m.RewrapDataKeys: bind(keys.rewrap_data_keys),
        m.RetireMasterKeys: bind(keys.retire_master_keys),
        m.RekeyDigests: bind(keys.rekey_digests),
        m.FinishHashRotation: bind(keys.finish_hash_rotation),
    }


def object_store(settings: Settings, retry: RetryPolicy | None = None) -> S3Store:
    endpoint, access_key, secret_key = settings.s3()
    return S3Store(
        endpoint,
        access_key,
        secret_key,
        settings.s3_region,
        retry=retry,
        ca_bundle=str(settings.s3_ca_bundle) if settings.s3_ca_bundle else None,
        public_endpoint=settings.s3_public_endpoint,
    )


def bootstrap(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    clock: Callable[[], datetime] | None = None,
    **overrides: Any,
) -> Container:
    return Container(settings, metrics or Metrics(), clock or utc_now, overrides)


__all__ = ["Container", "bootstrap", "object_store", "reconcile"]
