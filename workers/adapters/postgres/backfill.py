"""Data written by earlier versions, brought to today's form where that needs callvault's
keys (SQL migrations cannot compute a keyed digest or seal text): call digests of recordings,
call-scoped hold targets and sealed hold texts. Idempotent; run by ``callvault migrate``."""

from __future__ import annotations

import json
from typing import Any

from ...domain.keyed import Mac
from ...domain.model import CALL_ID, call_digest
from .database import PostgresDatabase


def backfill(db: PostgresDatabase, hash_key: Mac) -> int:
    sealer = db.sealer
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT recording_id, call_id FROM recordings WHERE call_digest IS NULL"
        ).fetchall()
        for row in rows:
            digest = call_digest(hash_key, row["call_id"] or str(row["recording_id"]))
            conn.execute(
                "UPDATE recordings SET call_digest = %s, "
                "call_id = CASE WHEN status = 'purged' THEN NULL ELSE call_id END "
                "WHERE recording_id = %s",
                (digest, row["recording_id"]),
            )
        holds = conn.execute(
            "SELECT hold_id, reason, case_ref FROM holds WHERE reason IS NOT NULL"
        ).fetchall()
        for hold in holds:
            case_ref = hold["case_ref"]
            conn.execute(
                "UPDATE holds SET reason = NULL, case_ref = NULL, reason_sealed = %s, "
                "case_ref_sealed = %s WHERE hold_id = %s",
                (
                    sealer.seal(hold["reason"], hold["hold_id"]),
                    None
                    if case_ref is None
                    else sealer.seal(case_ref, f"{hold['hold_id']}/case_ref"),
                    hold["hold_id"],
                ),
            )
        converted = _digest_hold_targets(conn, hash_key, sealer)
    return len(rows) + len(holds) + converted


def _digest_hold_targets(conn: Any, hash_key: Mac, sealer: Any) -> int:
    """Call-scoped holds once kept the raw call ids; keep their keyed digests, and the ids
    only sealed, while the hold is in force (for a hash-key rotation)."""
    holds = conn.execute(
        "SELECT hold_id, targets, released_at FROM holds WHERE scope_kind = 'call_ids' "
        "AND EXISTS (SELECT 1 FROM unnest(targets) t WHERE t !~ '^[0-9a-f]{64}$')"
    ).fetchall()
    for hold in holds:
        targets, hold_id = hold["targets"], hold["hold_id"]
        digests = [t if _is_digest(t) else call_digest(hash_key, t) for t in targets]
        call_ids = sorted([CALL_ID, t] for t in targets if not _is_digest(t))
        sealed = (
            None
            if hold["released_at"] is not None
            else sealer.seal(json.dumps(call_ids, separators=(",", ":")), f"{hold_id}/subject")
        )
        conn.execute(
            "UPDATE holds SET targets = %s, subject_sealed = %s WHERE hold_id = %s",
            (digests, sealed, hold_id),
        )
    return len(holds)


def _is_digest(target: str) -> bool:
    return len(target) == 64 and all(c in "0123456789abcdef" for c in target)
