"""An alert reaches someone: a recording made overdue for real (a worker without the retention
role, a 2-second retention) fires CallvaultRetentionOverdue, and Alertmanager delivers it to a
webhook.

The production rule waits 15 minutes (``for: 15m``), so delivery is shown by a test-only
Prometheus + Alertmanager pair rendered from the very templates and rule file the native stack
uses, with only ``for:``, the intervals and the receiver's URL changed. The shared stack's own
pair is checked for the same wiring: its Prometheus lists its Alertmanager and scrapes this
worker, for which the production rule's expression holds."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from testbed.alerting import RUNBOOK_URL, render_rules
from testbed.probes import wait_for
from testbed.stack import ROOT, Instance, free_port, stop_processes
from tests.e2e.harness import Callvault, make_wav

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERT = "CallvaultRetentionOverdue"


class Webhook:
    """A local receiver of Alertmanager's webhook JSON."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        received = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, name: str, job: str) -> list[dict[str, Any]]:
        return [
            alert
            for payload in self.payloads
            for alert in payload["alerts"]
            if alert["labels"].get("alertname") == name and alert["labels"].get("job") == job
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `deploy/stack.sh up` installs it")
    return found


def short_rules(target: Path) -> None:
    """The production rules, rendered as the stack renders them, with every ``for:`` cut to
    2 seconds."""
    for path in render_rules(target):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = "2s"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def render(template: Path, values: dict[str, str]) -> str:
    text = template.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    assert "@" not in "".join(line.split("#")[0] for line in text.splitlines()), text
    return text


@pytest.fixture
def alert_pair(tmp_path: Path, stack: dict[str, str]) -> Iterator[tuple[Webhook, str]]:
    """A webhook, and a Prometheus + Alertmanager rendered from the stack's templates that
    scrape the shared file_sd directory and deliver to that webhook. Yields the Prometheus URL."""
    webhook = Webhook()
    processes: list[subprocess.Popen[bytes]] = []
    am_port, prom_port = free_port(), free_port()
    am_config = yaml.safe_load(
        render(PROMETHEUS_DIR / "alertmanager.yml", {"WEBHOOK_URL": webhook.url})
    )
    am_config["route"].update(group_wait="1s", group_interval="1s")
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_config), encoding="utf-8")
    short_rules(tmp_path / "rules")
    prom_config = yaml.safe_load(
        render(
            PROMETHEUS_DIR / "prometheus.yml",
            {
                "JOB": "callvault",
                "METRICS_TARGET": "127.0.0.1:9400",
                "PROMETHEUS_TARGET": f"127.0.0.1:{prom_port}",
                "ALERTMANAGER_TARGET": f"127.0.0.1:{am_port}",
                "RULES_DIR": str(tmp_path / "rules"),
                "TARGETS_DIR": stack["CALLVAULT_PROMETHEUS_TARGETS_DIR"],
            },
        )
    )
    prom_config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    for job in prom_config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["refresh_interval"] = "1s"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config), encoding="utf-8")
    logs = (tmp_path / "alert-pair.log").open("wb")
    try:
        processes.append(
            subprocess.Popen(
                [
                    binary("prometheus-alertmanager"),
                    f"--config.file={tmp_path / 'alertmanager.yml'}",
                    f"--storage.path={tmp_path / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                stdout=logs,
                stderr=subprocess.STDOUT,
            )
        )
        processes.append(
            subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=logs,
                stderr=subprocess.STDOUT,
            )
        )
        prometheus = f"http://127.0.0.1:{prom_port}"
        wait_for(lambda: ready(f"http://127.0.0.1:{am_port}"), 30, "test Alertmanager")
        wait_for(lambda: ready(prometheus), 30, "test Prometheus")
        yield webhook, prometheus
    finally:
        stop_processes(processes)
        logs.close()
        webhook.close()


@pytest.fixture
def overdue_worker(instance: Instance, tmp_path: Path) -> Iterator[tuple[Callvault, str]]:
    """A worker that stores and announces but never purges (no retention role), with a
    2-second retention; scraped through the shared file_sd directory under its own job name."""
    instance.env.update(
        {
            "CALLVAULT_RETENTION": "PT2S",
            "CALLVAULT_SCHEDULER_INTERVAL": "PT0.5S",
            "CALLVAULT_METRICS_INTERVAL": "PT1S",
        }
    )
    cv = Callvault(instance, tmp_path)
    cv.migrate()
    job = f"callvault-{instance.name}"
    targets_dir = Path(instance.env["CALLVAULT_PROMETHEUS_TARGETS_DIR"])
    target = targets_dir / f"alert-{instance.name}.json"
    staged = targets_dir / f".alert-{instance.name}.tmp"  # *.json only: never half-read
    port = instance.env["CALLVAULT_METRICS_PORT"]
    staged.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"job": job}}]))
    try:
        cv.start_worker("--only", "ingest,scheduler,outbox")
        staged.rename(target)
        yield cv, job
    finally:
        target.unlink(missing_ok=True)
        staged.unlink(missing_ok=True)
        cv.stop_all()


def rule_expr(alert: str) -> str:
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    return str(rule["expr"])
    raise AssertionError(f"no rule {alert}")


def jobs_matching(prometheus: str, expr: str) -> set[str]:
    answer = get_json(f"{prometheus}/api/v1/query?{urlencode({'query': expr})}")
    return {sample["metric"].get("job", "") for sample in answer["data"]["result"]}


def test_an_overdue_recording_is_delivered_to_the_webhook(
    alert_pair: tuple[Webhook, str], overdue_worker: tuple[Callvault, str], stack: dict[str, str]
) -> None:
    webhook, _ = alert_pair
    cv, job = overdue_worker
    cv.call("alert-1", make_wav(0.2))
    cv.read("recordings_stored", lambda seen: len(seen) == 1)
    cv.read("retention_due", lambda seen: len(seen) == 1)  # announced; nobody purges it
    wait_for(lambda: cv.metric("callvault_retention_overdue_recordings") == 1, 30, "overdue")

    wait_for(lambda: bool(webhook.alerts(ALERT, job)), 90, f"{ALERT} at the webhook")
    (alert, *_) = webhook.alerts(ALERT, job)
    assert alert["status"] == "firing"
    # stack: the external label of the native stack's Prometheus
    assert alert["labels"] == {
        "alertname": ALERT,
        "job": job,
        "severity": "critical",
        "stack": "local",
    }
    assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_URL}#callvaultretentionoverdue"
    assert alert["annotations"]["summary"].startswith("1 recording(s) past retention")
    assert cv.metric("callvault_recordings_purged_total") == 0  # overdue for real

    # the shared stack: its Prometheus sends to its Alertmanager, and the production rule's
    # expression holds there for this worker (its for: 15m is not waited for)
    shared = stack["CALLVAULT_PROMETHEUS_URL"]
    managers = get_json(f"{shared}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
    assert {"url": f"{stack['CALLVAULT_ALERTMANAGER_URL']}/api/v2/alerts"} in managers
    status = get_json(f"{stack['CALLVAULT_ALERTMANAGER_URL']}/api/v2/status")
    config = yaml.safe_load(status["config"]["original"])
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    assert receiver["webhook_configs"][0]["url"].startswith("http")
    expr = rule_expr(ALERT)
    wait_for(lambda: job in jobs_matching(shared, expr), 60, f"{ALERT}'s expression on the stack")
