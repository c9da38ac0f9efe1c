"""The one settings object, read from ``CALLVAULT_*`` environment variables and validated at
start-up: a missing or bad value stops the process with a message naming the variable."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .domain.calendar import DEFAULT_TIMEZONE, LocalCalendar, Localities, zone
from .domain.errors import ConfigError
from .domain.notice import VDAI, Authority, Controller
from .domain.retention import IsoDuration, RetentionPolicy
from .domain.text import N_

PREFIX = "CALLVAULT_"

CommaList = Annotated[tuple[str, ...], NoDecode]
Duration = Annotated[IsoDuration, NoDecode]

# The notice's statements (in the catalogues: a page shows the defaults in its reader's
# language; a text set by CALLVAULT_NOTICE_* is shown as written).
NOTICE_PURPOSES = N_(
    "to give you good customer service; to record and keep evidence of customers' requests "
    "and complaints about orders, their fulfilment and consultations given by veterinarians, "
    "so that they can be assessed and handled later; to train new and current staff who serve "
    "the e-shop's customers by phone, and to find out what internal training is needed"
)
NOTICE_LEGAL_BASIS = N_(
    "the controller's legitimate interest (i) to ensure and prove good customer service, "
    "(ii) to train new and current staff, (iii) to record and keep evidence for assessing and "
    "handling customers' requests and complaints (GDPR, Regulation (EU) 2016/679, Art. 6(1)(f))"
)
NOTICE_RECIPIENTS = N_(
    "telecommunication service providers (installing, servicing and maintaining the call "
    "system, investigating incidents, link quality); state and law-enforcement institutions "
    "for their investigations; parties to incidents under investigation. No transfer outside "
    "the European Economic Area"
)
NOTICE_CATEGORIES = N_(
    "the personal data you give in the call, including but not limited to your first name, "
    "surname, phone number and e-mail address; the data of your orders in the e-shop (order "
    "date and number, the names and quantities of the goods, the amount payable, the payment "
    "method); any other information you choose to give us during the recorded call"
)
NOTICE_SOURCE = N_("the phone call itself and the order data of the e-shop linked to it")
NOTICE_RIGHTS = N_(
    "access, rectification, erasure, restriction of processing, objection (Art. 21) and data "
    "portability; complaint to the State Data Protection Inspectorate (Vilnius)"
)


class SecretFiles(PydanticBaseSettingsSource):
    """Secret settings read from files: ``CALLVAULT_<NAME>_FILE=/run/secrets/name`` gives
    ``CALLVAULT_<NAME>`` (the file's content without its final newline), so a key never has to
    sit in an environment variable, an env file or a process list. Setting both is an error."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # values come from __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            if not _is_secret(info):
                continue
            variable = PREFIX + name.upper()
            path = _environ(variable + "_FILE")
            if path is None:
                continue
            if _environ(variable) is not None:
                raise ConfigError(f"invalid settings - set {variable} or {variable}_FILE, not both")
            try:
                values[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"invalid settings - {variable}_FILE: cannot read it ({exc.strerror})"
                ) from None
        return values


def _is_secret(info: FieldInfo) -> bool:
    return "SecretStr" in repr(info.annotation)


def _environ(name: str) -> str | None:
    """An environment variable, its name compared case-insensitively (as pydantic-settings)."""
    found = os.environ.get(name)
    if found is not None:
        return found
    wanted = name.casefold()
    return next((v for k, v in os.environ.items() if k.casefold() == wanted), None)


class SecretFileSettings(BaseSettings):
    """Adds :class:`SecretFiles` after the environment (an explicit value still wins)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, SecretFiles(settings_cls))


KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaClientSettings(SecretFileSettings):
    """How every Kafka client of callvault and of its connectors connects: TLS (a CA file,
    optionally a client certificate and key) and SASL (PLAIN or SCRAM). One function,
    :func:`workers.adapters.kafka.kafka_security`, turns these into client options."""

    kafka_security_protocol: KafkaProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ca_file: Path | None = None  # PEM; unset: the system's trusted CAs
    kafka_cert_file: Path | None = None  # client certificate (PEM), for mutual TLS
    kafka_key_file: Path | None = None  # its private key (PEM)
    kafka_key_password: SecretStr | None = None
    kafka_check_hostname: bool = True
    # how long a client waits to reach Kafka, PostgreSQL or the object store when it starts
    # (the CLI waits PT5S unless this is set: a command should say at once that one is away)
    connect_timeout: Duration = IsoDuration.parse("PT30S")

    @field_validator("connect_timeout", mode="before")
    @classmethod
    def _connect_timeout(cls, value: Any) -> IsoDuration:
        duration = value if isinstance(value, IsoDuration) else IsoDuration.parse(str(value))
        if duration.months or not duration.as_timedelta().total_seconds() > 0:
            raise ValueError("must be a positive duration without months, e.g. PT30S")
        return duration


class Settings(KafkaClientSettings):
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
    # The public half of SIGNING_KEY_ID's key (base64), for a process that never signs - the
    # web console: with it instead of CALLVAULT_SIGNING_KEY the process checks that it belongs
    # to the key on record, and refuses to sign.
    signing_public_key: str | None = None
    master_key_id: str = Field("m1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    # Several master keys at once while data keys are re-wrapped (`callvault keys rotate`):
    # ID=BASE64,... ; CALLVAULT_MASTER_KEY is the key of CALLVAULT_MASTER_KEY_ID.
    master_keys: SecretStr | None = None
    # Hash keys replaced by `callvault keys rehash`, kept for a grace period only to recognise
    # repeats of calls purged or discarded before the rotation (BASE64,...).
    hash_keys_retired: SecretStr | None = None
    # Public keys of retired signing keys (KEY_ID=BASE64,...): still published, so that
    # certificates signed before a rotation verify.
    signing_public_keys_retired: CommaList = ()
    # Where the keys live (docs/keys.md): `local` - the settings above, in this process;
    # `pkcs11` - non-extractable objects in a PKCS#11 token (an HSM), named by their labels.
    keys_backend: Literal["local", "pkcs11"] = "local"
    pkcs11_module: Path | None = None  # the token's PKCS#11 library
    pkcs11_token_label: str | None = None
    pkcs11_token_serial: str | None = None  # when several tokens share the label
    pkcs11_pin_file: Path | None = None  # the user PIN, in a file only
    pkcs11_master_label: str = "callvault-master-"  # + the master key's id
    pkcs11_hash_label: str = "callvault-hash"
    pkcs11_hash_labels_retired: CommaList = ()  # hash keys replaced by `keys rehash`
    pkcs11_signing_label: str = "callvault-signing"
    # sessions open at once; 0: enough for CALLVAULT_CONCURRENCY (each role's events and the
    # background loops)
    pkcs11_sessions: int = Field(0, ge=0, le=256)
    database_ca_file: Path | None = None  # PEM; set: TLS with sslmode=verify-full
    s3_ca_bundle: Path | None = None  # PEM; for an https endpoint with a private CA
    s3_public_endpoint: str | None = None  # where DSR portals fetch exports (presigned URLs)

    retention: Duration = IsoDuration.parse("P1Y")
    retention_tenants: CommaList = ()
    default_region: str = "LT"
    require_notice: bool = True
    # Off: `callvault migrate` (the one holder of the schema owner's credentials, a one-shot job)
    # prepares the schema, buckets and topics; every other process only checks that it did.
    migrate_on_start: bool = False
    metrics_port: int = Field(9400, ge=0, le=65535)
    metrics_addr: str = "127.0.0.1"  # 0.0.0.0 in a container, so Prometheus can scrape it
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    source_uri: str = "urn:callvault"

    fetch_allowed_hosts: CommaList = ()
    # Loopback, link-local (cloud metadata), unspecified and multicast addresses are refused
    # at connect time unless they lie in one of these networks (CIDR, e.g. 127.0.0.0/8).
    fetch_allowed_networks: CommaList = ()
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

    # who the letters to data subjects name (see workers/domain/notice.py): JSON objects
    controller: Controller = Controller()
    controller_tenants: dict[str, Controller] = Field(default_factory=dict)
    authority: Authority = VDAI
    notice_categories: str = NOTICE_CATEGORIES

    notice_purposes: str = NOTICE_PURPOSES
    notice_legal_basis: str = NOTICE_LEGAL_BASIS
    notice_recipients: str = NOTICE_RECIPIENTS
    notice_source: str = NOTICE_SOURCE
    notice_rights: str = NOTICE_RIGHTS

    # People read in their language and local time: the console, reports and letters.
    language: str = "lt"  # default language (the console: unless the user or browser asks)
    timezone: str = DEFAULT_TIMEZONE  # IANA name
    language_tenants: CommaList = ()  # TENANT=LANGUAGE for tenants whose people differ
    timezone_tenants: CommaList = ()  # TENANT=ZONE, e.g. shop-ee=Europe/Tallinn

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

    @field_validator(
        "retention_tenants",
        "fetch_allowed_hosts",
        "fetch_allowed_networks",
        "signing_public_keys_retired",
        "pkcs11_hash_labels_retired",
        "forwarded_allow_ips",
        "oidc_tenants",
        "language_tenants",
        "timezone_tenants",
        mode="before",
    )
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

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return _language(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("language_tenants", "timezone_tenants")
    @classmethod
    def _per_tenant(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        check = _language if info.field_name == "language_tenants" else zone
        for tenant, setting in _pairs(value, "TENANT=VALUE"):
            if not tenant:
                raise ValueError(f"{tenant}={setting} is not TENANT=VALUE")
            check(setting)
        return value

    @property
    def localities(self) -> Localities:
        """Each tenant's language and time zone."""
        return Localities(
            self.language,
            LocalCalendar.named(self.timezone),
            tuple(_pairs(self.language_tenants, "TENANT=LANGUAGE")),
            tuple(
                (tenant, LocalCalendar.named(name))
                for tenant, name in _pairs(self.timezone_tenants, "TENANT=ZONE")
            ),
        )

    @field_validator("master_key", "hash_key", "signing_key")
    @classmethod
    def _key32(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _decode_key(value.get_secret_value())
        return value

    @field_validator("master_keys")
    @classmethod
    def _master_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _keys_by_id(value.get_secret_value(), "ID=BASE64")
        return value

    @field_validator("hash_keys_retired")
    @classmethod
    def _retired_hash_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            for item in _items(value.get_secret_value()):
                _decode_key(item)
        return value

    @field_validator("signing_public_key")
    @classmethod
    def _public_key(cls, value: str | None) -> str | None:
        if value is not None:
            _keys_by_id(f"current={value}", "BASE64")
        return value

    @field_validator("signing_public_keys_retired")
    @classmethod
    def _retired_public_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _keys_by_id(",".join(value), "KEY_ID=BASE64")
        return value

    @field_validator("fetch_allowed_networks", "forwarded_allow_ips")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a network (CIDR such as 127.0.0.0/8)") from None
        return value

    @field_validator("export_ttl")
    @classmethod
    def _export_ttl(cls, value: IsoDuration) -> IsoDuration:
        if value.months or value.as_timedelta().total_seconds() > 7 * 86400:
            raise ValueError("presigned exports can live at most 7 days (P7D)")
        return value

    @field_validator("s3_endpoint", "s3_public_endpoint")
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

    def controller_of(self, tenant: str | None) -> Controller:
        """The controller of a tenant's recordings: its own where it is set, else the default."""
        return self.controller_tenants.get(tenant or "", self.controller)

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
        """The database URL; with ``DATABASE_CA_FILE``, TLS verified against that CA
        (``sslmode=verify-full`` unless the URL chooses another mode)."""
        self.need("database_url")
        assert self.database_url is not None
        url = self.database_url.get_secret_value()
        if self.database_ca_file is None:
            return url
        return _with_tls(url, str(self.database_ca_file))

    @property
    def migration_dsn(self) -> str:
        """Where migrations run: the schema owner when configured (over TLS like DATABASE_URL),
        else DATABASE_URL."""
        if self.database_admin_url is None:
            return self.dsn
        url = self.database_admin_url.get_secret_value()
        return url if self.database_ca_file is None else _with_tls(url, str(self.database_ca_file))

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
        """One key's bytes (``master_key``: the current master key, however it is given)."""
        if name == "master_key":
            return self.current_master_key()
        self.need(name)
        secret: SecretStr = getattr(self, name)
        return base64.b64decode(secret.get_secret_value())

    def need_keys(self) -> None:
        """Stop with a :class:`ConfigError` when the keys' settings are incomplete: the key
        bytes (``local``) or the token's library, label and PIN file (``pkcs11``)."""
        if self.keys_backend == "pkcs11":
            self.need("pkcs11_module", "pkcs11_token_label", "pkcs11_pin_file")
            return
        self.need("hash_key", "signing_key")
        self.master_keys_by_id()

    def master_keys_by_id(self) -> dict[str, bytes]:
        """Every configured master key by id; the current one (``MASTER_KEY_ID``) among them."""
        found = self.software_master_keys()
        if self.master_key_id not in found:
            what = "missing" if not found else f"no key with id {self.master_key_id!r}"
            raise ConfigError(
                f"invalid settings - CALLVAULT_MASTER_KEY: {what} "
                "(or give it in CALLVAULT_MASTER_KEYS as ID=BASE64)"
            )
        return found

    def software_master_keys(self) -> dict[str, bytes]:
        """The master keys given in the settings by id, the current one among them or not (it
        may be in a token)."""
        found = {}
        if self.master_keys is not None:
            found = _keys_by_id(self.master_keys.get_secret_value(), "ID=BASE64")
        if self.master_key is not None:
            key = base64.b64decode(self.master_key.get_secret_value())
            if found.get(self.master_key_id, key) != key:
                raise ConfigError(
                    f"invalid settings - CALLVAULT_MASTER_KEY and CALLVAULT_MASTER_KEYS give "
                    f"different keys for id {self.master_key_id!r}"
                )
            found[self.master_key_id] = key
        return found

    def current_master_key(self) -> bytes:
        return self.master_keys_by_id()[self.master_key_id]

    def retired_hash_keys(self) -> tuple[bytes, ...]:
        if self.hash_keys_retired is None:
            return ()
        return tuple(map(_decode_key, _items(self.hash_keys_retired.get_secret_value())))

    def retired_signing_keys(self) -> dict[str, str]:
        """Key id to the base64 Ed25519 public key of signing keys no longer in use."""
        return {
            key_id.strip(): value.strip()
            for key_id, _, value in (
                item.partition("=") for item in self.signing_public_keys_retired
            )
        }

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
    # The origin browsers see when a reverse proxy fronts the console (https://calls.shop.lt):
    # browser requests that change state must come from it; https makes cookies Secure.
    public_url: str | None = None
    # Reverse proxies whose X-Forwarded-For/-Proto are believed (addresses or CIDR networks);
    # none by default, so a client cannot name its own address to the sign-in throttle.
    forwarded_allow_ips: CommaList = ()
    login_max_failures: int = Field(5, gt=0)  # per user name and address within login_window
    login_window: Duration = IsoDuration.parse("PT15M")
    login_lock_addresses: int = Field(20, gt=1)  # addresses failing for one account in a day
    access_seek_window: Duration = IsoDuration.parse("PT30M")  # seeks within one playback
    oidc_issuer: str | None = None  # OpenID Connect: https://idp.example/realms/shop
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_redirect_url: str | None = None  # https://console.example/oidc/callback
    oidc_role_claim: str = "roles"
    oidc_role_map: CommaList = ()  # claim value=role, e.g. callcentre-qa=qa,privacy=dpo
    oidc_username_claim: str = "preferred_username"
    oidc_tenants: CommaList = ()  # tenants of an account made at its first sign-in ('*': all)

    @field_validator("session_ttl", "login_window", "access_seek_window", mode="before")
    @classmethod
    def _console_duration(cls, value: Any) -> IsoDuration:
        return value if isinstance(value, IsoDuration) else IsoDuration.parse(str(value))

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        """An origin: ``http(s)://host[:port]``, nothing after it (a trailing / is dropped)."""
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or parts.username
        ):
            raise ValueError(f"{value!r} is not an origin such as https://calls.example.lt")
        return f"{parts.scheme}://{parts.netloc.lower()}"

    @property
    def secure_cookies(self) -> bool:
        """Cookies only over HTTPS: asked for, or the public URL is https."""
        return self.cookie_secure or (self.public_url or "").startswith("https://")

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


def _with_tls(dsn: str, ca_file: str) -> str:
    """``dsn`` (a URL or ``key=value`` words) with the CA file and, unless it names one, the
    ``verify-full`` SSL mode (certificate chain and host name checked)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query.setdefault("sslmode", "verify-full")
        query["sslrootcert"] = ca_file
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    words = dsn.split()
    quoted = "'" + ca_file.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if not any(w.startswith("sslmode=") for w in words):
        words.append("sslmode=verify-full")
    return " ".join([*words, f"sslrootcert={quoted}"])


def _language(value: str) -> str:
    from .i18n import LANGUAGES

    if value not in LANGUAGES:
        raise ValueError(f"must be one of {', '.join(LANGUAGES)} (the message catalogues)")
    return value


def _pairs(items: tuple[str, ...], form: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not {form}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _decode_key(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64") from exc
    if len(raw) != 32:
        raise ValueError("must be 32 bytes, base64-encoded (head -c 32 /dev/urandom | base64)")
    return raw


def _keys_by_id(text: str, form: str) -> dict[str, bytes]:
    """``ID=BASE64,...``: 32-byte keys (master keys, Ed25519 public keys) by their ids."""
    found: dict[str, bytes] = {}
    for item in _items(text):
        key_id, sep, value = item.partition("=")
        key_id = key_id.strip()
        if not sep or not key_id:
            raise ValueError(f"an item is not {form}")
        if key_id in found:
            raise ValueError(f"id {key_id!r} given twice")
        found[key_id] = _decode_key(value.strip())
    return found


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
