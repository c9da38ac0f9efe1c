"""Plain dicts of the console's records, for JSON answers and templates alike."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ...app.console.model import Access, Disclosure
from ...app.console.oversight import MonthlyReport, Overview
from ...app.ports.console import DsrRecord, HoldView
from ...domain.retention import rfc3339


def access_item(access: Access) -> dict[str, Any]:
    return {
        "at": rfc3339(access.at),
        "user": access.username,
        "purpose": access.purpose.value,
        "case_ref": access.case_ref,
        "recording_id": access.recording_id,
    }


def disclosure_item(disclosure: Disclosure) -> dict[str, Any]:
    return {
        "disclosure_id": disclosure.disclosure_id,
        "recipient": disclosure.recipient,
        "recipient_kind": disclosure.recipient_kind.value,
        "legal_basis": disclosure.legal_basis,
        "reference": disclosure.reference,
        "recording_ids": list(disclosure.recording_ids),
        "disclosed_by": disclosure.disclosed_by,
        "disclosed_at": rfc3339(disclosure.disclosed_at),
        "export_expires_at": rfc3339(disclosure.export_expires_at)
        if disclosure.export_expires_at
        else None,
        "listed_to_subject": disclosure.recipient_kind.told_to_subject,
    }


def hold_item(view: HoldView) -> dict[str, Any]:
    hold = view.hold
    return {
        "hold_id": hold.hold_id,
        "reason": hold.reason,
        "case_ref": hold.case_ref,
        "scope": hold.scope_kind.value,
        "targets": list(hold.targets),  # recording or call ids; a person's scope is digests
        "placed_at": rfc3339(hold.placed_at) if hold.placed_at else None,
        "recordings": [{"recording_id": r, "call_id": c} for r, c in view.recordings],
    }


def request_item(record: DsrRecord) -> dict[str, Any]:
    result = record.result or {}
    return {
        "request_id": record.request_id,
        "type": record.dsr_type,
        "status": record.status,
        "received_at": rfc3339(record.received_at) if record.received_at else None,
        "due_at": rfc3339(record.due_at) if record.due_at else None,
        "language": record.language,  # of the answer's letters (None: the default)
        "tenant": record.tenant,
        "completed_at": rfc3339(record.completed_at) if record.completed_at else None,
        "pending_recordings": record.pending_recording_ids,
        "reason": result.get("reason"),
        "recordings": result.get("recordings", []),
        "export": result.get("export"),
        "certificate": result.get("certificate"),
        "letter": result.get("letter"),  # an erasure answer's certificate for people (PDF)
        "recipients_to_notify": result.get("recipients_to_notify", []),
    }


def overview_dict(overview: Overview) -> dict[str, Any]:
    data = asdict(overview)
    data["generated_at"] = rfc3339(overview.generated_at)
    for name in ("per_day", "lag_per_day"):
        data[name]["days"] = [d.isoformat() for d in data[name]["days"]]
    return data


def report_dict(report: MonthlyReport) -> dict[str, Any]:
    data = asdict(report)
    for name in ("period_start", "period_end", "generated_at"):
        data[name] = rfc3339(getattr(report, name))
    data["disclosures"] = [disclosure_item(d) for d in report.disclosures]
    return data
