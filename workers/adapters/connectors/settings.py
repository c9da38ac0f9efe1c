"""What a connector needs to know, and nothing more: where Kafka and the landing bucket are.

Read from the same ``CALLVAULT_*`` variables as callvault itself, so one ``stack.env`` serves
both; a telephony host sets only these (no database URL, no keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from ...domain.errors import ConfigError
from ...settings import KafkaClientSettings, SecretFileSettings

PREFIX = "CALLVAULT_"


class ConnectorSettings(KafkaClientSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, case_sensitive=False, frozen=True, extra="ignore"
    )

    kafka_bootstrap: str
    topic_calls_ended: str = "calls.ended"
    s3_endpoint: str
    s3_access_key: SecretStr
    s3_secret_key: SecretStr
    s3_region: str = "eu-central-1"
    s3_ca_bundle: Path | None = None  # PEM; for an https endpoint with a private CA
    landing_bucket: str
    source_uri: str = "urn:callvault:connector"
    tenant: str | None = None  # the tenant every call of this connector belongs to
    connector_state_dir: Path = Path("/var/lib/callvault/connectors")
    connector_backlog_max: int = Field(1000, gt=0)  # calls waiting for Kafka or S3, at most
    metrics_addr: str = "127.0.0.1"
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


def load_connector_settings(**overrides: Any) -> ConnectorSettings:
    """Settings from the environment; a :class:`ConfigError` names every bad variable."""
    try:
        return ConnectorSettings(**overrides)
    except ValidationError as exc:
        problems = [
            f"{PREFIX}{'_'.join(str(p) for p in e['loc']).upper()}: "
            f"{'missing' if e['type'] == 'missing' else e['msg']}"
            for e in exc.errors()
        ]
        raise ConfigError("invalid connector settings - " + "; ".join(problems)) from None


class WebhookSettings(SecretFileSettings):
    """The cloud providers' secrets, from ``CALLVAULT_TWILIO_*``, ``CALLVAULT_TELNYX_*`` and
    ``CALLVAULT_VONAGE_*`` (each secret also as ``…_FILE``); a provider left unset gets no
    route. ``WEBHOOK_KAFKA_*`` and ``WEBHOOK_S3_*``: the telephony system's own Kafka principal
    and S3 user, under which ``callvault serve`` publishes what the webhooks it mounts receive -
    never the console's (``callvault connect webhooks`` runs them apart, with the connector
    settings of its own process)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, case_sensitive=False, frozen=True, extra="ignore"
    )

    webhook_public_base_url: str | None = None
    webhook_allowed_hosts: str = "api.twilio.com,api.telnyx.com,api.nexmo.com,api.vonage.com"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    telnyx_public_key: str | None = None
    vonage_signature_secret: SecretStr | None = None
    vonage_application_id: str | None = None
    vonage_private_key_file: Path | None = None
    telnyx_api_key: SecretStr | None = None
    # delete each recording at the provider once Kafka has its call (retention and erasure
    # cannot reach a copy the provider keeps)
    webhook_delete_provider_copies: bool = True
    twilio_api_url: str = "https://api.twilio.com"
    telnyx_api_url: str = "https://api.telnyx.com"
    vonage_api_url: str = "https://api.nexmo.com"
    webhook_kafka_sasl_username: str | None = None
    webhook_kafka_sasl_password: SecretStr | None = None
    webhook_s3_access_key: SecretStr | None = None
    webhook_s3_secret_key: SecretStr | None = None

    def mounted_credentials(self, console: KafkaClientSettings) -> dict[str, Any]:
        """Connector settings that make the webhooks mounted by ``serve`` publish as the
        telephony principal. A console that authenticates to Kafka (SASL) may not lend them its
        own principal, which may write holds only: a :class:`ConfigError` says what to set."""
        found: dict[str, Any] = {}
        if self.webhook_s3_access_key is not None and self.webhook_s3_secret_key is not None:
            found.update(s3_access_key=self.webhook_s3_access_key)
            found.update(s3_secret_key=self.webhook_s3_secret_key)
        user = self.webhook_kafka_sasl_username
        if user is None and console.kafka_sasl_username is None:
            return found  # no SASL (a local PLAINTEXT broker): no principal to tell apart
        if user is None or self.webhook_kafka_sasl_password is None:
            raise ConfigError(
                "invalid settings - callvault serve mounts the webhooks under the telephony "
                "principal only: set CALLVAULT_WEBHOOK_KAFKA_SASL_USERNAME and "
                "CALLVAULT_WEBHOOK_KAFKA_SASL_PASSWORD (or _FILE), or run them apart with "
                "`callvault connect webhooks`"
            )
        if user == console.kafka_sasl_username:
            raise ConfigError(
                "invalid settings - CALLVAULT_WEBHOOK_KAFKA_SASL_USERNAME is the console's own "
                "principal: the webhooks publish calls as the telephony principal"
            )
        return found | {
            "kafka_sasl_username": user,
            "kafka_sasl_password": self.webhook_kafka_sasl_password,
        }

    def allowed_hosts(self) -> tuple[str, ...]:
        return tuple(h.strip() for h in self.webhook_allowed_hosts.split(",") if h.strip())
