"""The one settings object, read from ``CALLVAULT_*`` environment variables and validated at
start-up: a missing or bad value stops the process with a message naming the variable."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .domain.errors import ConfigError
from .domain.retention import IsoDuration, RetentionPolicy

PREFIX = "CALLVAULT_"

CommaList = Annotated[tuple[str, ...], NoDecode]
Duration = Annotated[IsoDuration, NoDecode]

NOTICE_PURPOSES = (
    "customer service quality; evidence of customer requests and complaints about orders, "
    "their fulfilment and veterinary consultations; training of customer-service staff"
)
NOTICE_LEGAL_BASIS = "legitimate interest of the controller, GDPR Art. 6(1)(f)"
NOTICE_RECIPIENTS = (
    "telecommunication service providers (installing, servicing and maintaining the call "
    "system, investigating incidents, link quality); state and law-enforcement institutions "
    "for their investigations; parties to incidents under investigation. No transfer outside "
    "the European Economic Area"
)
NOTICE_SOURCE = "the phone call itself and the order data of the e-shop linked to it"
NOTICE_RIGHTS = (
    "access, rectification, erasure, restriction of processing, objection (Art. 21) and data "
    "portability; complaint to the State Data Protection Inspectorate (Vilnius)"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, case_sensitive=False, frozen=True)

    # Each command checks only the settings it uses (see ``need``): the telephony team's
    # `callvault publish` runs with Kafka and the object store alone, never callvault's keys.
    kafka_bootstrap: str | None = None
    database_url: SecretStr | None = None
    # the schema owner, for `callvault migrate` only: the role of DATABASE_URL then gets just
    # what it needs (on audit_log: SELECT and INSERT - no UPDATE, DELETE or TRUNCATE)
    database_admin_url: SecretStr | None = None
    s3_endpoint: str | None = None
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "eu-central-1"
    vault_bucket: str = "callvault-vault"
    export_bucket: str = "callvault-exports"
    landing_bucket: str = "callvault-landing"
    app_id: str = "callvault"
    master_key: SecretStr | None = None
    hash_key: SecretStr | None = None
    signing_key: SecretStr | None = None
    signing_key_id: str = "callvault-1"
    master_key_id: str = Field("m1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")

    retention: Duration = IsoDuration.parse("P1Y")
    retention_tenants: CommaList = ()
    default_region: str = "LT"
    require_notice: bool = True
    migrate_on_start: bool = True
    metrics_port: int = Field(9400, ge=0, le=65535)
    metrics_addr: str = "127.0.0.1"  # 0.0.0.0 in a container, so Prometheus can scrape it
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    source_uri: str = "urn:callvault"

    fetch_allowed_hosts: CommaList = ()
    fetch_root: Path | None = None
    fetch_timeout: Duration = IsoDuration.parse("PT30S")
    max_audio_bytes: int = Field(4 * 1024**3, gt=0)

    export_ttl: Duration = IsoDuration.parse("P7D")
    # how long an objection also erases the person's later calls on arrival (see README)
    objection_memory: Duration = IsoDuration.parse("P1Y")
    scheduler_interval: Duration = IsoDuration.parse("PT1S")
    metrics_interval: Duration = IsoDuration.parse("PT5S")
    reconcile_interval: Duration = IsoDuration.parse("PT10M")
    audit_checkpoint_interval: Duration = IsoDuration.parse("PT1H")
    purge_batch: int = Field(200, gt=0, le=10_000)
    concurrency: int = Field(4, gt=0, le=64)  # events handled at once per agent and worker
    db_pool_size: int = Field(16, gt=1, le=200)
    db_timeout: Duration = IsoDuration.parse("PT10S")  # waiting for a connection from the pool
    retry_budget: Duration = IsoDuration.parse("PT2M")  # how long a transient failure is retried
    topic_partitions: int = Field(3, gt=0)
    topic_replication: int = Field(1, gt=0)
    output_topic_retention: Duration = IsoDuration.parse("P30D")
    input_topic_retention: Duration = IsoDuration.parse("P7D")
    deadletter_retention: Duration = IsoDuration.parse("P30D")

    topic_calls_ended: str = "calls.ended"
    topic_dsr_requests: str = "dsr.requests"
    topic_holds_commands: str = "holds.commands"
    topic_recordings_stored: str = "recordings.stored"
    topic_retention_due: str = "retention.due"
    topic_recordings_purged: str = "recordings.purged"
    topic_dsr_results: str = "dsr.results"
    topic_deadletter: str = "callvault.deadletter"
    topic_audit_checkpoints: str = "callvault.audit"

    notice_purposes: str = NOTICE_PURPOSES
    notice_legal_basis: str = NOTICE_LEGAL_BASIS
    notice_recipients: str = NOTICE_RECIPIENTS
    notice_source: str = NOTICE_SOURCE
    notice_rights: str = NOTICE_RIGHTS

    @field_validator(
        "retention",
        "fetch_timeout",
        "export_ttl",
        "objection_memory",
        "scheduler_interval",
        "metrics_interval",
        "reconcile_interval",
        "audit_checkpoint_interval",
        "db_timeout",
        "retry_budget",
        "input_topic_retention",
        "deadletter_retention",
        "output_topic_retention",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> IsoDuration:
        return value if isinstance(value, IsoDuration) else IsoDuration.parse(str(value))

    @field_validator("retention_tenants", "fetch_allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return tuple(value)

    @field_validator("retention_tenants")
    @classmethod
    def _tenant_policies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            tenant, sep, duration = item.partition("=")
            if not sep or not tenant.strip():
                raise ValueError(f"{item!r} is not TENANT=DURATION")
            IsoDuration.parse(duration)
        return value

    @field_validator("master_key", "hash_key", "signing_key")
    @classmethod
    def _key32(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            raw = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("must be base64") from exc
        if len(raw) != 32:
            raise ValueError("must be 32 bytes, base64-encoded (head -c 32 /dev/urandom | base64)")
        return value

    @field_validator("export_ttl")
    @classmethod
    def _export_ttl(cls, value: IsoDuration) -> IsoDuration:
        if value.months or value.as_timedelta().total_seconds() > 7 * 86400:
            raise ValueError("presigned exports can live at most 7 days (P7D)")
        return value

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def policy(self) -> RetentionPolicy:
        overrides = tuple(
            (tenant.strip(), IsoDuration.parse(duration))
            for tenant, _, duration in (item.partition("=") for item in self.retention_tenants)
        )
        return RetentionPolicy(default=self.retention, per_tenant=overrides)

    @property
    def late_call_window(self) -> IsoDuration:
        """How late a call can still arrive: its event lives this long on the input topic,
        and then as long again on the dead-letter topic, from which it can be replayed."""
        input_, dead = self.input_topic_retention, self.deadletter_retention
        return IsoDuration(
            f"{input_.text}+{dead.text}",
            months=input_.months + dead.months,
            days=input_.days + dead.days,
            seconds=input_.seconds + dead.seconds,
        )

    def need(self, *names: str) -> None:
        """Stop with a :class:`ConfigError` naming every one of these settings that is unset."""
        missing = [PREFIX + n.upper() for n in names if getattr(self, n) is None]
        if missing:
            raise ConfigError(f"invalid settings - {'; '.join(f'{m}: missing' for m in missing)}")

    @property
    def kafka(self) -> str:
        self.need("kafka_bootstrap")
        assert self.kafka_bootstrap is not None
        return self.kafka_bootstrap

    @property
    def dsn(self) -> str:
        self.need("database_url")
        assert self.database_url is not None
        return self.database_url.get_secret_value()

    @property
    def migration_dsn(self) -> str:
        """Where migrations run: the schema owner when configured, else DATABASE_URL."""
        if self.database_admin_url is not None:
            return self.database_admin_url.get_secret_value()
        return self.dsn

    def s3(self) -> tuple[str, str, str]:
        """Endpoint, access key and secret key of the object store."""
        self.need("s3_endpoint", "s3_access_key", "s3_secret_key")
        assert self.s3_endpoint is not None
        assert self.s3_access_key is not None
        assert self.s3_secret_key is not None
        return (
            self.s3_endpoint,
            self.s3_access_key.get_secret_value(),
            self.s3_secret_key.get_secret_value(),
        )

    def key(self, name: Literal["master_key", "hash_key", "signing_key"]) -> bytes:
        self.need(name)
        secret: SecretStr = getattr(self, name)
        return base64.b64decode(secret.get_secret_value())

    def topics(self) -> dict[str, str]:
        """Logical topic name (as in ``TOPIC_<NAME>``) to the Kafka topic."""
        return {
            name.removeprefix("topic_"): value
            for name, value in self.model_dump().items()
            if name.startswith("topic_") and isinstance(value, str)
        }

    # --- console: `callvault serve` (docs/console.md) ------------------------------------
    http_addr: str = "127.0.0.1"  # loopback unless told otherwise
    http_port: int = Field(8080, ge=0, le=65535)
    # Signs session cookies and CSRF tokens; every server behind one load balancer needs the
    # same one. Unset: derived from the master key (so instances sharing it agree).
    session_secret: SecretStr | None = None
    session_ttl: Duration = IsoDuration.parse("PT8H")
    cookie_secure: bool = False  # true behind TLS: cookies only over HTTPS
    login_max_failures: int = Field(5, gt=0)  # per user name within login_window
    login_window: Duration = IsoDuration.parse("PT15M")
    access_seek_window: Duration = IsoDuration.parse("PT30M")  # seeks within one playback
    oidc_issuer: str | None = None  # OpenID Connect: https://idp.example/realms/shop
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_redirect_url: str | None = None  # https://console.example/oidc/callback
    oidc_role_claim: str = "roles"
    oidc_role_map: CommaList = ()  # claim value=role, e.g. callcentre-qa=qa,privacy=dpo
    oidc_username_claim: str = "preferred_username"

    @field_validator("session_ttl", "login_window", "access_seek_window", mode="before")
    @classmethod
    def _console_duration(cls, value: Any) -> IsoDuration:
        return value if isinstance(value, IsoDuration) else IsoDuration.parse(str(value))

    @field_validator("oidc_role_map", mode="before")
    @classmethod
    def _console_role_map(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value)
        pairs = tuple(item.strip() for item in items if item.strip())
        for pair in pairs:
            claim, sep, role = pair.rpartition("=")
            if not sep or not claim or role not in ("qa", "complaints", "dpo", "admin"):
                raise ValueError(f"{pair!r} is not CLAIM_VALUE=ROLE (qa|complaints|dpo|admin)")
        return pairs

    # --- end console ---------------------------------------------------------------------


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment; a :class:`ConfigError` names every bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {'missing' if err['type'] == 'missing' else err['msg']}")
        raise ConfigError("invalid settings - " + "; ".join(problems)) from None
