"""The Grafana dashboard imports into any Grafana and reads well: the datasource is an import
input (no datasource uid baked in), every panel has a description and one unit, the DSR deadline
shows "no open requests" rather than NaN (checked with promtool on a NaN series), and every metric
it queries is one the workers export. (tests/e2e/test_ops.py runs each query on live data.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers.adapters.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "callvault.json"
DS = "${DS_PROMETHEUS}"
GRAFANA_BUILTIN = {"type": "grafana", "uid": "-- Grafana --"}  # the annotations' own source


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def datasource_refs(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            else:
                yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


def test_datasource_is_an_import_input(board: dict[str, Any]) -> None:
    (ds_input,) = board["__inputs"]
    assert ds_input["name"] == "DS_PROMETHEUS"
    assert (ds_input["type"], ds_input["pluginId"]) == ("datasource", "prometheus")
    refs = list(datasource_refs(board))
    assert len(refs) > 30
    for ref in refs:
        assert ref in ({"type": "prometheus", "uid": DS}, GRAFANA_BUILTIN), ref
    # provisioned (no import), the same name is a datasource variable
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    text = DASHBOARD.read_text(encoding="utf-8")
    uids = set(re.findall(r'"uid": "([^"]*)"', text))
    assert uids == {DS, GRAFANA_BUILTIN["uid"], board["uid"]}, uids


def test_every_panel_has_a_description_and_one_unit(board: dict[str, Any]) -> None:
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel.get("description", "").strip(), f"{panel['title']}: no description"
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), f"{panel['title']}: no unit"
        for override in panel["fieldConfig"].get("overrides", []):
            ids = {p["id"] for p in override.get("properties", [])}
            assert "unit" not in ids, f"{panel['title']}: a second unit"
        assert panel["targets"], panel["title"]


def test_panels_fit_the_grid_without_overlapping(board: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))


def exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p.get("targets", [])]


def test_new_worker_metrics_have_panels(board: dict[str, Any]) -> None:
    text = " ".join(exprs(board))
    for metric in (
        "callvault_outbox_backlog",
        "callvault_outbox_oldest_seconds",
        "process_start_time_seconds",
        "callvault_build_info",
        "callvault_worker_ready",
        "callvault_reconcile_findings",
    ):
        assert metric in text, f"no panel shows {metric}"


def exported_names() -> set[str]:
    """The sample names the worker registry can expose (labelled series may not exist yet)."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "info": ("_info",),
    }
    names = {"up"}  # Prometheus's own, per target
    for family in Metrics().registry.collect():
        names |= {s.name for s in family.samples}
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def test_every_queried_metric_is_exported_by_the_workers(board: dict[str, Any]) -> None:
    exported = exported_names()
    for expr in exprs(board):
        # every panel query selects its series with {job=..., instance=~...}
        names = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))
        assert names, expr
        assert names <= exported, f"{expr}: not exported by the workers: {names - exported}"


def test_dsr_deadline_shows_no_open_requests_instead_of_nan(
    board: dict[str, Any], tmp_path: Path
) -> None:
    (panel,) = [p for p in panels(board) if "callvault_dsr_nearest_deadline_seconds" in str(p)]
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["noValue"] == "no open requests"
    special = {
        m["options"]["match"]: m["options"]["result"]["text"]
        for m in defaults["mappings"]
        if m["type"] == "special"
    }
    assert special == {"nan": "no open requests", "null": "no open requests"}
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package 'prometheus')")
    (expr,) = [t["expr"] for t in panel["targets"]]
    query = expr.replace("$job", "callvault").replace("$instance", ".*")
    test = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {  # no open request: the workers report NaN
                        "series": 'callvault_dsr_nearest_deadline_seconds{job="callvault",'
                        ' instance="w1"}',
                        "values": "NaN NaN NaN 86400 86340",
                    }
                ],
                "promql_expr_test": [
                    {"expr": query, "eval_time": "1m", "exp_samples": []},
                    {"expr": query, "eval_time": "4m", "exp_samples": [{"value": 86340}]},
                ],
            }
        ],
    }
    path = tmp_path / "deadline.test.yml"
    path.write_text(yaml.safe_dump(test), encoding="utf-8")
    done = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_job_is_found_not_assumed(board: dict[str, Any]) -> None:
    """The workers' job differs per installation (the Helm chart's is the release's): the
    dashboard offers the jobs that have callvault workers instead of a fixed name."""
    variables = {v["name"]: v for v in board["templating"]["list"]}
    job = variables["job"]
    assert job["type"] == "query"
    assert job["query"]["query"] == "label_values(callvault_build_info, job)"
    assert job.get("hide", 0) == 0
    assert "callvault" not in json.dumps(job.get("current", {}))
