"""Metric names follow Prometheus conventions and collide with nothing another exporter
publishes: every family is callvault's own (``callvault_`` - or the client library's process
and Python collectors), a counter's samples end in ``_total`` and a byte counter's in
``_bytes_total``, seconds end in ``_seconds``."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from workers.adapters.connectors.metrics import ConnectorMetrics
from workers.adapters.metrics import Metrics

LIBRARY = ("process_", "python_")


def families(registry: CollectorRegistry) -> list[tuple[str, str, list[str]]]:
    return [
        (family.name, family.type, [sample.name for sample in family.samples])
        for family in registry.collect()
        if not family.name.startswith(LIBRARY)
    ]


@pytest.mark.parametrize(
    "registry",
    [Metrics().registry, ConnectorMetrics("asterisk").registry],
    ids=["worker", "connector"],
)
def test_metric_names_are_callvaults_own_and_follow_the_conventions(
    registry: CollectorRegistry,
) -> None:
    found = families(registry)
    assert found
    for name, kind, samples in found:
        assert name.startswith("callvault_"), name
        if kind == "counter":
            assert all(s.endswith(("_total", "_created")) for s in samples), samples
        if "bytes" in name:
            assert kind == "counter", name
            assert name.endswith("_bytes"), name  # its samples: _bytes_total
        if kind == "histogram" or "seconds" in name:
            assert name.endswith("_seconds"), name


def test_the_worker_measures_consumer_lag_under_its_own_name() -> None:
    names = {name for name, _, _ in families(Metrics().registry)}
    assert "kafka_consumergroup_lag" not in names  # kafka_exporter's: a scrape would clash
    assert "callvault_consumer_lag_messages" in names
