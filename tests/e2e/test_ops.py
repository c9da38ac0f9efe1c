"""Operations end to end: every Grafana panel query answered by the live local Prometheus after
demo-like traffic, dead-letter list and idempotent replay, reconciliation of the vault with
PostgreSQL, the status screen, and no personal data in logs or metrics on any path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed.probes import wait_for
from testbed.stack import ROOT, Instance
from tests.e2e.harness import CALLVAULT, Callvault, cloudevent, make_wav, stamp

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "callvault.json"
BUILDER = ROOT / "deploy" / "grafana" / "build_dashboard.py"


# --- helpers ------------------------------------------------------------------------------
def cli(cv: Callvault, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [CALLVAULT, *args], env=cv.env, capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert done.returncode == 0, f"callvault {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def db(cv: Callvault, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(cv.settings.database_url.get_secret_value()) as conn:
        return conn.execute(sql, args).fetchall()


def hold(cv: Callvault, hold_id: str, scope: dict[str, Any]) -> None:
    data = {"hold_id": hold_id, "reason": "complaint under investigation", "scope": scope}
    cv.send("holds_commands", hold_id, cloudevent("callvault.hold.placed.v1", data))


def dsr(cv: Callvault, kind: str, subject: dict[str, list[str]], verified: bool = True) -> str:
    request_id = f"dsr-{uuid.uuid4().hex[:10]}"
    data = {
        "request_id": request_id,
        "type": kind,
        "received_at": stamp(datetime.now(UTC)),
        "identity_verified": verified,
        "subject": {"phone_numbers": [], "emails": [], "customer_ids": [], "order_ids": []}
        | subject,
    }
    cv.send("dsr_requests", request_id, cloudevent("callvault.dsr.requested.v1", data))
    return request_id


def sample(cv: Callvault, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(cv.metrics_text() or ""):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                total += s.value
    return total


def call_ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["call_id"] for e in events]


def missing_landing_uri(cv: Callvault, name: str) -> str:
    return f"s3://{cv.settings.landing_bucket}/incoming/{name}"


# --- Prometheus ---------------------------------------------------------------------------
def prometheus_url(cv: Callvault) -> str:
    return cv.env.get("CALLVAULT_PROMETHEUS_URL", "http://127.0.0.1:19090").rstrip("/")


def prom_query(cv: Callvault, expr: str) -> dict[str, Any]:
    """The /api/v1/query answer; an invalid query comes back with status 'error'."""
    url = f"{prometheus_url(cv)}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 400/422 carry the error as JSON too
        answer = json.loads(exc.read())
    return answer


def series(cv: Callvault, expr: str) -> list[dict[str, Any]]:
    answer = prom_query(cv, expr)
    assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


@pytest.fixture
def scraped(instance: Instance, tmp_path: Path) -> Iterator[tuple[Callvault, str]]:
    """A short-retention instance whose worker Prometheus scrapes as job=callvault, with a
    unique ``instance`` label (a file_sd target file, removed afterwards)."""
    targets_dir = Path(instance.env.get("CALLVAULT_PROMETHEUS_TARGETS_DIR", ""))
    if not targets_dir.is_dir():
        pytest.fail("CALLVAULT_PROMETHEUS_TARGETS_DIR is not set: source .local/stack.env")
    instance.env.update(
        {
            "CALLVAULT_RETENTION": "PT5S",
            "CALLVAULT_SCHEDULER_INTERVAL": "PT0.5S",
            "CALLVAULT_METRICS_INTERVAL": "PT1S",
        }
    )
    cv = Callvault(instance, tmp_path)
    cv.migrate()
    port = int(instance.env["CALLVAULT_METRICS_PORT"])
    target = targets_dir / f"test-{instance.name}.json"
    staged = targets_dir / f".test-{instance.name}.tmp"  # *.json only: never half-read
    staged.write_text(
        json.dumps(
            [
                {
                    "targets": [f"127.0.0.1:{port}"],
                    "labels": {"job": "callvault", "instance": instance.name},
                }
            ]
        )
    )
    staged.rename(target)
    try:
        yield cv, instance.name
    finally:
        target.unlink(missing_ok=True)
        cv.stop_all()


def demo_traffic(cv: Callvault) -> dict[str, str]:
    """Good calls, a call without the notice, bad events, a subject hold with a held call, an
    erasure kept open by that hold, and an access request."""
    held_phone = "+370 633 10001"
    hold(cv, "h-ops", {"subject": {"phone_numbers": [held_phone]}})
    for i in range(4):
        cv.call(
            f"ops-{i}",
            make_wav(0.2),
            customer={"name": "Demo Customer", "email": f"demo{i}@example.lt"},
        )
    cv.call("ops-nonotice", make_wav(0.2), notice=False)
    cv.send("calls_ended", "ops-bad", b'{"specversion": "1.0", "broken": ')
    cv.call("ops-missing", uri=missing_landing_uri(cv, "never-uploaded.wav"))
    cv.read("holds_commands", lambda seen: len(seen) >= 1)
    wait_for(lambda: cv.metric("callvault_holds_active") == 1, 60, "hold in force")
    cv.call("ops-held", make_wav(0.2), caller=held_phone)
    cv.read("recordings_stored", lambda seen: {"ops-0", "ops-held"} <= set(call_ids(seen)))
    erasure = dsr(cv, "erasure", {"phone_numbers": [held_phone]})
    access = dsr(cv, "access", {"emails": ["demo1@example.lt"]})
    return {"erasure": erasure, "access": access}


def dashboard_targets() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((f"{panel['title']} [{target.get('refId')}]", target["expr"]))

    walk(board["panels"])
    return found


def substitute(expr: str, instance: str) -> str:
    """Grafana's variables as the dashboard would send them for this one worker."""
    values = {
        "$__rate_interval": "1m",
        "$__interval": "15s",
        "$__range": "1h",
        "$job": "callvault",
        "$instance": re.escape(instance),
    }
    for name, value in values.items():  # longest names first: $__rate_interval before $__range
        expr = expr.replace(name, value).replace("${" + name[1:] + "}", value)
    assert "$" not in expr, f"unknown dashboard variable in {expr}"
    return expr


# --- (a) dashboard ------------------------------------------------------------------------
def test_dashboard_json_is_generated_from_its_builder() -> None:
    done = subprocess.run(
        [sys.executable, str(BUILDER), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # the datasource (an import input, no uid) is checked by tests/integration/test_dashboard.py
    exprs = " ".join(expr for _, expr in dashboard_targets())
    for metric in (
        "callvault_purge_lag_seconds_bucket",
        "callvault_retention_oldest_overdue_seconds",
        "callvault_retention_overdue_recordings",
        "callvault_events_processed_total",
        "callvault_deadletter_total",
        "callvault_dsr_open_requests",
        "callvault_dsr_nearest_deadline_seconds",
        "callvault_holds_active",
        "callvault_consumer_lag_messages",
        "up{",
        "callvault_recordings_stored_total",
        "callvault_recordings_purged_total",
    ):
        assert metric in exprs, f"no panel shows {metric}"


def test_every_panel_query_returns_series_from_live_prometheus(
    scraped: tuple[Callvault, str],
) -> None:
    cv, instance = scraped
    cv.start_worker()
    requests = demo_traffic(cv)
    purged = cv.read("recordings_purged", lambda seen: len(seen) >= 5, timeout=120)
    assert {"ops-0", "ops-1", "ops-2", "ops-3", "ops-nonotice"} <= set(call_ids(purged))
    cv.read("dsr_results", lambda seen: len(seen) >= 2, timeout=120)
    cv.read("deadletter", lambda seen: len(seen) >= 2)
    lag = "callvault_consumer_lag_messages{"
    wait_for(lambda: lag in (cv.metrics_text() or ""), 30, "consumer lag")
    open_requests = db(cv, "SELECT request_id FROM dsr_requests WHERE cardinality(pending) > 0")
    assert open_requests == [(requests["erasure"],)], "the held erasure should stay open"

    # Prometheus has scraped this worker after the traffic (5 s scrape interval)
    def scraped_everything() -> bool:
        return bool(
            series(cv, f'callvault_purge_lag_seconds_count{{instance="{instance}"}} >= 4')
            and series(cv, f'callvault_dsr_open_requests{{instance="{instance}"}} == 1')
            and series(cv, f'callvault_consumer_lag_messages{{instance="{instance}"}}')
            and series(cv, f'callvault_deadletter_total{{instance="{instance}"}}')
            and series(cv, f'count_over_time(up{{instance="{instance}"}}[5m]) >= 3')
        )

    wait_for(scraped_everything, 90, "Prometheus to scrape the worker after the traffic")
    targets = dashboard_targets()
    assert len(targets) >= 15
    failures = []
    for title, expr in targets:
        query = substitute(expr, instance)
        answer = prom_query(cv, query)
        if answer["status"] != "success":
            failures.append(f"{title}: invalid: {answer.get('error')}\n    {query}")
        elif not answer["data"]["result"]:
            failures.append(f"{title}: no series\n    {query}")
    assert not failures, "dashboard panels failing against live Prometheus:\n" + "\n".join(failures)
    # the numbers behind the compliance panels are the traffic's
    assert series(cv, f'up{{job="callvault", instance="{instance}"}}')[0]["value"][1] == "1"
    holds = series(cv, f'max(callvault_holds_active{{instance="{instance}"}})')
    assert holds[0]["value"][1] == "1"
    deadline = series(cv, f'min(callvault_dsr_nearest_deadline_seconds{{instance="{instance}"}})')
    assert 27 * 86400 < float(deadline[0]["value"][1]) <= 31 * 86400
    codes = series(
        cv, f'sum by (error_code) (callvault_deadletter_total{{instance="{instance}"}}) > 0'
    )
    assert {s["metric"]["error_code"] for s in codes} == {"invalid_json", "fetch_failed"}
    lag = series(cv, f'callvault_consumer_lag_messages{{instance="{instance}"}}')
    assert {s["metric"]["topic"] for s in lag} == {
        cv.instance.topic(t) for t in ("calls_ended", "holds_commands", "dsr_requests")
    }
    assert {s["metric"]["consumergroup"] for s in lag} == {cv.settings.app_id}
    assert all(s["metric"]["partition"] in {"0", "1"} for s in lag)


# --- (b) dead letters -----------------------------------------------------------------------
def test_deadletter_list_masks_and_replay_after_a_fix_is_idempotent(callvault: Callvault) -> None:
    cv = callvault
    cv.start_worker()
    audio = make_wav(0.4)
    key = f"incoming/{uuid.uuid4()}.wav"
    uri = f"s3://{cv.settings.landing_bucket}/{key}"
    cv.call("dl-fetch", audio, uri=uri)  # the landing object is not there (yet)
    # a producer bug that puts personal data where the schema does not allow it.
    bad = {
        "call_id": "dl-schema",
        "direction": "+370 655 12345 jonas.jonaitis@example.lt",
        "caller": "+370 655 12345",
        "callee": "+370 521 44500",
        "started_at": stamp(datetime.now(UTC)),
        "ended_at": stamp(datetime.now(UTC)),
        "notice_played": True,
        "recording": {"uri": uri},
    }
    cv.send("calls_ended", "dl-fetch", cloudevent("callvault.call.ended.v1", bad))
    letters = cv.read("deadletter", lambda seen: len(seen) >= 2)
    assert sorted(e["data"]["error_code"] for e in letters) == ["fetch_failed", "schema_violation"]
    assert "jonas" not in letters[1]["data"]["error"]  # the copy keeps the bytes, not the text

    listing = cli(cv, "deadletter", "list").stdout
    assert "2 dead letter(s)" in listing
    assert "fetch_failed" in listing
    assert "schema_violation" in listing
    assert cv.instance.topic("calls_ended") in listing
    for personal in ("+370 655 12345", "37065512345", "655 12345", "jonas", "example.lt"):
        assert personal not in listing.lower()
    only = cli(cv, "deadletter", "list", "--error-code", "fetch_failed").stdout
    assert "1 dead letter(s)" in only
    assert "schema_violation" not in only
    rows = [line.split() for line in only.splitlines() if "fetch_failed" in line]
    assert len(rows) == 1
    position = rows[0][0]  # PARTITION:OFFSET in the dead-letter topic

    # the fix: the telephony system uploads the missing recording; then replay
    cv.objects.put_stream(
        cv.settings.landing_bucket, key, [audio], content_type="application/octet-stream"
    )
    assert "replayed 1 event(s)" in cli(cv, "deadletter", "replay", "--offset", position).stdout
    stored = cv.read("recordings_stored", lambda seen: "dl-fetch" in call_ids(seen))
    assert call_ids(stored) == ["dl-fetch"]
    wait_for(lambda: cv.metric("callvault_recordings_stored_total") == 1, 30, "stored counter")

    # replaying again (and by error code) changes nothing: one recording, one stored event
    cli(cv, "deadletter", "replay", "--offset", position)
    cli(cv, "deadletter", "replay", "--error-code", "fetch_failed")
    wait_for(
        lambda: sample(cv, "callvault_events_processed_total", outcome="duplicate") >= 2,
        60,
        "the replays to be handled as duplicates",
    )
    time.sleep(2)  # let the outbox relay publish anything it (wrongly) would
    stored = cv.read("recordings_stored", lambda seen: len(seen) >= 1)
    assert call_ids(stored) == ["dl-fetch"]
    assert db(cv, "SELECT status FROM recordings WHERE call_id = 'dl-fetch'") == [("stored",)]
    assert cv.metric("callvault_recordings_stored_total") == 1
    # no new dead letters from the replays
    assert "2 dead letter(s)" in cli(cv, "deadletter", "list").stdout
    nothing = cli(cv, "deadletter", "replay", check=False)
    assert nothing.returncode == 2  # nothing chosen: a usage error, not "replay everything"


# --- (c) reconcile --------------------------------------------------------------------------
def test_reconcile_finds_injected_orphans_and_missing_objects_exactly(
    callvault: Callvault,
) -> None:
    cv = callvault
    cv.start_worker()
    for call_id in ("rc-1", "rc-2", "rc-3"):
        cv.call(call_id, make_wav(0.2))
    cv.read("recordings_stored", lambda seen: len(seen) >= 3)
    clean = json.loads(cli(cv, "reconcile", "--json").stdout)
    assert clean["orphan_objects"] == []
    assert clean["missing_objects"] == []
    assert clean["overdue_not_purged"] == []

    vault = cv.settings.vault_bucket
    orphan = f"recordings/orphan-{uuid.uuid4().hex[:8]}"
    cv.objects.put_stream(vault, orphan, [b"left behind"], content_type="application/octet-stream")
    (recording_id, object_key), *_ = db(
        cv, "SELECT recording_id, object_key FROM recordings WHERE call_id = 'rc-2'"
    )
    client = cv.objects.client
    from minio.deleteobjects import DeleteObject

    versions = [
        DeleteObject(o.object_name, o.version_id)
        for o in client.list_objects(vault, prefix=object_key, include_version=True)
        if o.object_name == object_key
    ]
    assert versions
    errors = list(client.remove_objects(vault, iter(versions), bypass_governance_mode=True))
    assert errors == []

    grace = ("--orphan-grace", "PT0S")  # the orphan is seconds old; count it anyway
    reported = cli(cv, "reconcile", "--json", *grace, check=False)
    assert reported.returncode == 1  # findings: a cron job or an operator notices
    found = json.loads(reported.stdout)
    (orphan_version,) = found["orphan_objects"]
    assert orphan_version.startswith(f"{orphan}@")
    assert found["missing_objects"] == [str(recording_id)]
    assert found["overdue_not_purged"] == []
    assert found["repaired"] == {}
    text = cli(cv, "reconcile", *grace, check=False).stdout
    assert re.search(r"orphan_object\s+1", text)
    assert re.search(r"missing_object\s+1", text)
    assert f"orphan  {orphan_version}" in text
    assert f"missing {recording_id}" in text

    repaired = json.loads(cli(cv, "reconcile", "--repair", "--yes", "--json", *grace).stdout)
    assert repaired["repaired"]["orphan_objects_deleted"] == 1
    assert list(client.list_objects(vault, prefix=orphan, include_version=True)) == []
    after = json.loads(cli(cv, "reconcile", "--json", *grace, check=False).stdout)
    assert after["orphan_objects"] == []
    assert after["missing_objects"] == [str(recording_id)]  # reported, never invented
    others = db(cv, "SELECT object_key FROM recordings WHERE call_id IN ('rc-1', 'rc-3')")
    for (key,) in others:  # the repair touched nothing else
        assert list(client.list_objects(vault, prefix=key))


# --- (d) status -----------------------------------------------------------------------------
def test_status_prints_the_summary(callvault: Callvault) -> None:
    cv = callvault
    cv.start_worker(extra_env={"CALLVAULT_METRICS_INTERVAL": "PT1S"})
    hold(cv, "h-status", {"call_ids": ["st-2"]})
    for call_id in ("st-1", "st-2"):
        cv.call(call_id, make_wav(0.2))
    cv.send("calls_ended", "st-bad", b"not json at all")
    cv.read("recordings_stored", lambda seen: len(seen) >= 2)
    cv.read("deadletter", lambda seen: len(seen) >= 1)
    wait_for(lambda: cv.metric("callvault_holds_active") == 1, 90, "hold gauge")

    done = cli(cv, "status")
    text = done.stdout
    assert done.returncode == 0
    fields = {
        m.group(1).strip(): m.group(2)
        for m in re.finditer(r"^(\S[\w ()]*?)\s{2,}(\S.*)$", text, flags=re.MULTILINE)
    }
    assert fields["recordings stored"] == "2"
    assert fields["overdue (not held)"] == "0"
    assert fields["oldest overdue"] == "0 s"
    assert fields["open DSRs"] == "0"
    assert fields["nearest DSR deadline"] == "-"
    assert fields["legal holds active"] == "1"
    assert fields["dead letters"] == "1"
    assert "consumer lag (total)" in fields
    assert int(fields["consumer lag (total)"]) >= 0
    report = json.loads(cli(cv, "status", "--json").stdout)
    assert report["holds_active"] == 1
    assert report["dead_letters"] == 1
    assert set(report["consumer_lag"]) == {
        f"{cv.instance.topic(t)}[{p}]"
        for t in ("calls_ended", "dsr_requests", "holds_commands")
        for p in (0, 1)
    }


# --- (e) no personal data in logs or metrics --------------------------------------------------
NAME = "Zigmantas Kvietkauskas"
NAME_UTF8 = "Gintarė Žemaitytė"
EMAIL = "zigmantas.kvietkauskas@example.lt"
PHONES = {  # as written -> digits only
    "+370 698 76123": "37069876123",
    "8 698 76123": "869876123",
    "(8 5) 271 2804": "852712804",
    "+37052712804": "37052712804",
    "0037064455667": "0037064455667",
    "+370 (644) 55-667": "37064455667",
}
NATIONAL_DIGITS = ("69876123", "52712804", "64455667")


def _decoded(text: str) -> str:
    """The log text plus every JSON line decoded (a JSON renderer may escape non-ASCII)."""
    out = [text]
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            out.append(json.dumps(json.loads(line[start:]), ensure_ascii=False))
        except ValueError:
            continue
    return "\n".join(out)


def personal_strings() -> list[str]:
    found = [NAME, NAME_UTF8, EMAIL, EMAIL.upper(), *NATIONAL_DIGITS]
    found += ["Zigmantas", "Kvietkauskas", "Gintarė", "Žemaitytė"]
    for written, digits in PHONES.items():
        found += [written, digits, "+" + digits.removeprefix("00")]
    return found


def test_no_personal_data_in_logs_or_metrics(instance: Instance, tmp_path: Path) -> None:
    instance.env.update(
        {
            "CALLVAULT_RETENTION": "PT5S",
            "CALLVAULT_SCHEDULER_INTERVAL": "PT0.5S",
            "CALLVAULT_METRICS_INTERVAL": "PT1S",
            "CALLVAULT_LOG_FORMAT": "json",
            "CALLVAULT_LOG_LEVEL": "DEBUG",
        }
    )
    cv = Callvault(instance, tmp_path)
    cv.migrate()
    try:
        cv.start_worker()
        phones = list(PHONES)
        customer = {"name": NAME, "email": EMAIL, "customer_id": "C-9001", "order_ids": ["O-1"]}
        # holds: a subject scope naming the person (phone in one notation, e-mail in capitals);
        # it keeps the calls with the e-mail and the calls from that number
        hold(cv, "h-pii", {"subject": {"phone_numbers": [phones[4]], "emails": [EMAIL.upper()]}})
        cv.read("holds_commands", lambda seen: len(seen) >= 1)
        wait_for(lambda: cv.metric("callvault_holds_active") == 1, 60, "hold in force")
        # ingest: every notation, inbound and outbound, names and e-mails; retention purges
        # the ones not held after 5 s (pii-1, pii-3)
        for i, phone in enumerate(phones):
            inbound = i % 2 == 0
            cv.call(
                f"pii-{i}",
                make_wav(0.2),
                direction="inbound" if inbound else "outbound",
                caller=phone if inbound else "+370 521 44500",
                callee="+370 521 44500" if inbound else phone,
                customer=customer if inbound else {"name": NAME_UTF8 if i == 3 else NAME},
            )
        # a landing object named after the caller, as some telephony systems do
        named = f"incoming/{phones[0].replace(' ', '')}-{EMAIL}.wav"
        cv.objects.put_stream(
            cv.settings.landing_bucket,
            named,
            [make_wav(0.2)],
            content_type="application/octet-stream",
        )
        cv.call(
            "pii-named",
            uri=f"s3://{cv.settings.landing_bucket}/{named}",
            caller=phones[1],
            customer=customer,
        )
        stored = cv.read("recordings_stored", lambda seen: len(seen) >= len(phones) + 1)
        assert len(stored) == len(phones) + 1
        # dead letters: schema violations and a missing object, all carrying personal data
        bad_direction = {
            "call_id": "pii-bad-1",
            "direction": f"{NAME} {phones[0]}",
            "caller": phones[0],
            "callee": EMAIL,
            "started_at": stamp(datetime.now(UTC)),
            "ended_at": stamp(datetime.now(UTC)),
            "notice_played": True,
            "recording": {"uri": "s3://nowhere/x.wav"},
            "customer": {"name": NAME, "email": EMAIL},
        }
        cv.send("calls_ended", "pii-bad-1", cloudevent("callvault.call.ended.v1", bad_direction))
        cv.send(
            "calls_ended",
            phones[2],  # a key that is a phone number
            f'{{"caller": "{phones[2]}", "name": "{NAME}", "email": "{EMAIL}", '.encode(),
        )
        cv.call(
            "pii-missing",
            uri=missing_landing_uri(cv, f"{phones[3]}-{EMAIL}.wav"),
            caller=phones[3],
            customer=customer,
        )
        cv.send(
            "dsr_requests",
            "pii-bad-dsr",
            cloudevent(
                "callvault.dsr.requested.v1",
                {"request_id": "pii-bad-dsr", "type": "erasure", "subject": {"emails": [EMAIL]}},
            ),
        )
        cv.read("deadletter", lambda seen: len(seen) >= 4)
        # DSRs: access and erasure by every identifier (the held recordings stay)
        access = dsr(cv, "access", {"phone_numbers": [phones[1]], "emails": [EMAIL]})
        erasure = dsr(
            cv,
            "erasure",
            {"phone_numbers": [phones[0], phones[2], phones[5]], "emails": [EMAIL.title()]},
        )
        unverified = dsr(cv, "erasure", {"phone_numbers": [phones[4]]}, verified=False)
        answered = cv.read(
            "dsr_results",
            lambda seen: {access, erasure, unverified} <= {e["data"]["request_id"] for e in seen},
            timeout=120,
        )
        statuses = {e["data"]["request_id"]: e["data"]["status"] for e in answered}
        assert statuses[unverified] == "rejected"
        assert statuses[erasure] == "partial"  # the held recordings stay until the release
        # the hold is released: the held recordings are purged now (past due)
        cv.send(
            "holds_commands",
            "h-pii",
            cloudevent("callvault.hold.released.v1", {"hold_id": "h-pii"}),
        )
        cv.read(
            "recordings_purged",
            lambda seen: (
                {e["data"]["call_id"] for e in seen} >= {f"pii-{i}" for i in range(len(phones))}
            ),
            timeout=120,
        )
        wait_for(lambda: cv.metric("callvault_holds_active") == 0, 30, "hold released")
        exposition = cv.metrics_text() or ""
        assert "callvault_recordings_purged_total" in exposition
    finally:
        cv.stop_all()
        logs = cv.logs()
    assert '"event": "handled"' in logs or '"event":"handled"' in logs, logs[-2000:]
    haystacks = {"worker logs": _decoded(logs), "/metrics": exposition}
    leaks = [
        f"{where}: {needle!r} in …{text[max(0, i - 80) : i + 80]!r}…"
        for where, text in haystacks.items()
        for needle in personal_strings()
        if (i := text.find(needle)) >= 0
    ]
    assert not leaks, "personal data leaked:\n" + "\n".join(leaks)


# --- the lag refresher without a broker --------------------------------------------------------
def test_consumer_lag_sets_the_gauge_and_turns_broker_errors_transient() -> None:
    from kafka.errors import KafkaTimeoutError

    from workers.adapters.kafka.lag import ConsumerLag
    from workers.adapters.metrics import Metrics
    from workers.domain.errors import TransientError

    class FakeProbe:
        closed = 0

        def __init__(self, bootstrap: str, group: str) -> None:
            self.fail = bootstrap == "down:9092"

        def measure(self, topics: Any) -> dict[tuple[str, int], int]:
            if self.fail:
                raise KafkaTimeoutError("no broker")
            return {(topic, p): 3 * p for topic in topics for p in (0, 1)}

        def close(self) -> None:
            FakeProbe.closed += 1

    metrics = Metrics()
    lag = ConsumerLag("up:9092", "g1", ["a", "b", "a"], metrics, probe_factory=FakeProbe)
    assert lag.topics == ("a", "b")
    assert lag.refresh() == 6
    value = metrics.registry.get_sample_value
    labels = {"consumergroup": "g1", "topic": "b", "partition": "1"}
    assert value("callvault_consumer_lag_messages", labels) == 3
    broken = ConsumerLag("down:9092", "g1", ["a"], metrics, probe_factory=FakeProbe)
    with pytest.raises(TransientError):
        broken.refresh()
    assert FakeProbe.closed == 1  # a fresh client next tick
    assert ConsumerLag("up:9092", "g1", [], metrics, probe_factory=FakeProbe).refresh() == 0
