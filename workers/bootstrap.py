"""The one composition root. The worker, ``serve``, the connectors, every CLI command, the demo,
the benchmarks and the tests build callvault here; tests pass fakes. Nothing else constructs an
adapter. Nothing connects at import time, and a command builds only what it uses: the telephony
team's ``callvault publish`` needs Kafka and the landing bucket, never the database or
callvault's keys.

``bootstrap(settings, uow=..., objects=..., bus=..., keys=..., clock=...)`` returns an
:class:`App`; every override is typed by its port, so mypy checks what a test passes in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from .adapters.fetch import AudioFetcher
from .adapters.kafka import codec
from .adapters.kafka.bus import DeadLetter, KafkaBus, read_topic
from .adapters.kafka.codec import Codec
from .adapters.kafka.lag import ConsumerLag, LagProbe, PendingHoldCommands
from .adapters.kafka.security import KafkaSecurity, kafka_security
from .adapters.kafka.watch import TopicWatch
from .adapters.keys import KeyRing, key_ring
from .adapters.metrics import Metrics
from .adapters.pdf import WeasyTypesetter
from .adapters.postgres import PostgresDatabase
from .adapters.postgres.backfill import backfill
from .adapters.postgres.console import console_reads
from .adapters.postgres.migrate import MigrationReport, migrate, migrate_schema
from .adapters.postgres.schema import expected_migrations
from .adapters.postgres.wakeups import PostgresWakeups
from .adapters.probes import KafkaCheck, Readiness, bucket_check, database_check
from .adapters.s3 import S3Store
from .app.background import Dispatcher, Relay
from .app.console.history import SubjectHistory
from .app.context import Context, utc_now
from .app.handlers import (
    audit,
    exports,
    holds,
    ingest,
    keys,
    purge,
    requests,
    retention,
)
from .app.letters import LetterWriter
from .app.messagebus import Envelope, Handler, MessageBus, Middleware
from .app.middleware import CountOutcomes, DeadLetters, Retry, log_context
from .app.ports.audio import AudioSource
from .app.ports.bus import EventBus
from .app.ports.console import AccessHistory, Renditions
from .app.ports.hold_commands import HoldCommands
from .app.ports.keys import Keys
from .app.ports.letters import Typesetter
from .app.ports.objects import ObjectStorage
from .app.ports.unit_of_work import Database
from .app.ports.wakeups import Wakeups
from .app.retry import RetryPolicy
from .domain import messages as m
from .domain.errors import ConfigError
from .entrypoints.inputs import Inputs
from .settings import Settings

log = structlog.get_logger("callvault.bootstrap")

if TYPE_CHECKING:
    from datetime import tzinfo

    from .adapters.connectors.asterisk import Direction, SpoolWatcher
    from .adapters.connectors.freeswitch import EslWatcher
    from .adapters.connectors.provider_copies import ProviderCopies
    from .adapters.connectors.publisher import LandingStore, Publisher
    from .adapters.connectors.rtpengine import RtpengineSpool
    from .adapters.connectors.settings import ConnectorSettings
    from .adapters.connectors.webhooks import WebhookConfig
    from .app.console.accounts import Accounts
    from .app.console.service import Console, ConsoleReads

Clock = Callable[[], datetime]


class App:
    """callvault's parts for one process, each built on first use from the settings unless
    given to :func:`bootstrap`. :meth:`close` closes what was built here."""

    def __init__(
        self,
        settings: Settings,
        *,
        uow: Database | None = None,
        objects: ObjectStorage | None = None,
        bus: EventBus | None = None,
        keys: Keys | None = None,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        fetcher: AudioSource | None = None,
        console_reads: ConsoleReads | None = None,
        typesetter: Typesetter | None = None,
        renditions: Renditions | None = None,
        wakeups: Wakeups | None = None,
        hold_commands: HoldCommands | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or utc_now
        self.metrics = metrics or Metrics()
        given = {
            "database": uow,
            "objects": objects,
            "bus": bus,
            "keys": keys,
            "retry": retry,
            "fetcher": fetcher,
            "console_reads": console_reads,
            "typesetter": typesetter,
            "renditions": renditions,
            "wakeups": wakeups,
            "hold_commands": hold_commands,
        }
        # a given part takes the place of the cached property that would build it
        self.__dict__.update({name: part for name, part in given.items() if part is not None})
        self._given = {name for name, part in given.items() if part is not None}

    # adapters --------------------------------------------------------------------------------
    @cached_property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.settings.retry_budget.as_timedelta().total_seconds())

    @cached_property
    def keys(self) -> Keys:
        return self._ring

    @cached_property
    def _ring(self) -> KeyRing:
        """The key ring the settings describe (or the one given): PostgreSQL seals hold texts
        with its sealer."""
        given = self.__dict__.get("keys")
        if isinstance(given, KeyRing):
            return given
        if given is not None:
            raise ConfigError("this part needs a key ring, and other keys were given")
        return key_ring(self.settings)

    @cached_property
    def database(self) -> Database:
        """The unit-of-work factory, with the outbox and follow-up queue of the same database."""
        return self._postgres

    @cached_property
    def _postgres(self) -> PostgresDatabase:
        if "database" in self._given:
            raise ConfigError("this part needs PostgreSQL, and a fake database was given")
        s = self.settings
        db = database(
            s.dsn,
            self._ring,
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
    def wakeups(self) -> Wakeups:
        """Word of each commit that wrote outbox or follow-up rows: one listening connection,
        as the application role, opened when the first loop subscribes."""
        if "database" in self._given:
            raise ConfigError(
                "this part needs PostgreSQL's wake-ups, and a fake database was given"
            )
        s = self.settings
        return PostgresWakeups(
            s.dsn, connect_timeout=s.connect_timeout.as_timedelta().total_seconds()
        )

    @cached_property
    def hold_commands(self) -> HoldCommands:
        """How many hold commands no worker has applied yet: the consumer group's lag on the
        holds topic (a purge waits for them)."""
        if "bus" in self._given:
            raise ConfigError("this part needs Kafka's hold commands, and a fake bus was given")
        s = self.settings
        return PendingHoldCommands(
            s.kafka, s.app_id, s.topic_holds_commands, security=self.kafka_security
        )

    @cached_property
    def objects(self) -> ObjectStorage:
        return self._s3

    @cached_property
    def _s3(self) -> S3Store:
        return object_store(self.settings, self.retry)

    @cached_property
    def bus(self) -> EventBus:
        """The Kafka producer, connected on first use."""
        return KafkaBus(
            self.settings.kafka, f"{self.settings.app_id}-producer", self.kafka_security
        )

    @cached_property
    def kafka_security(self) -> KafkaSecurity:
        """How every Kafka client of this process connects (``CALLVAULT_KAFKA_*``)."""
        return kafka_security(self.settings)

    @cached_property
    def fetcher(self) -> AudioSource:
        s = self.settings
        return AudioFetcher(
            self.objects,
            fetch_root=s.fetch_root,
            timeout_seconds=s.fetch_timeout.as_timedelta().total_seconds(),
            allowed_networks=s.fetch_allowed_networks,
        )

    @cached_property
    def console_reads(self) -> ConsoleReads:
        """The console's read models and sign-in tallies."""
        return console_reads(self._postgres)

    def read_dead_letters(self, timeout_ms: int = 1500) -> list[DeadLetter]:
        """Every record still retained on the dead-letter topic."""
        s = self.settings
        return read_topic(s.kafka, s.topic_deadletter, timeout_ms, self.kafka_security)

    @contextmanager
    def lag_probe(self) -> Iterator[LagProbe]:
        """Consumer lag of this installation's consumer group, closed after use."""
        probe = LagProbe(self.settings.kafka, self.settings.app_id, self.kafka_security)
        try:
            yield probe
        finally:
            probe.close()

    def consumer_lag(self, topics: list[str]) -> ConsumerLag:
        """The worker's consumer-lag gauge over these input topics."""
        s = self.settings
        return ConsumerLag(s.kafka, s.app_id, topics, self.metrics, security=self.kafka_security)

    def topic_watch(self, logical: tuple[str, ...]) -> TopicWatch:
        """A reader of these output topics (the demo's tour)."""
        topics = self.settings.topics()
        return TopicWatch(self.settings.kafka, {topics[n]: n for n in logical}, self.kafka_security)

    def migrate(self, *, apply_policy: bool = True) -> MigrationReport:
        """Schema, buckets and topics up to date; data of earlier versions brought to today's
        form; keys registered; the retention policy in force (see ``adapters.postgres.migrate``)."""
        return migrate(
            self.settings,
            self._s3,
            self.kafka_security,
            then=lambda: self._settle(apply_policy),
            online=apply_policy,
        )

    def migrate_schema(self) -> list[str]:
        """The database schema alone up to date (``serve`` and the account commands, which
        need no buckets or topics); returns the migrations applied."""
        return migrate_schema(self.settings)[0]

    def _settle(self, apply_policy: bool) -> tuple[str, list[str]]:
        backfill(self._postgres, self.keys.hasher)
        return retention.register_keys_and_policy(self.ctx, apply_policy)

    def readiness(
        self, *, kafka: bool = True, conditions: dict[str, Callable[[], bool]] | None = None
    ) -> Readiness:
        """What ``/readyz`` checks (not started): PostgreSQL, the vault bucket, the PKCS#11
        token when the keys are in one and, unless ``kafka`` is false, Kafka - each over this
        process's own settings."""
        s = self.settings
        checks: dict[str, Callable[[], object]] = {
            "postgresql": database_check(self._postgres),
            "s3": bucket_check(self.objects, s.vault_bucket),
        }
        if s.keys_backend == "pkcs11":
            checks["pkcs11"] = partial(self._ring.hasher.macs, [b"callvault readiness"])
        if kafka:
            checks["kafka"] = KafkaCheck(s.kafka, self.kafka_security)
        return Readiness(checks, conditions)

    # the application -------------------------------------------------------------------------
    @cached_property
    def history(self) -> AccessHistory | None:
        """Disclosures and consultations of the console, for access exports and Art. 19
        (none over a fake database without the console's read models)."""
        if "database" in self._given and "console_reads" not in self._given:
            return None
        return SubjectHistory(self.console_reads.registers)

    @cached_property
    def typesetter(self) -> Typesetter:
        """Letters as PDF: WeasyPrint, loaded on the first letter."""
        return WeasyTypesetter()

    @cached_property
    def ctx(self) -> Context:
        return Context(
            settings=self.settings,
            uow=self.database.unit_of_work,
            objects=self.objects,
            keys=self.keys,
            metrics=self.metrics,
            retry=self.retry,
            clock=self.clock,
            history=self.history,
            letters=LetterWriter(self.settings, self.typesetter),
            legal_holds=self.objects,
            buckets=self.objects,
            hold_commands=self.hold_commands,
        )

    @cached_property
    def dead_letters(self) -> DeadLetters:
        s = self.settings
        encode = partial(codec.record, source=s.source_uri)
        return DeadLetters(
            self.bus, s.topic_deadletter, encode, self.metrics, self.retry, self.clock
        )

    @cached_property
    def messagebus(self) -> MessageBus:
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
            self.messagebus,
            lambda: self.dead_letters,
            self.settings,
            lambda: self.keys.hasher,
            self.metrics,
        )

    @cached_property
    def relay(self) -> Relay:
        return Relay(self.database, self.bus, self.ctx)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        return Dispatcher(self.database, self.messagebus, self.ctx)

    @cached_property
    def renditions(self) -> Renditions:
        """What the console's player sends for formats browsers cannot play (PyAV, loaded on
        the first rendition)."""
        from .adapters.rendition import PyavRenditions

        return PyavRenditions()

    @cached_property
    def console(self) -> Console:
        """The console's use cases over this process's database, store and keys; Kafka only
        for the requests the DPO registers."""
        from .adapters.console_outbound import BusRequests
        from .app.console.service import console

        s = self.settings
        requests = BusRequests(lambda: self.bus, s.topic_dsr_requests, s.source_uri)
        return console(
            self.ctx, self.console_reads, requests, keys=self.keys, renditions=self.renditions
        )

    @cached_property
    def accounts(self) -> Accounts:
        """The console's staff accounts alone (the ``user`` and ``token`` commands)."""
        from .app.console.service import staff_accounts

        return staff_accounts(self.ctx, self.console_reads.tallies, keys=self.keys)

    def close(self) -> None:
        for name in ("wakeups", "hold_commands", "bus", "_postgres"):
            if name in self.__dict__ and name not in self._given:
                self.__dict__[name].close()


class _LazyDeadLetters:
    """Dead-lettering needs a Kafka producer only when a Kafka input fails for good."""

    def __init__(self, resolve: Callable[[], DeadLetters]) -> None:
        self.resolve = resolve

    def __call__(self, envelope: Envelope, call_next: Callable[[Envelope], str]) -> str:
        if envelope.delivery is None:
            return call_next(envelope)
        return self.resolve()(envelope, call_next)


def handlers(ctx: Context, fetcher: AudioSource) -> dict[type[m.Command], Handler]:
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


def database(
    dsn: str,
    keys: KeyRing,
    *,
    source: str,
    clock: Clock = utc_now,
    max_size: int = 4,
    timeout: float = 30,
) -> PostgresDatabase:
    """callvault's PostgreSQL at ``dsn``, not yet opened nor checked (:class:`App` does both):
    staff's free text in its rows sealed under ``keys``."""
    return PostgresDatabase(
        dsn, sealer=keys.sealer, source=source, clock=clock, max_size=max_size, timeout=timeout
    )


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
    uow: Database | None = None,
    objects: ObjectStorage | None = None,
    bus: EventBus | None = None,
    keys: Keys | None = None,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    retry: RetryPolicy | None = None,
    fetcher: AudioSource | None = None,
    console_reads: ConsoleReads | None = None,
    typesetter: Typesetter | None = None,
    renditions: Renditions | None = None,
    wakeups: Wakeups | None = None,
    hold_commands: HoldCommands | None = None,
) -> App:
    """callvault for one process; every part not given is built from ``settings`` on first
    use (``uow``: the database - unit of work, outbox, follow-ups; ``bus``: Kafka;
    ``wakeups``: word of its commits, given with a fake ``uow``; ``hold_commands``: those
    still pending, given with a fake ``bus``)."""
    return App(
        settings,
        uow=uow,
        objects=objects,
        bus=bus,
        keys=keys,
        clock=clock,
        metrics=metrics,
        retry=retry,
        fetcher=fetcher,
        console_reads=console_reads,
        typesetter=typesetter,
        renditions=renditions,
        wakeups=wakeups,
        hold_commands=hold_commands,
    )


def connector(
    settings: ConnectorSettings,
    system: str,
    state_dir: Path | None = None,
    *,
    objects: LandingStore | None = None,
    bus: Callable[[], EventBus] | None = None,
) -> Publisher:
    """A telephony connector's publisher: the landing bucket and Kafka, nothing else - with
    its backlog (``state_dir``) and metrics."""
    from .adapters.connectors.backlog import Backlog
    from .adapters.connectors.metrics import ConnectorMetrics
    from .adapters.connectors.publisher import Publisher

    metrics = ConnectorMetrics(system)
    landing = objects or S3Store(
        settings.s3_endpoint,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        settings.s3_region,
        ca_bundle=str(settings.s3_ca_bundle) if settings.s3_ca_bundle else None,
    )

    def kafka() -> EventBus:
        return KafkaBus(
            settings.kafka_bootstrap,
            f"callvault-connector-{system}",
            kafka_security(settings),
        )

    backlog = Backlog(state_dir or settings.connector_state_dir / system)
    return Publisher(settings, backlog, metrics, objects=landing, bus=bus or kafka, codec=Codec())


def asterisk_spool(
    root: Path,
    publisher: Publisher,
    *,
    pbx_id: str,
    zone: tzinfo,
    other_kinds: Direction | None,
    notice_played: bool,
    settle_seconds: float,
) -> SpoolWatcher:
    """The watcher of a FreePBX/Asterisk monitor spool, sending through ``publisher``."""
    import time

    from .adapters.connectors.asterisk import SpoolWatcher

    return SpoolWatcher(
        root,
        publisher,
        publisher.metrics,
        pbx_id=pbx_id,
        zone=zone,
        other_kinds=other_kinds,
        notice_played=notice_played,
        settle_seconds=settle_seconds,
        clock=time.time,
    )


def freeswitch_events(
    publisher: Publisher,
    *,
    host: str,
    port: int,
    password: str,
    pbx_id: str,
    recordings_dir: Path,
    notice_played: bool,
) -> EslWatcher:
    """The follower of FreeSWITCH's event socket, sending through ``publisher``."""
    from .adapters.connectors.freeswitch import EslWatcher

    return EslWatcher(
        publisher,
        publisher.metrics,
        host=host,
        port=port,
        password=password,
        pbx_id=pbx_id,
        recordings_dir=recordings_dir,
        notice_played=notice_played,
    )


def rtpengine_spool(
    recording_dir: Path, publisher: Publisher, *, pbx_id: str, notice_played: bool
) -> RtpengineSpool:
    """The watcher of rtpengine's recording directory, sending through ``publisher``."""
    from .adapters.connectors.rtpengine import RtpengineSpool

    return RtpengineSpool(
        recording_dir, publisher, publisher.metrics, pbx_id=pbx_id, notice_played=notice_played
    )


def provider_copies(config: WebhookConfig, publisher: Publisher) -> ProviderCopies:
    """The deleter of the copies the telephony providers keep of what the webhooks sent."""
    from .adapters.connectors.provider_copies import HttpProviderApi, ProviderCopies

    api = HttpProviderApi(config.accounts())
    return ProviderCopies(publisher.backlog, api, publisher.metrics)


__all__ = [
    "App",
    "asterisk_spool",
    "bootstrap",
    "connector",
    "database",
    "freeswitch_events",
    "object_store",
    "provider_copies",
    "rtpengine_spool",
]
