"""The Helm chart as `helm template` renders it (skipped when helm is not installed;
`deploy/kube.sh install` builds it): what a platform team checks before it installs callvault -
least privilege, secrets only by reference, probes, disruption budgets, egress, the alert rules
and the autoscaler - and the values it refuses. `make helm-test` sends the same manifests to a
real API server (tests/kube)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.alerting import render_rules
from testbed.helm import CI_VALUES, local_binary, refusal, render
from workers.adapters.connectors.settings import WebhookSettings, load_connector_settings
from workers.adapters.metrics import Metrics
from workers.settings import load_settings

pytestmark = pytest.mark.skipif(
    local_binary("helm") is None, reason="helm is not installed (`deploy/kube.sh install`)"
)
FULL = CI_VALUES / "full-values.yaml"
MINIMAL = CI_VALUES / "minimal-values.yaml"
PKCS11 = CI_VALUES / "pkcs11-values.yaml"
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
    "CALLVAULT_PKCS11_PIN",
    "CALLVAULT_TWILIO_AUTH_TOKEN",
}
KEY = base64.b64encode(bytes(range(32))).decode()
# what a secret file holds where callvault checks its form (the others: their own names)
SECRET_FILES = {
    "masterKey": KEY,
    "masterKeys": f"m1={KEY}",
    "hashKey": KEY,
    "hashKeysRetired": KEY,
    "signingKey": KEY,
}
KEY_FILES = set(SECRET_FILES)


@pytest.fixture(scope="module")
def full() -> list[dict[str, Any]]:
    return render(FULL)


@pytest.fixture(scope="module")
def minimal() -> list[dict[str, Any]]:
    return render(MINIMAL)


@pytest.fixture(scope="module")
def pkcs11() -> list[dict[str, Any]]:
    return render(PKCS11)


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod template: the Deployments', the connectors' StatefulSets' and the migrate
    Job's."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
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
        "shop-callvault-webhooks",
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
        state = {"/var/lib/callvault/connectors"} if name.endswith("-webhooks") else set()
        assert writable == {"/tmp", "/var/lib/callvault"} | state, name  # as the image test
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


def scraped(docs: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The `job` label a ServiceMonitor gives -> the pods whose metrics port it scrapes."""
    services = of_kind(docs, "Service").values()
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    }
    found: dict[str, set[str]] = {}
    for monitor in of_kind(docs, "ServiceMonitor").values():
        (endpoint,) = monitor["spec"]["endpoints"]
        wanted = monitor["spec"]["selector"]["matchLabels"].items()
        for service in services:
            labels = service["metadata"]["labels"]
            ports = {p["name"] for p in service["spec"]["ports"]}
            if wanted <= labels.items() and endpoint["port"] in ports:
                job = labels[monitor["spec"]["jobLabel"]]
                found.setdefault(job, set()).update(
                    name
                    for name, pod in pods.items()
                    if service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
                    and any(
                        port["name"] == endpoint["port"]
                        for c in pod["spec"]["containers"]
                        for port in c["ports"]
                    )
                )
    return found


def test_prometheus_scrapes_the_workers_and_the_connectors_under_their_jobs(
    full: list[dict[str, Any]],
) -> None:
    """CallvaultProviderCopiesKept reads the webhooks connector's own metrics: its pod must be
    scraped, apart from the workers (whose `job` the worker alerts select on)."""
    assert scraped(full) == {
        "shop-callvault-worker": {
            "shop-callvault-worker-ingest",
            "shop-callvault-worker-retention",
        },
        "shop-callvault-connectors": {"shop-callvault-webhooks"},
    }
    (rule,) = of_kind(full, "PrometheusRule").values()
    (kept,) = [
        r
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if r.get("alert") == "CallvaultProviderCopiesKept"
    ]
    assert "callvault_connector_provider_copies_oldest_seconds" in kept["expr"]


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
    "keys.signingPublicKey": "keys.signingPublicKey: the signing key's public half",
    "console.secretRefs.kafkaSaslPassword.name": 'the console\'s principal "console" is required',
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
        ({"console.secrets[0]": "signingKey"}, "the console verifies certificates and never signs"),
        ({"console.kafkaSaslUsername": "callvault"}, "a Kafka principal of its own"),
        ({"keys.signingPublicKey": "c2lnbmluZw=="}, "/keys/signingPublicKey"),
        ({"keys.backend": "pkcs11"}, "keys.pkcs11.module (the path of the HSM vendor's"),
        (
            {
                "keys.backend": "pkcs11",
                "keys.pkcs11.module": "/m.so",
                "keys.pkcs11.tokenLabel": "t",
            },
            "secrets.pkcs11Pin.name: the name of an existing Secret is required",
        ),
        (
            {"keys.pkcs11.env.CALLVAULT_PKCS11_PIN": "1"},
            "invalid propertyName 'CALLVAULT_PKCS11_PIN'",
        ),
        ({"locale.language": "de"}, "/locale/language"),
        ({"letters.controller.nmae": "UAB"}, "additional properties 'nmae' not allowed"),
        ({"connectors.webhooks.enabled": "true"}, "connectors.webhooks: no provider"),
        (
            {
                "connectors.webhooks.enabled": "true",
                "connectors.webhooks.kafkaSaslUsername": "callvault",
                "connectors.webhooks.secretRefs.twilioAuthToken.name": "twilio",
            },
            'the telephony system\'s own principal, not "callvault"',
        ),
        (
            {
                "connectors.webhooks.enabled": "true",
                "connectors.webhooks.secretRefs.twilioAuthToken.name": "twilio",
            },
            "connectors.webhooks.secretRefs.s3AccessKey.name: the name of an existing Secret",
        ),
        ({"connectors.webhooks.secrets[0]": "databaseUrl"}, "/connectors/webhooks/secrets/0"),
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


def container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = pod_specs(docs)[name]["containers"]
    assert isinstance(found, dict)
    return found


def settings_of(
    found: dict[str, Any], files: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The container's environment in this process, each secret file a file under ``files``
    (its name as content), as callvault would read it in the pod."""
    for name in list(os.environ):
        if name.startswith("CALLVAULT_"):
            monkeypatch.delenv(name)
    env = env_of(found)
    for name, value in env.items():
        if value.startswith("/etc/callvault/secrets/"):
            path = files / value.rsplit("/", 1)[1]
            path.write_text(SECRET_FILES.get(path.name, path.name))
            value = str(path)
        monkeypatch.setenv(name, value)
    return env


def test_the_console_verifies_with_the_public_key_under_its_own_principal(
    full: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    console = container(full, "shop-callvault-console")
    files = mounted_secrets(pod_specs(full)["shop-callvault-console"])
    assert "signingKey" not in files  # it never signs
    assert files["kafkaSaslPassword"] == ("callvault-kafka-console", "password")
    assert files["s3AccessKey"] == ("callvault-s3-console", "access-key")  # an S3 user of its own
    settings_of(console, tmp_path, monkeypatch)
    settings = load_settings()
    assert settings.signing_key is None
    assert settings.signing_public_key == "GCGFpfud9aekNJeOJPMe/It7d5gIJ02QGhkg1Fxq/NQ="
    assert settings.kafka_sasl_username == "console"
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "kafkaSaslPassword"
    # behind the Ingress: the origin browsers use, and whose forwarded headers are believed
    assert settings.public_url == "https://callvault.shop.example"
    assert settings.secure_cookies
    assert settings.forwarded_allow_ips == ("10.244.0.0/16",)
    worker = mounted_secrets(pod_specs(full)["shop-callvault-worker-ingest"])
    assert worker["kafkaSaslPassword"] == ("callvault-kafka", "password")
    assert worker["signingKey"] == ("callvault-keys", "signing-key")


def test_letters_language_and_time_zone_reach_every_component_that_writes_to_people(
    full: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "shop-callvault-worker-ingest",
        "shop-callvault-console",
        "shop-callvault-migrate",
    ):
        settings_of(container(full, name), tmp_path, monkeypatch)
        settings = load_settings()
        assert settings.controller.name == "UAB Example", name
        assert settings.controller.lines == ("+370 5 200 0000",), name
        assert settings.controller_of("shop-ee").address == "Narva mnt 1, Tallinn", name
        assert settings.controller_of("shop-lt").name == "UAB Example", name
        assert settings.authority.web == "https://www.aki.ee", name
        assert (settings.language, settings.timezone) == ("lt", "Europe/Vilnius"), name


def test_the_webhooks_run_as_the_telephony_principal_with_their_own_secrets_only(
    full: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = container(full, "shop-callvault-webhooks")
    assert hooks["args"][:2] == ["connect", "webhooks"]
    assert hooks["args"][hooks["args"].index("--metrics-port") + 1] == "9410"
    files = mounted_secrets(pod_specs(full)["shop-callvault-webhooks"])
    assert files == {
        "kafkaSaslPassword": ("callvault-kafka-telephony", "password"),
        "s3AccessKey": ("callvault-s3-telephony", "access-key"),
        "s3SecretKey": ("callvault-s3-telephony", "secret-key"),
        "twilioAuthToken": ("callvault-twilio", "auth-token"),
    }
    env = settings_of(hooks, tmp_path, monkeypatch)
    assert not [v for v in env if v.split("_")[1] in ("DATABASE", "MASTER", "HASH", "SIGNING")]
    connector = load_connector_settings()
    assert connector.kafka_sasl_username == "telephony"
    assert connector.s3_access_key.get_secret_value() == "s3AccessKey"
    assert str(connector.connector_state_dir) == "/var/lib/callvault/connectors"
    assert connector.metrics_addr == "0.0.0.0"  # noqa: S104 - scraped through its NetworkPolicy
    hook_settings = WebhookSettings()
    assert hook_settings.twilio_auth_token is not None
    assert hook_settings.webhook_public_base_url == "https://hooks.shop.example"  # Twilio signs it
    (ingress,) = [
        i for i in of_kind(full, "Ingress").values() if "webhooks" in i["metadata"]["name"]
    ]
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/webhooks"  # the providers' routes, nothing else of the app
    policy = of_kind(full, "NetworkPolicy")["shop-callvault-webhooks"]["spec"]
    ports = sorted(p["port"] for rule in policy["egress"] for p in rule["ports"])
    assert ports == [53, 53, 443, 443, 9093], "DNS, the store, the providers, Kafka - no database"


def test_keys_in_a_token_leave_no_key_in_any_secret_or_setting(
    pkcs11: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pods = pod_specs(pkcs11)
    assert set(pods) == {
        "shop-callvault-worker-ingest",
        "shop-callvault-worker-retention",
        "shop-callvault-console",
        "shop-callvault-migrate",
    }
    for name, pod in pods.items():
        files = mounted_secrets(pod)
        assert not KEY_FILES & set(files), name
        assert files["pkcs11Pin"] == ("callvault-hsm", "pin"), name
        (found,) = pod["containers"]
        mounts = {m["mountPath"]: m for m in found["volumeMounts"]}
        assert mounts["/etc/luna"]["readOnly"], name
        assert mounts["/etc/luna/cert"]["readOnly"], name
        volumes = {v["name"] for v in pod["volumes"]}
        assert {"hsm-config", "hsm-client"} <= volumes, name
        env = settings_of(found, tmp_path, monkeypatch)
        assert env["ChrystokiConfigurationPath"] == "/etc/luna", name  # the vendor's own
        settings = load_settings()
        settings.need_keys()
        assert settings.keys_backend == "pkcs11", name
        assert str(settings.pkcs11_module).endswith("libCryptoki2_64.so"), name
        assert settings.pkcs11_token_label == "callvault", name
        assert settings.pkcs11_pin_file == tmp_path / "pkcs11Pin", name
        assert settings.master_key is settings.hash_key is settings.signing_key is None, name
