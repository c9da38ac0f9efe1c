"""Kafka through kafka-python: the producer behind the outbox and the dead-letter topic, topic
administration for ``callvault migrate``, and the consumer-lag probe.

Every client - these, the Faust consumer of ``callvault worker`` and the connectors' publisher -
connects with the options of one :class:`KafkaSecurity`, made by :func:`kafka_security` from
the ``CALLVAULT_KAFKA_*`` settings: TLS with a CA file (and a client certificate), SASL PLAIN or
SCRAM. Every record produced carries the CloudEvents Kafka binding's ``content-type`` header
(structured mode)."""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import AuthorizationError, KafkaError, TopicAlreadyExistsError
from pydantic import SecretStr

from ..domain.errors import AccessRefused, ConfigError, TransientError
from ..domain.events import ORIGINAL_HEADER_PREFIX as ORIGINAL
from ..domain.events import STRUCTURED_HEADER as STRUCTURED
from ..settings import KafkaClientSettings

SEND_TIMEOUT = 30.0
Header = tuple[str, bytes]


@dataclass(frozen=True)
class KafkaSecurity:
    """How to connect: the protocol, a TLS context and SASL credentials (``repr`` shows no
    password)."""

    protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: str | None = None
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for every kafka-python client (producer, consumer, admin)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
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


class KafkaBus:
    """Publishes records and returns only when the broker has acknowledged every one."""

    def __init__(self, bootstrap: str, client_id: str, security: KafkaSecurity = PLAINTEXT) -> None:
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap.split(","),
                client_id=client_id,
                acks="all",
                linger_ms=5,
                enable_idempotence=True,
                request_timeout_ms=15_000,
                **security.options(),
            )
        except (KafkaError, OSError) as exc:
            raise TransientError(f"Kafka unreachable at {bootstrap}: {type(exc).__name__}") from exc

    def publish(
        self,
        records: list[tuple[str, str | None, bytes]],
        headers: list[list[Header]] | None = None,
    ) -> None:
        """Publish ``(topic, key, value)`` records; each carries the structured-mode
        ``content-type`` header, or, when ``headers`` gives a record's own, those."""
        try:
            futures = [
                self._producer.send(
                    topic,
                    key=key.encode() if key is not None else None,
                    value=value,
                    headers=(headers[i] if headers and headers[i] else [STRUCTURED]),
                )
                for i, (topic, key, value) in enumerate(records)
            ]
            self._producer.flush(timeout=SEND_TIMEOUT)
            for future in futures:
                future.get(timeout=SEND_TIMEOUT)
        except AuthorizationError as exc:
            topics = ", ".join(sorted({topic for topic, _, _ in records}))
            raise AccessRefused(
                f"Kafka refused this principal writing to {topics} ({type(exc).__name__}): "
                "see the ACL plan, deploy/kafka/acl-plan.sh"
            ) from exc
        except KafkaError as exc:
            raise TransientError(f"Kafka did not acknowledge: {type(exc).__name__}") from exc

    def close(self) -> None:
        self._producer.close(timeout=5)


def ensure_topics(
    bootstrap: str,
    topics: dict[str, dict[str, str]],
    partitions: int,
    replication: int,
    security: KafkaSecurity = PLAINTEXT,
) -> list[str]:
    """Create the missing topics with their configs; returns the names created."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            client_id="callvault-migrate",
            **security.options(),
        )
    except (KafkaError, OSError) as exc:
        raise TransientError(f"Kafka unreachable at {bootstrap}: {type(exc).__name__}") from exc
    try:
        existing = set(admin.list_topics())
        missing = {
            name: {
                "num_partitions": partitions,
                "replication_factor": replication,
                "configs": configs,
            }
            for name, configs in topics.items()
            if name not in existing
        }
        if missing:
            # Another migrate may create them at the same moment: that is success too.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, wait_for_metadata=True)
        return sorted(missing)
    finally:
        admin.close()


class LagProbe:
    """Consumer lag per topic and partition: end offset minus the group's committed offset
    (Faust has no lag metric; this is what kafka-lag-exporter style dashboards expect)."""

    def __init__(self, bootstrap: str, group: str, security: KafkaSecurity = PLAINTEXT) -> None:
        self._bootstrap = bootstrap.split(",")
        self._group = group
        self._security = security
        self._admin: Any = None
        self._consumer: Any = None

    def measure(self, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        if self._admin is None:
            options = self._security.options()
            self._admin = KafkaAdminClient(
                bootstrap_servers=self._bootstrap, client_id="callvault-lag", **options
            )
            self._consumer = KafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id="callvault-lag",
                enable_auto_commit=False,
                **options,
            )
        wanted = set(topics)
        committed = self._admin.list_group_offsets({self._group: None}).get(self._group, {})
        partitions = [
            TopicPartition(topic, p)
            for topic in wanted
            for p in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        ends = self._consumer.end_offsets(partitions)
        starts = self._consumer.beginning_offsets(partitions)
        lag = {}
        for tp in partitions:
            done = committed.get(tp)
            # Nothing committed yet: everything still retained is waiting.
            offset = done.offset if done is not None and done.offset >= 0 else starts.get(tp, 0)
            lag[(tp.topic, tp.partition)] = max(0, ends.get(tp, 0) - offset)
        return lag

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._consumer.close()


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, as the ops commands show it."""

    partition: int
    offset: int
    data: dict[str, Any]
    headers: tuple[Header, ...] = ()  # the rejected input's own ce_* headers (binary mode)

    def original_headers(self) -> list[Header]:
        """The headers to replay the original record with (binary content mode), if any."""
        return [(k.removeprefix(ORIGINAL), v) for k, v in self.headers if k.startswith(ORIGINAL)]


def read_topic(
    bootstrap: str, topic: str, timeout_ms: int = 1500, security: KafkaSecurity = PLAINTEXT
) -> list[DeadLetter]:
    """Every record still retained on ``topic``, read from the start (no consumer group)."""
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            enable_auto_commit=False,
            consumer_timeout_ms=timeout_ms,
            **security.options(),
        )
    except (KafkaError, OSError) as exc:
        raise TransientError(f"Kafka unreachable at {bootstrap}: {type(exc).__name__}") from exc
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        found = []
        for message in consumer:
            try:
                data = json.loads(message.value).get("data", {})
            except (ValueError, AttributeError):
                data = {}
            headers = tuple((k, bytes(v or b"")) for k, v in message.headers or ())
            found.append(DeadLetter(message.partition, message.offset, data, headers))
        return found
    except KafkaError as exc:
        raise TransientError(f"Kafka did not answer: {type(exc).__name__}") from exc
    finally:
        consumer.close()
