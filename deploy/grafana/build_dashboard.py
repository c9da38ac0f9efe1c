"""Generate deploy/grafana/dashboards/callvault.json, the Grafana dashboard of callvault.

    python deploy/grafana/build_dashboard.py          # rewrite the JSON
    python deploy/grafana/build_dashboard.py --check  # exit 1 when the JSON is stale

The dashboard is kept as code here so every panel query is easy to review; the JSON is what
docker-compose.yml provisions (deploy/grafana/provisioning/dashboards/callvault.yml) and what
you import into any other Grafana (Dashboards > New > Import): the Prometheus datasource is the
import input ``DS_PROMETHEUS`` (``__inputs``), so no datasource uid is baked in; provisioned, the
same name is a datasource variable that picks the default Prometheus. Every panel has a
description and one unit. tests/integration/test_dashboard.py checks those properties; every
panel query is run against the live local Prometheus by tests/e2e/test_ops.py.

Variables: ``$job`` (the workers' scrape job: ``callvault`` on the native stack and compose,
``<release>-callvault-worker`` with the Helm chart) and ``$instance`` (one worker or All).
Gauges that describe the shared database (overdue, DSRs, holds) are the same on every worker
that runs the scheduler role, so they are combined with ``max``, never ``sum``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "callvault.json"
DS_INPUT = "DS_PROMETHEUS"
DATASOURCE = {"type": "prometheus", "uid": "${" + DS_INPUT + "}"}
SEL = 'job="$job", instance=~"$instance"'
WIDTH = 24


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": ref,
        "range": not instant,
        "instant": instant,
    }


def _thresholds(steps: list[tuple[float | None, str]]) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


def timeseries(
    title: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    description: str = "",
    stack: bool = False,
    thresholds: list[tuple[float | None, str]] | None = None,
) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 20 if stack else 10,
        "showPoints": "never",
        "spanNulls": True,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    if thresholds:
        custom["thresholdsStyle"] = {"mode": "line"}
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": custom,
                "thresholds": _thresholds(thresholds or [(None, "green")]),
                "color": {"mode": "palette-classic"},
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    expr: str,
    *,
    unit: str = "short",
    description: str = "",
    thresholds: list[tuple[float | None, str]] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    legend: str = "",
    no_value: str = "none",
    text_mode: str = "auto",
) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr, legend, instant=False)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": _thresholds(thresholds or [(None, "green")]),
                "color": {"mode": "thresholds"},
                "mappings": mappings or [],
                "noValue": no_value,
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": text_mode,
            "justifyMode": "auto",
            "orientation": "auto",
        },
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


DAY = 86400
NO_OPEN_REQUESTS = "no open requests"
RETENTION = [
    row("Retention: is anything kept longer than the law allows?"),
    stat(
        "Overdue recordings",
        f"max(callvault_retention_overdue_recordings{{{SEL}}})",
        description="Recordings past their retention due time, not on legal hold and not purged "
        "yet. Should be 0; alert CallvaultRetentionOverdue fires after 15 minutes.",
        thresholds=[(None, "green"), (1, "red")],
    ),
    stat(
        "Oldest overdue",
        f"max(callvault_retention_oldest_overdue_seconds{{{SEL}}})",
        unit="s",
        description="How long the oldest overdue recording has been overdue (0 when none). "
        "Alert CallvaultOldestOverdueHigh fires above an hour.",
        thresholds=[(None, "green"), (60, "orange"), (900, "red")],
    ),
    stat(
        "Purge lag p99 (1h)",
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(callvault_purge_lag_seconds_bucket{{{SEL}}}[1h])))",
        unit="s",
        description="99th percentile of purged_at - due_at of retention purges in the last hour "
        "(no value when nothing was purged).",
        thresholds=[(None, "green"), (300, "orange"), (900, "red")],
    ),
    stat(
        "Recordings on legal hold",
        f"max(callvault_held_recordings{{{SEL}}})",
        description="Recordings that retention and erasure must not touch while a hold lasts.",
    ),
    timeseries(
        "Purge lag p50 / p99",
        [
            target(
                "histogram_quantile(0.5, sum by (le) "
                f"(rate(callvault_purge_lag_seconds_bucket{{{SEL}}}[5m])))",
                "p50",
                "A",
            ),
            target(
                "histogram_quantile(0.99, sum by (le) "
                f"(rate(callvault_purge_lag_seconds_bucket{{{SEL}}}[5m])))",
                "p99",
                "B",
            ),
        ],
        unit="s",
        description="purged_at - due_at of each retention purge (callvault_purge_lag_seconds).",
        thresholds=[(None, "green"), (900, "red")],
    ),
    timeseries(
        "Stored and purged per second",
        [
            target(f"sum(rate(callvault_recordings_stored_total{{{SEL}}}[5m]))", "stored", "A"),
            target(
                f"sum by (reason) (rate(callvault_recordings_purged_total{{{SEL}}}[5m]))",
                "purged ({{reason}})",
                "B",
            ),
            target(
                f"sum by (reason) (rate(callvault_recordings_discarded_total{{{SEL}}}[5m]))",
                "discarded ({{reason}})",
                "C",
            ),
        ],
        unit="ops",
        description="Recordings stored, purged (by retention, erasure or objection) and "
        "discarded (the caller did not hear the notice), per second.",
    ),
    timeseries(
        "Overdue recordings",
        [target(f"max(callvault_retention_overdue_recordings{{{SEL}}})", "overdue")],
        description="Recordings past their due time, not held, not purged. Should stay at 0.",
        thresholds=[(None, "green"), (1, "red")],
    ),
    timeseries(
        "Oldest overdue recording",
        [
            target(
                f"max(callvault_retention_oldest_overdue_seconds{{{SEL}}})",
                "oldest overdue",
            )
        ],
        unit="s",
        description="How long the oldest overdue recording has been overdue. Should stay at 0.",
        thresholds=[(None, "green"), (3600, "red")],
    ),
]

INGEST = [
    row("Ingest and dead letters"),
    stat(
        "Dead letters since worker start",
        f"sum by (error_code) (callvault_deadletter_total{{{SEL}}})",
        legend="{{error_code}}",
        thresholds=[(None, "green"), (1, "orange")],
        description="Per error_code, summed over the workers. Inspect with "
        "`callvault deadletter list`, replay with "
        "`callvault deadletter replay --offset PARTITION:OFFSET` once fixed.",
    ),
    stat(
        "Recordings stored since worker start",
        f"sum(callvault_recordings_stored_total{{{SEL}}})",
        description="Recordings stored by the selected workers since they started.",
        thresholds=[(None, "green")],
    ),
    stat(
        "Consumer lag (total)",
        f"sum(max by (consumergroup, topic, partition) (callvault_consumer_lag_messages{{{SEL}}}))",
        description="Messages of the input topics not yet committed by the consumer group.",
        thresholds=[(None, "green"), (100, "orange"), (1000, "red")],
    ),
    timeseries(
        "Input events by topic and outcome",
        [
            target(
                f"sum by (topic, outcome) (rate(callvault_events_processed_total{{{SEL}}}[5m]))",
                "{{topic}} {{outcome}}",
            )
        ],
        unit="ops",
        stack=True,
        description="Every handled input event; outcome 'deadletter' is a rejected one.",
    ),
    timeseries(
        "Ingest rate and failures by error_code",
        [
            target(
                "sum by (outcome) "
                f'(rate(callvault_events_processed_total{{{SEL}, topic="calls_ended"}}[5m]))',
                "calls {{outcome}}",
                "A",
            ),
            target(
                f"sum by (error_code) (rate(callvault_deadletter_total{{{SEL}}}[5m]))",
                "failed: {{error_code}}",
                "B",
            ),
        ],
        unit="ops",
        description="Call-ended events handled per second by outcome, and rejected inputs per "
        "second by error_code.",
    ),
    timeseries(
        "Dead letters per minute",
        [
            target(
                f"sum(rate(callvault_deadletter_total{{{SEL}}}[5m])) * 60",
                "dead letters / min",
            )
        ],
        unit="opm",
        description="Rejected inputs per minute (callvault deadletter list; replay after a fix). "
        "Alert CallvaultDeadLetterRateRising fires above 1 a minute and 3 times the hour before.",
        thresholds=[(None, "green"), (1, "red")],
    ),
    timeseries(
        "Ingest duration p50 / p99",
        [
            target(
                "histogram_quantile(0.5, sum by (le) "
                f"(rate(callvault_ingest_duration_seconds_bucket{{{SEL}}}[5m])))",
                "p50",
                "A",
            ),
            target(
                "histogram_quantile(0.99, sum by (le) "
                f"(rate(callvault_ingest_duration_seconds_bucket{{{SEL}}}[5m])))",
                "p99",
                "B",
            ),
        ],
        unit="s",
        description="From a call-ended event's arrival to its recording being stored "
        "(download, sniff, encrypt, upload, commit).",
    ),
]

DSR = [
    row("Data-subject requests and legal holds"),
    stat(
        "Open DSRs",
        f"max(callvault_dsr_open_requests{{{SEL}}})",
        description="Data-subject requests received and not yet fully carried out (an erasure "
        "kept open by a legal hold counts). `callvault dsr list` shows them.",
        thresholds=[(None, "green"), (1, "orange")],
    ),
    stat(
        "Time to nearest DSR deadline",
        # the gauge is NaN while no request is open: '> -Inf' drops it, so the panel shows
        # its no-value text instead of NaN
        f"min(callvault_dsr_nearest_deadline_seconds{{{SEL}}} > -Inf)",
        unit="s",
        description="Until the one-month deadline (GDPR Art. 12(3)) of the most urgent open "
        f"request; '{NO_OPEN_REQUESTS}' when none is open. Alert CallvaultDsrDeadlineNear "
        "fires under 7 days.",
        thresholds=[(None, "red"), (2 * DAY, "orange"), (7 * DAY, "green")],
        mappings=[
            {
                "type": "special",
                "options": {
                    "match": match,
                    "result": {"text": NO_OPEN_REQUESTS, "color": "green", "index": index},
                },
            }
            for index, match in enumerate(("nan", "null"))
        ],
        no_value=NO_OPEN_REQUESTS,
    ),
    stat(
        "Legal holds active",
        f"max(callvault_holds_active{{{SEL}}})",
        description="Legal holds in force (`callvault hold list`).",
    ),
    timeseries(
        "DSRs answered by type and status (per hour)",
        [
            target(
                f"sum by (type, status) (increase(callvault_dsr_requests_total{{{SEL}}}[1h]))",
                "{{type}} {{status}}",
            )
        ],
        description="Results published on dsr.results in the last hour, by request type and "
        "status (completed, partial, rejected).",
    ),
    timeseries(
        "Open DSRs, holds and held recordings",
        [
            target(f"max(callvault_dsr_open_requests{{{SEL}}})", "open DSRs", "A"),
            target(f"max(callvault_holds_active{{{SEL}}})", "holds active", "B"),
            target(f"max(callvault_held_recordings{{{SEL}}})", "held recordings", "C"),
        ],
        description="Counts over time: open requests, holds in force, recordings they keep.",
    ),
]

WORKERS = [
    row("Workers, outbox and Kafka"),
    stat(
        "Workers up",
        f"sum(up{{{SEL}}})",
        description="Scraped callvault workers that answer.",
        thresholds=[(None, "red"), (1, "green")],
    ),
    stat(
        "Workers ready",
        f"sum(callvault_worker_ready{{{SEL}}})",
        description="Workers that have joined their consumer group and hold their partitions "
        "(callvault_worker_ready); fewer than 'Workers up' while a rebalance is going on.",
        thresholds=[(None, "red"), (1, "green")],
    ),
    stat(
        "callvault version",
        f"count by (version) (callvault_build_info{{{SEL}}})",
        legend="{{version}}",
        description="Workers per running callvault version (callvault_build_info); two versions "
        "at once mean a rollout in progress.",
        text_mode="name",
    ),
    stat(
        "Outbox backlog",
        f"max(callvault_outbox_backlog{{{SEL}}})",
        description="Output events written in the database but not yet published to Kafka "
        "(callvault_outbox_backlog). Alert CallvaultOutboxBacklog fires when the oldest waits "
        "over 5 minutes.",
        thresholds=[(None, "green"), (1000, "orange")],
    ),
    timeseries(
        "Worker up / ready",
        [
            target(f"up{{{SEL}}}", "up {{instance}}", "A"),
            target(f"callvault_worker_ready{{{SEL}}}", "ready {{instance}}", "B"),
        ],
        description="1 = the worker's /metrics answers (up) / the worker holds its partitions "
        "(ready); 0 = not (alert CallvaultWorkerDown).",
        thresholds=[(None, "red"), (1, "green")],
    ),
    timeseries(
        "Worker restarts (per hour)",
        [
            target(
                f"changes(process_start_time_seconds{{{SEL}}}[1h])",
                "{{instance}}",
            )
        ],
        description="How often each worker process started again in the last hour (changes of "
        "process_start_time_seconds). Alert CallvaultWorkerRestarting fires at 3 in 15 minutes.",
        thresholds=[(None, "green"), (3, "red")],
    ),
    timeseries(
        "Outbox and follow-up backlog",
        [
            target(f"max(callvault_outbox_backlog{{{SEL}}})", "outbox (unpublished events)", "A"),
            target(
                f"max(callvault_followups_backlog{{{SEL}}})",
                "follow-ups (freed recordings, resumed erasures)",
                "B",
            ),
        ],
        description="Work recorded in the database and not yet carried out: output events "
        "waiting for the outbox relay, follow-ups waiting for a worker.",
    ),
    timeseries(
        "Oldest unpublished outbox event",
        [target(f"max(callvault_outbox_oldest_seconds{{{SEL}}})", "oldest unpublished")],
        unit="s",
        description="Age of the oldest output event not yet published (0 when none).",
        thresholds=[(None, "green"), (300, "red")],
    ),
    timeseries(
        "Consumer lag per topic / partition",
        [
            target(
                "max by (consumergroup, topic, partition) "
                f"(callvault_consumer_lag_messages{{{SEL}}})",
                "{{topic}}[{{partition}}] {{consumergroup}}",
            )
        ],
        description="End offset minus the consumer group's committed offset, measured by the "
        "workers themselves (callvault_consumer_lag_messages).",
        stack=True,
    ),
    timeseries(
        "Reconciliation findings (vault vs database)",
        [
            target(
                f"max by (kind) (callvault_reconcile_findings{{{SEL}}})",
                "{{kind}}",
            )
        ],
        description="From the worker's periodic `callvault reconcile`: orphan objects, "
        "missing objects, recordings overdue but not purged. Anything above 0 needs a look.",
    ),
    timeseries(
        "Outbox events published per second",
        [target(f"sum(rate(callvault_outbox_published_total{{{SEL}}}[5m]))", "published")],
        unit="ops",
        description="Output events the outbox relay published to Kafka.",
    ),
]


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows span the width; stats are 6 wide and 4 high, time series 12 wide and 8 high; a
    line holds panels of one height only."""
    x = y = line_height = 0
    out = []
    for number, panel in enumerate(panels, start=1):
        w, h = {"row": (WIDTH, 1), "stat": (6, 4)}.get(panel["type"], (12, 8))
        if x + w > WIDTH or (line_height and h != line_height):
            x, y, line_height = 0, y + line_height, 0
        out.append({"id": number, **panel, "gridPos": {"x": x, "y": y, "w": w, "h": h}})
        x, line_height = x + w, h
    return out


PANEL_TYPES = ("stat", "timeseries")


def dashboard() -> dict[str, Any]:
    return {
        # what Grafana's import asks for: the Prometheus datasource to use
        "__inputs": [
            {
                "name": DS_INPUT,
                "label": "Prometheus",
                "description": "The Prometheus that scrapes the callvault workers",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *(
                {"type": "panel", "id": kind, "name": kind.title(), "version": ""}
                for kind in PANEL_TYPES
            ),
        ],
        "uid": "callvault",
        "title": "callvault",
        "description": "Recordings kept lawful: retention, DSR deadlines, holds, ingest, lag.",
        "tags": ["callvault", "gdpr"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {
            "list": [
                {
                    # Provisioned dashboards get no import inputs: this variable of the same
                    # name resolves ${DS_PROMETHEUS} to the default Prometheus datasource there.
                    "name": DS_INPUT,
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "includeAll": False,
                    "multi": False,
                    "refresh": 1,
                    "regex": "",
                },
                {
                    # every job whose targets are callvault workers: `callvault` on the native
                    # stack and compose, `<release>-callvault-worker` with the Helm chart
                    "name": "job",
                    "label": "job",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {
                        "query": "label_values(callvault_build_info, job)",
                        "refId": "job",
                    },
                    "definition": "label_values(callvault_build_info, job)",
                    "refresh": 2,
                    "includeAll": False,
                    "multi": False,
                    "sort": 1,
                },
                {
                    "name": "instance",
                    "label": "worker",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {
                        "query": 'label_values(up{job="$job"}, instance)',
                        "refId": "instance",
                    },
                    "definition": 'label_values(up{job="$job"}, instance)',
                    "refresh": 2,
                    "includeAll": True,
                    "allValue": ".*",
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                    "sort": 1,
                },
            ]
        },
        "panels": layout(RETENTION + INGEST + DSR + WORKERS),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
