"""The Helm chart as `helm template` renders it (skipped when helm is not installed;
`deploy/kube.sh install` builds it): what a platform team checks before it installs callvault -
least privilege, secrets only by reference, probes, disruption budgets, egress, the alert rules
and the autoscaler - and the values it refuses. `make helm-test` sends the same manifests to a
real API server (tests/kube)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.alerting import render_rules
from testbed.helm import CI_VALUES, local_binary, refusal, render
from workers.adapters.metrics import Metrics

pytestmark = pytest.mark.skipif(
    local_binary("helm") is None, reason="helm is not installed (`deploy/kube.sh install`)"
)
FULL = CI_VALUES / "full-values.yaml"
MINIMAL = CI_VALUES / "minimal-values.yaml"
RUNBOOK_URL = "https://docs.shop.example/callvault/runbooks.md"  # ci/full-values.yaml
SECRET_SETTINGS = {
    "CALLVAULT_DATABASE_URL",
    "CALLVAULT_DATABASE_ADMIN_URL",
    "CALLVAULT_S3_ACCESS_KEY",
    "CALLVAULT_S3_SECRET_KEY",
    "CALLVAULT_MASTER_KEY",
    "CALLVAULT_MASTER_KEYS",
    "CALLVAULT_HASH_KEY",
    "CALLVAULT_SIGNING_KEY",
    "CALLVAULT_KAFKA_SASL_PASSWORD",
    "CALLVAULT_SESSION_SECRET",
}


@pytest.fixture(scope="module")
def full() -> list[dict[str, Any]]:
    return render(FULL)


@pytest.fixture(scope="module")
def minimal() -> list[dict[str, Any]]:
    return render(MINIMAL)


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod template: the Deployments' and the migrate Job's."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    }


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def mounted_secrets(pod: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """File name under /etc/callvault/secrets -> (Secret, key)."""
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    return {
        item["path"]: (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def test_every_pod_runs_unprivileged_on_a_read_only_root(full: list[dict[str, Any]]) -> None:
    pods = pod_specs(full)
    assert set(pods) == {
        "shop-callvault-worker-ingest",
        "shop-callvault-worker-retention",
        "shop-callvault-console",
        "shop-callvault-migrate",
    }
    for name, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name  # no API token in callvault
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert writable == {"/tmp", "/var/lib/callvault"}, name  # as the image test runs it
        assert container["image"].startswith("registry.shop.example/callvault@sha256:"), name


def test_secrets_are_files_of_existing_secrets_and_only_migrate_holds_the_owner(
    full: list[dict[str, Any]],
) -> None:
    assert not of_kind(full, "Secret"), "the chart must never create a Secret from values"
    for name, pod in pod_specs(full).items():
        env = env_of(pod["containers"][0])
        assert not SECRET_SETTINGS & set(env), f"{name} has a secret in its environment"
        files = mounted_secrets(pod)
        for variable, path in env.items():
            if variable.endswith("_FILE") and path.startswith("/etc/callvault/secrets/"):
                assert path.rsplit("/", 1)[1] in files, (name, variable)
        owner = ("callvault-database-owner", "owner-url")
        assert (owner in files.values()) == (name == "shop-callvault-migrate"), name
    pods = pod_specs(full)
    assert mounted_secrets(pods["shop-callvault-migrate"])["databaseAdminUrl"] == owner
    assert "databaseAdminUrl" not in mounted_secrets(pods["shop-callvault-console"])


def test_migrate_runs_as_a_hook_before_install_and_upgrade(full: list[dict[str, Any]]) -> None:
    job = of_kind(full, "Job")["shop-callvault-migrate"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate", "--json"]
    for pod in pod_specs(full).values():
        assert env_of(pod["containers"][0])["CALLVAULT_MIGRATE_ON_START"] == "false"


def test_workers_are_consumer_group_members_with_their_roles_and_probes(
    minimal: list[dict[str, Any]],
) -> None:
    deployments = of_kind(minimal, "Deployment")
    ingest = deployments["shop-callvault-worker-ingest"]
    retention = deployments["shop-callvault-worker-retention"]
    assert (ingest["spec"]["replicas"], retention["spec"]["replicas"]) == (2, 2)
    (container,) = ingest["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["worker", "--only", "ingest,holds,dsr,outbox"]
    assert retention["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "worker",
        "--only",
        "retention,scheduler,outbox",
    ]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "192Mi"}
    env = env_of(container)
    every_address = "0.0.0.0"  # noqa: S104 - a pod's port, reached through its NetworkPolicy
    assert (env["CALLVAULT_METRICS_ADDR"], env["CALLVAULT_METRICS_PORT"]) == (every_address, "9400")
    console = deployments["shop-callvault-console"]["spec"]["template"]["spec"]["containers"][0]
    assert console["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_each_workload_has_a_disruption_budget(full: list[dict[str, Any]]) -> None:
    budgets = of_kind(full, "PodDisruptionBudget")
    for name, deployment in of_kind(full, "Deployment").items():
        budget = budgets[name]
        assert budget["spec"]["maxUnavailable"] == 1
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items(), name


def test_egress_goes_to_kafka_postgresql_the_store_and_dns_only(
    minimal: list[dict[str, Any]], full: list[dict[str, Any]]
) -> None:
    policies = of_kind(minimal, "NetworkPolicy")
    assert set(policies) == {
        "shop-callvault-worker",
        "shop-callvault-console",
        "shop-callvault-migrate",
    }
    for name, policy in policies.items():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        ports = sorted(p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"])
        assert ports == [53, 53, 443, 5432, 9093], name
    assert of_kind(minimal, "NetworkPolicy")["shop-callvault-migrate"]["spec"]["ingress"] == []
    worker = of_kind(full, "NetworkPolicy")["shop-callvault-worker"]["spec"]
    (kafka,) = [r for r in worker["egress"] if r["ports"] == [{"port": 9093, "protocol": "TCP"}]]
    assert kafka["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]
    (scrape,) = worker["ingress"]
    assert scrape["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    # the recordings' HTTPS host, added by the shop
    assert {
        "to": [{"ipBlock": {"cidr": "192.168.10.5/32"}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    } in worker["egress"]


def test_the_prometheus_rule_is_the_repository_rules_for_this_release(
    full: list[dict[str, Any]], tmp_path: Path
) -> None:
    (rule,) = of_kind(full, "PrometheusRule").values()
    expected: list[dict[str, Any]] = []
    for path in render_rules(tmp_path, job="shop-callvault-worker", runbook_url=RUNBOOK_URL):
        expected += yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    assert rule["spec"]["groups"] == expected
    (monitor,) = of_kind(full, "ServiceMonitor").values()
    (service,) = [
        s for s in of_kind(full, "Service").values() if s["metadata"]["name"].endswith("-metrics")
    ]
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "shop-callvault-worker"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_keda_scales_the_ingest_workers_on_the_lag_they_export(full: list[dict[str, Any]]) -> None:
    (scaled,) = of_kind(full, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "shop-callvault-worker-ingest"
    assert "replicas" not in of_kind(full, "Deployment")["shop-callvault-worker-ingest"]["spec"]
    (trigger,) = scaled["spec"]["triggers"]
    lag_metric = Metrics().consumer_lag._name
    query = trigger["metadata"]["query"]
    assert query.startswith(f"sum(max by (topic, partition) ({lag_metric}{{"), (
        f"the chart's callvault.lagMetric (templates/_helpers.tpl) must name {lag_metric}, "
        "the consumer-lag gauge the workers export"
    )
    assert 'job="shop-callvault-worker"' in query
    assert 'consumergroup="callvault-shop"' in query
    assert r'topic=~"shop\\.calls\\.ended|holds\\.commands|dsr\\.requests"' in query
    assert scaled["spec"]["maxReplicaCount"] == 12


MISSING = {
    "kafka.bootstrap": "kafka.bootstrap (host:port of your Kafka brokers) is required",
    "s3.endpoint": "s3.endpoint (the object store's URL) is required",
    "secrets.hashKey.name": "secrets.hashKey.name: the name of an existing Secret is required",
    "secrets.databaseAdminUrl.name": "secrets.databaseAdminUrl.name: the name of an existing",
}


@pytest.mark.parametrize("key", sorted(MISSING))
def test_what_callvault_cannot_run_without_is_required(key: str) -> None:
    assert MISSING[key] in refusal(MINIMAL, sets={key: ""})


@pytest.mark.parametrize(
    ("sets", "reason"),
    [
        (
            {"config.CALLVAULT_DATABASE_URL": "postgresql://u:p@db/cv"},
            "a secret never goes into values",
        ),
        ({"config.CALLVAULT_HASH_KEY_FILE": "/x"}, "a secret never goes into values"),
        ({"worker.secrets[0]": "databaseAdminUrl"}, "databaseAdminUrl is for the migrate Job only"),
        ({"workers[0].roles": "{everything}"}, "value must be one of 'ingest', 'retention'"),
        ({"worker.replica": "3"}, "additional properties 'replica' not allowed"),
        ({"kafka.bootstrap": "kafka"}, "/kafka/bootstrap"),
        ({"metrics.prometheusRule.enabled": "true"}, "metrics.prometheusRule.runbookUrl"),
        (
            {
                "metrics.prometheusRule.enabled": "true",
                "metrics.prometheusRule.runbookUrl": "docs/runbooks.md",
            },
            "must be an absolute http(s) URL",
        ),
    ],
)
def test_values_that_would_weaken_or_break_an_installation_are_refused(
    sets: dict[str, str], reason: str
) -> None:
    assert reason in refusal(MINIMAL, sets=sets)
