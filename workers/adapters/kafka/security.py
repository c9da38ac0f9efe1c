"""How every Kafka client connects. Every client - the producers, the admin client, the
consumers, the Faust consumer of ``callvault worker`` and the connectors' publisher - connects
with the options of one :class:`KafkaSecurity`, made by :func:`kafka_security` from the
``CALLVAULT_KAFKA_*`` settings: TLS with a CA file (and a client certificate), SASL PLAIN or
SCRAM."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from ...domain.errors import ConfigError
from ...settings import KafkaClientSettings


@dataclass(frozen=True)
class KafkaSecurity:
    """How to connect: the protocol, a TLS context and SASL credentials (``repr`` shows no
    password)."""

    protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: str | None = None
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    bootstrap_timeout_ms: int = 30_000  # how long a client waits to reach a broker at start

    def options(self) -> dict[str, Any]:
        """Keyword arguments for every kafka-python client (producer, consumer, admin)."""
        options: dict[str, Any] = {
            "security_protocol": self.protocol,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
        }
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.sasl_mechanism is not None:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = (
                self.password.get_secret_value() if self.password else None
            )
        return options


PLAINTEXT = KafkaSecurity()


def kafka_security(settings: KafkaClientSettings) -> KafkaSecurity:
    """The one place that turns ``CALLVAULT_KAFKA_*`` settings into connection options, for
    the Faust app, the producers, the admin client, the consumers and the CLI alike."""
    protocol = settings.kafka_security_protocol
    tls = protocol in ("SSL", "SASL_SSL")
    sasl = protocol.startswith("SASL_")
    if not tls and (settings.kafka_ca_file or settings.kafka_cert_file):
        raise ConfigError(
            "invalid settings - CALLVAULT_KAFKA_CA_FILE/_CERT_FILE need "
            "CALLVAULT_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"
        )
    if sasl and (settings.kafka_sasl_username is None or settings.kafka_sasl_password is None):
        raise ConfigError(
            f"invalid settings - CALLVAULT_KAFKA_SASL_USERNAME and CALLVAULT_KAFKA_SASL_PASSWORD "
            f"(or _PASSWORD_FILE) are needed with CALLVAULT_KAFKA_SECURITY_PROTOCOL={protocol}"
        )
    return KafkaSecurity(
        protocol=protocol,
        ssl_context=_tls_context(settings) if tls else None,
        sasl_mechanism=settings.kafka_sasl_mechanism if sasl else None,
        username=settings.kafka_sasl_username if sasl else None,
        password=settings.kafka_sasl_password if sasl else None,
        bootstrap_timeout_ms=int(settings.connect_timeout.as_timedelta().total_seconds() * 1000),
    )


def _tls_context(settings: KafkaClientSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ca_file) if settings.kafka_ca_file else None
        )
        context.check_hostname = settings.kafka_check_hostname
        if settings.kafka_cert_file is not None:
            password = settings.kafka_key_password
            context.load_cert_chain(
                str(settings.kafka_cert_file),
                str(settings.kafka_key_file) if settings.kafka_key_file else None,
                password.get_secret_value() if password else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"invalid settings - CALLVAULT_KAFKA_CA_FILE/_CERT_FILE/_KEY_FILE: "
            f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    return context
