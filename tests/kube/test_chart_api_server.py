"""The Helm chart against the Kubernetes API itself: `helm lint`, then every manifest `helm
template` renders - with the least a shop must give, with every optional part on (Ingress,
ServiceMonitor, PrometheusRule, KEDA ScaledObject, the webhooks StatefulSet), and with the keys
in an HSM - created on a real kube-apiserver with
``dryRun=All`` and ``fieldValidation=Strict``: defaulting, validation, admission and the CRDs'
schemas all pass, and nothing is stored. A manifest with a field the API does not know is
refused, so a pass means something."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from testbed.helm import CHART, CI_VALUES, helm, render
from tests.kube.conftest import ApiServer

VALUES = sorted(CI_VALUES.glob("*.yaml"))


@pytest.mark.parametrize("values", VALUES, ids=[v.stem for v in VALUES])
def test_helm_lint_passes_strictly(values: Any) -> None:
    done = helm("lint", str(CHART), "--strict", "-f", str(values))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("values", VALUES, ids=[v.stem for v in VALUES])
def test_the_api_server_accepts_every_manifest(api_server: ApiServer, values: Any) -> None:
    manifests = render(values)
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Job", "Service", "NetworkPolicy", "PodDisruptionBudget"} <= kinds
    refused = {}
    for manifest in manifests:
        status, answer = api_server.dry_run(manifest)
        if status != 201:
            refused[f"{manifest['kind']}/{manifest['metadata']['name']}"] = answer.get("message")
        else:  # the server's answer is the object it would have stored
            assert answer["metadata"]["name"] == manifest["metadata"]["name"]
    assert not refused, refused
    if values.stem == "full-values":
        optional = {"Ingress", "ServiceMonitor", "PrometheusRule", "ScaledObject", "StatefulSet"}
        assert optional <= kinds  # the webhooks connector is a StatefulSet


def test_nothing_was_stored_by_the_dry_runs(api_server: ApiServer) -> None:
    for manifest in render(CI_VALUES / "full-values.yaml"):
        path = api_server.collection(manifest, "callvault")
        status, _ = api_server.request("GET", f"{path}/{manifest['metadata']['name']}")
        assert status == 404, manifest["metadata"]["name"]


@pytest.mark.parametrize(
    ("kind", "spoil"),
    [
        ("Deployment", lambda m: m["spec"]["template"]["spec"]["containers"][0].update(probes={})),
        ("PrometheusRule", lambda m: m["spec"]["groups"][0]["rules"][0].update(severity="page")),
        ("ScaledObject", lambda m: m["spec"].update(maxReplicas=12)),
        ("NetworkPolicy", lambda m: m["spec"]["egress"][0]["ports"][0].update(port="dns!")),
    ],
)
def test_the_api_server_refuses_what_it_does_not_know(
    api_server: ApiServer, kind: str, spoil: Any
) -> None:
    manifest = copy.deepcopy(
        next(m for m in render(CI_VALUES / "full-values.yaml") if m["kind"] == kind)
    )
    spoil(manifest)
    status, answer = api_server.dry_run(manifest)
    assert status in (400, 422), answer
