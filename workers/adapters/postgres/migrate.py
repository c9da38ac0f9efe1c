"""``callvault migrate``: database schema, buckets and topics brought up to date, idempotently."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, NoncurrentVersionExpiration, Rule
from yoyo import get_backend, read_migrations

from ...domain.retention import IsoDuration
from ...settings import Settings
from ..kafka.admin import ensure_topics
from ..kafka.security import KafkaSecurity
from ..s3 import S3Store
from .database import translated
from .partitions import partition_tables
from .roles import grant_app_role
from .schema import MIGRATIONS

log = structlog.get_logger("callvault.migrate")

BACKSTOP_MARGIN_DAYS = 30
INPUT_TOPICS = ("calls_ended", "dsr_requests", "holds_commands")  # carry personal data


@dataclass
class MigrationReport:
    migrations_applied: list[str] = field(default_factory=list)
    buckets: dict[str, str] = field(default_factory=dict)
    topics_created: list[str] = field(default_factory=list)
    backstop: str = ""
    policy: str = ""
    app_role: str = ""
    partitions: list[str] = field(default_factory=list)
    keys_registered: list[str] = field(default_factory=list)


def yoyo_url(database_url: str) -> str:
    scheme, sep, rest = database_url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return database_url if sep else f"postgresql+psycopg://{database_url}"


def migrate_database(database_url: str, *, online: bool = False) -> list[str]:
    """Apply the pending migrations, then partition the tables still in one heap (a
    populated one only when ``online``: see :mod:`.partitions`); a database that is away
    (restarting, say, while a worker starts) is a :class:`TransientError`, not a bug."""
    return _migrate_database(database_url, online=online)[0]


def _migrate_database(database_url: str, *, online: bool) -> tuple[list[str], list[str]]:
    with translated():
        backend = get_backend(yoyo_url(database_url))
        migrations = read_migrations(str(MIGRATIONS))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        done = partition_tables(database_url, online=online, log=lambda line: log.info(line))
    return [m.id for m in pending], done


def migrate_schema(settings: Settings, *, online: bool = False) -> tuple[list[str], str]:
    """The schema brought up to date (as its owner when configured), and the grants of the
    workers' role; returns the migrations applied and what the role may do."""
    return _migrate_schema(settings, online=online)[:2]


def _migrate_schema(settings: Settings, *, online: bool) -> tuple[list[str], str, list[str]]:
    applied, partitions = _migrate_database(settings.migration_dsn, online=online)
    if settings.database_admin_url is None:
        single = "single role (set CALLVAULT_DATABASE_ADMIN_URL to split owner and workers)"
        return applied, single, partitions
    with translated():
        return applied, grant_app_role(settings.migration_dsn, settings.dsn), partitions


def ensure_buckets(settings: Settings, objects: S3Store) -> dict[str, str]:
    objects.ensure_bucket(settings.vault_bucket, versioned=True, object_lock=True)
    objects.ensure_bucket(settings.export_bucket, versioned=False, object_lock=False)
    objects.ensure_bucket(settings.landing_bucket, versioned=False, object_lock=False)
    lock = (
        "versioned, object lock"
        if objects.has_object_lock(settings.vault_bucket)
        else "versioned, no object lock (store lacks it)"
    )
    return {
        settings.vault_bucket: lock,
        settings.export_bucket: "plain",
        settings.landing_bucket: "plain",
    }


def longest_policy_days(settings: Settings) -> int:
    policies: list[IsoDuration] = [settings.retention, *(p for _, p in settings.policy.per_tenant)]
    return max(p.months * 31 + p.days + int(p.seconds // 86400) + 1 for p in policies)


def expiry_rules(settings: Settings) -> dict[str, tuple[str, int]]:
    """Bucket -> (prefix, days) of the store-side expiry rules: the vault a margin after the
    longest policy (even a stopped callvault cannot keep audio for ever), exports a day after
    their URL, landing copies a day after their event can no longer arrive."""
    window = settings.late_call_window
    return {
        settings.vault_bucket: (
            "recordings/",
            longest_policy_days(settings) + BACKSTOP_MARGIN_DAYS,
        ),
        settings.export_bucket: ("", settings.export_ttl.as_timedelta().days + 1),
        settings.landing_bucket: ("", window.months * 31 + window.days + 1),
    }


def configure_backstop(settings: Settings, objects: S3Store) -> str:
    """The expiry rules where the store has a lifecycle API; where it has none (versitygw)
    callvault's own sweeper deletes stale landing and export copies, and says so here."""
    applied = []
    for bucket, (prefix, days) in expiry_rules(settings).items():
        rule = Rule(
            ENABLED,
            rule_filter=Filter(prefix=prefix),
            rule_id="callvault-expiry",
            expiration=Expiration(days=days),
            noncurrent_version_expiration=NoncurrentVersionExpiration(noncurrent_days=1),
        )
        try:
            objects.client.set_bucket_lifecycle(bucket, LifecycleConfig([rule]))
        except S3Error as exc:
            return f"skipped: the store refused bucket lifecycle ({exc.code}); callvault sweeps"
        applied.append(f"{bucket} {days} days")
    return "expire: " + ", ".join(applied)


def migrate(
    settings: Settings,
    objects: S3Store,
    security: KafkaSecurity,
    *,
    then: Callable[[], tuple[str, list[str]]],
    online: bool = False,
) -> MigrationReport:
    """Schema, buckets and topics up to date. ``then`` runs once the schema is: it brings data
    of earlier versions to today's form, registers the keys and settles the retention policy
    (``App.migrate``), and returns the policy's state and the keys registered. ``online``
    partitions a populated table too (see :mod:`.partitions`): the explicit `callvault
    migrate` does, a worker's start does not (it would wait for the concurrent index builds)."""
    report = MigrationReport()
    report.migrations_applied, report.app_role, report.partitions = _migrate_schema(
        settings, online=online
    )
    report.policy, report.keys_registered = then()
    report.buckets = ensure_buckets(settings, objects)
    report.backstop = configure_backstop(settings, objects)
    report.topics_created = ensure_topics(
        settings.kafka,
        topic_configs(settings),
        settings.topic_partitions,
        settings.topic_replication,
        security,
    )
    return report


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Input topics and the dead-letter topic hold personal data: their retention is bounded."""

    def ms(duration: IsoDuration) -> str:
        days = duration.months * 31 + duration.days
        return str(
            int((timedelta(days=days) + timedelta(seconds=duration.seconds)).total_seconds() * 1000)
        )

    topics = settings.topics()
    configs = {
        name: {"retention.ms": ms(settings.output_topic_retention)} for name in topics.values()
    }
    for logical in INPUT_TOPICS:
        configs[topics[logical]] = {"retention.ms": ms(settings.input_topic_retention)}
    configs[topics["deadletter"]] = {"retention.ms": ms(settings.deadletter_retention)}
    return configs
