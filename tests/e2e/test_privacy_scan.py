"""No personal data survives in metadata: call ids and hold texts full of phone numbers, names
and e-mails go through ingest, holds, erasure and retention; then every table, the audit trail,
every output topic, the worker's log and /metrics are searched for them."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from testbed.probes import wait_for
from tests.e2e.harness import CALLVAULT, Callvault, cloudevent, make_wav

# What real PBXs and staff write: numbers, names and e-mails inside ids and free text.
ERASED_CALL = "37061234567-ona.petraitiene@example.lt-0001"
RETAINED_CALL = "Jonaitis.Jonas-861112222-0002"
HELD_CALL = "ruta@example.lt:852144501:0003"
REASON = "Ona Petraitienė (+370 612 34567, ona.petraitiene@example.lt) disputes order ORD-77"
CASE_REF = "case-jonaitis-861112222"
PERSONAL = (
    "37061234567",
    "612 34567",
    "61234567",
    "861112222",
    "61112222",
    "852144501",
    "52144501",
    "Petraitien",
    "ona.petraitiene",
    "Jonaitis",
    "ruta@example",
    "ORD-77",
)
SHOP = "+370 521 44500"


def found_in(text: str) -> list[str]:
    folded = text.casefold()
    return [p for p in PERSONAL if p.casefold() in folded]


def tables(cv: Callvault) -> dict[str, str]:
    """Every row of every table, as JSON text (bytea as hex)."""
    dumped = {}
    with psycopg.connect(cv.instance.owner_url) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        ]
        for name in names:
            rows = conn.execute(
                f'SELECT row_to_json(t)::text FROM "{name}" t'  # noqa: S608 - catalogue names
            ).fetchall()
            dumped[name] = "\n".join(r[0] for r in rows)
    return dumped


def without_call_ids(value: Any) -> Any:
    """An output event minus its `call_id` fields: the contract echoes the telephony system's
    own id back to it, and nothing else may carry personal data."""
    if isinstance(value, dict):
        return {k: without_call_ids(v) for k, v in value.items() if k != "call_id"}
    if isinstance(value, list):
        return [without_call_ids(v) for v in value]
    return value


def test_personal_data_in_ids_and_free_text_survives_nowhere(callvault: Callvault) -> None:
    cv = callvault
    cv.start_worker(extra_env={"CALLVAULT_AUDIT_CHECKPOINT_INTERVAL": "PT2S"})
    now = datetime.now(UTC)
    customer = {"name": "Ona Petraitienė", "email": "ona.petraitiene@example.lt"}
    cv.call(ERASED_CALL, make_wav(0.2), caller="8 612 34567", callee=SHOP, customer=customer)
    cv.call(
        RETAINED_CALL,
        make_wav(0.2),
        caller="8 611 12222",
        callee=SHOP,
        ended=now - timedelta(days=400),
    )
    cv.call(
        HELD_CALL,
        make_wav(0.2),
        caller="8 5 214 4501",
        callee=SHOP,
        ended=now - timedelta(days=400),
    )
    hold = {
        "hold_id": "h-scan",
        "reason": REASON,
        "case_ref": CASE_REF,
        "scope": {"call_ids": [HELD_CALL]},
    }
    cv.send("holds_commands", "h-scan", cloudevent("callvault.hold.placed.v1", hold))
    cv.read("recordings_stored", lambda seen: len(seen) >= 3)
    request = {
        "request_id": "req-scan",
        "type": "erasure",
        "received_at": now.isoformat(),
        "identity_verified": True,
        "subject": {"phone_numbers": ["+370 612 34567"], "emails": ["Ona.Petraitiene@example.lt"]},
    }
    cv.send("dsr_requests", "req-scan", cloudevent("callvault.dsr.requested.v1", request))
    cv.read("dsr_results", lambda seen: any(e["data"]["status"] == "completed" for e in seen))
    cv.read("recordings_purged", lambda seen: len(seen) >= 2)  # erased and retained ones
    cv.send(
        "holds_commands", "h-scan", cloudevent("callvault.hold.released.v1", {"hold_id": "h-scan"})
    )
    cv.read("recordings_purged", lambda seen: len(seen) >= 3)  # the held one, once released
    wait_for(lambda: cv.metric("callvault_recordings_purged_total") >= 3, 60, "purge counter")

    leaks = {name: found_in(text) for name, text in tables(cv).items()}
    assert {name: found for name, found in leaks.items() if found} == {}
    for logical in (
        "recordings_stored",
        "retention_due",
        "recordings_purged",
        "dsr_results",
        "audit_checkpoints",
    ):
        for event in cv.read(logical, lambda seen: True, timeout=5):
            assert found_in(json.dumps(without_call_ids(event), ensure_ascii=False)) == [], logical
    assert found_in(cv.metrics_text() or "") == []
    cv.stop_all()
    assert found_in(cv.logs()) == []
    held = subprocess.run(
        [CALLVAULT, "hold", "show", "h-scan", "--json"],
        env=cv.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(held.stdout)["reason"] == REASON  # readable by compliance, sealed at rest
