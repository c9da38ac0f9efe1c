"""What a connector needs to know, and nothing more: where Kafka and the landing bucket are.

Read from the same ``CALLVAULT_*`` variables as callvault itself, so one ``stack.env`` serves
both; a telephony host sets only these (no database URL, no keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ...domain.errors import ConfigError
from ...settings import KafkaClientSettings

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


class WebhookSettings(BaseSettings):
    """The cloud providers' secrets, from ``CALLVAULT_TWILIO_*``, ``CALLVAULT_TELNYX_*`` and
    ``CALLVAULT_VONAGE_*``; a provider left unset gets no route."""

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

    def allowed_hosts(self) -> tuple[str, ...]:
        return tuple(h.strip() for h in self.webhook_allowed_hosts.split(",") if h.strip())
