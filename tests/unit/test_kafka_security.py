"""TLS and SASL to Kafka: one function turns the ``CALLVAULT_KAFKA_*`` settings into connection
options, and every client - producer, consumer, admin, the Faust app, the connectors - gets
exactly those. Secrets may come from ``CALLVAULT_*_FILE`` paths."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, ClassVar

import faust
import pytest

from tests.certs import write_ca
from tests.unit.conftest import make_settings
from workers.adapters.connectors.settings import load_connector_settings
from workers.adapters.kafka import admin, bus, lag
from workers.adapters.kafka.admin import ensure_topics
from workers.adapters.kafka.bus import KafkaBus, read_topic
from workers.adapters.kafka.lag import LagProbe
from workers.adapters.kafka.security import kafka_security
from workers.domain.errors import ConfigError
from workers.domain.events import STRUCTURED_HEADER
from workers.entrypoints.worker import faust_credentials
from workers.settings import load_settings


def test_plaintext_is_the_default() -> None:
    security = kafka_security(make_settings())
    assert security.options() == {"security_protocol": "PLAINTEXT", "bootstrap_timeout_ms": 30_000}
    assert faust_credentials(security) is None


def test_sasl_ssl_with_scram_and_a_ca_file(tmp_path: Path) -> None:
    ca, cert, key = write_ca(tmp_path)
    settings = make_settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="callvault",
        kafka_sasl_password="s3cret-pw",
        kafka_ca_file=str(ca),
        kafka_cert_file=str(cert),
        kafka_key_file=str(key),
    )
    security = kafka_security(settings)
    options = security.options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "callvault",
        "s3cret-pw",
    )
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test CA"),),)]
    assert "s3cret-pw" not in repr(security)
    assert "s3cret-pw" not in repr(settings)
    # Faust gets the very same context and credentials.
    credentials = faust_credentials(security)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.ssl_context is context
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("callvault", "s3cret-pw")
    assert credentials.protocol.value == "SASL_SSL"


def test_plain_mechanism_and_tls_without_sasl(tmp_path: Path) -> None:
    ca, _, _ = write_ca(tmp_path)
    plain = kafka_security(
        make_settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="portal",
            kafka_sasl_password="pw",
            kafka_ca_file=str(ca),
        )
    )
    assert plain.options()["sasl_mechanism"] == "PLAIN"
    tls = kafka_security(make_settings(kafka_security_protocol="SSL", kafka_ca_file=str(ca)))
    assert "sasl_mechanism" not in tls.options()
    assert isinstance(faust_credentials(tls), faust.SSLCredentials)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "CALLVAULT_KAFKA_SASL_USERNAME"),
        ({"kafka_ca_file": "/etc/ca.pem"}, "CALLVAULT_KAFKA_SECURITY_PROTOCOL=SSL"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ca_file": "/nonexistent/ca.pem"},
            "CALLVAULT_KAFKA_CA_FILE",
        ),
    ],
)
def test_an_incomplete_security_setting_is_named(values: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        kafka_security(make_settings(**values))


def test_a_bad_protocol_or_mechanism_is_named() -> None:
    with pytest.raises(ConfigError, match="CALLVAULT_KAFKA_SECURITY_PROTOCOL"):
        make_settings(kafka_security_protocol="TLS")
    with pytest.raises(ConfigError, match="CALLVAULT_KAFKA_SASL_MECHANISM"):
        make_settings(kafka_sasl_mechanism="GSSAPI")


class Recorder:
    """Stands in for a kafka-python client class and remembers its keyword arguments."""

    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def __init__(self, **kwargs: Any) -> None:
        Recorder.calls.append((type(self).__name__, kwargs))

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: {}


class FakeProducer(Recorder):
    sent: ClassVar[list[dict[str, Any]]] = []

    def send(self, topic: str, **kwargs: Any) -> Any:
        FakeProducer.sent.append({"topic": topic, **kwargs})
        return self

    def get(self, timeout: float) -> None:
        """Acknowledged."""


class FakeAdmin(Recorder):
    pass


class FakeConsumer(Recorder):
    def __iter__(self) -> Any:
        return iter(())

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}


def test_a_shorter_connect_timeout_reaches_every_client() -> None:
    options = kafka_security(make_settings(connect_timeout="PT5S")).options()
    assert options["bootstrap_timeout_ms"] == 5000


def test_every_client_gets_the_same_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca, _, _ = write_ca(tmp_path)
    monkeypatch.setattr(bus, "KafkaProducer", FakeProducer)
    monkeypatch.setattr(bus, "KafkaConsumer", FakeConsumer)
    monkeypatch.setattr(admin, "KafkaAdminClient", FakeAdmin)
    monkeypatch.setattr(lag, "KafkaAdminClient", FakeAdmin)
    monkeypatch.setattr(lag, "KafkaConsumer", FakeConsumer)
    Recorder.calls.clear()
    settings = make_settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="callvault",
        kafka_sasl_password="pw",
        kafka_ca_file=str(ca),
    )
    security = kafka_security(settings)
    producer = KafkaBus("k:9093", "p", security)
    producer.publish([("t", "key", b"{}")])
    ensure_topics("k:9093", {"t": {}}, 1, 1, security)
    LagProbe("k:9093", "g", security).measure(["t"])
    read_topic("k:9093", "t", 10, security)
    wanted = security.options()
    assert len(Recorder.calls) == 5  # producer, admin (migrate), admin + consumer (lag), reader
    for name, kwargs in Recorder.calls:
        assert {k: kwargs[k] for k in wanted} == wanted, name
    assert FakeProducer.sent[-1]["headers"] == [STRUCTURED_HEADER]


def test_connectors_read_the_same_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca, _, _ = write_ca(tmp_path)
    password = tmp_path / "kafka-password"
    password.write_text("from-a-file\n")
    for name, value in {
        "KAFKA_BOOTSTRAP": "k:9093",
        "S3_ENDPOINT": "https://s3.example",
        "S3_ACCESS_KEY": "a",
        "S3_SECRET_KEY": "s",
        "LANDING_BUCKET": "landing",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": "telephony",
        "KAFKA_SASL_PASSWORD_FILE": str(password),
        "KAFKA_CA_FILE": str(ca),
    }.items():
        monkeypatch.setenv(f"CALLVAULT_{name}", value)
    options = kafka_security(load_connector_settings()).options()
    assert options["sasl_plain_username"] == "telephony"
    assert options["sasl_plain_password"] == "from-a-file"


def test_secrets_come_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "hash_key"
    secret.write_text("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")
    monkeypatch.setenv("CALLVAULT_HASH_KEY_FILE", str(secret))
    monkeypatch.setenv("CALLVAULT_DATABASE_URL_FILE", str(secret))
    settings = load_settings()
    assert settings.key("hash_key") == b"0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("CALLVAULT_HASH_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
    with pytest.raises(ConfigError, match="CALLVAULT_HASH_KEY or CALLVAULT_HASH_KEY_FILE"):
        load_settings()
    monkeypatch.delenv("CALLVAULT_HASH_KEY")
    monkeypatch.setenv("CALLVAULT_HASH_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="CALLVAULT_HASH_KEY_FILE: cannot read it"):
        load_settings()


def test_only_secrets_are_read_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "bucket"
    path.write_text("from-file")
    monkeypatch.setenv("CALLVAULT_VAULT_BUCKET_FILE", str(path))
    assert load_settings().vault_bucket == "callvault-vault"
