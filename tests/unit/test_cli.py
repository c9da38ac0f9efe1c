"""The CLI as the compliance and operations teams use it, over the in-memory callvault: each
command is a thin call into the application, prints what a person needs (or JSON with RFC 3339
times), and answers a mistake with one line and its documented exit code."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.unit.conftest import CUSTOMER_PHONE, WAV, World
from workers import __version__
from workers.domain.errors import StoreRejected
from workers.domain.messages import PurgesScheduled
from workers.domain.model import PurgeReason
from workers.entrypoints.cli import cli

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def run(world: World, *args: str, stdin: str | None = None) -> Result:
    """``callvault ARGS`` over the world's callvault; what it published is delivered to the
    worker's inputs, as Kafka would."""
    before = len(world.bus.records)
    result = CliRunner().invoke(cli, list(args), obj=world.container, input=stdin)
    for topic, key, value in world.bus.records[before:]:
        if topic in ("holds.commands", "dsr.requests", "calls.ended"):
            world.deliver(topic, value, key)
    return result


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def failed(result: Result, code: int) -> str:
    """The one line a failing command prints on stderr."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_version_and_exit_codes_are_in_the_help(world: World) -> None:
    assert __version__ in ok(run(world, "--version"))
    help_text = ok(run(world, "--help"))
    for code in ("0", "1", "2", "3", "4", "5", "6", "7", "70", "75"):
        assert re.search(rf"^\s+{code}\s+\S", help_text, re.M), code


def test_a_hold_placed_from_the_cli_is_shown_with_what_it_keeps(world: World) -> None:
    world.store_call("c1")
    out = ok(run(world, "hold", "place", "H1", "--reason", "dispute", "--call-id", "c1"))
    assert "H1" in out
    shown = json.loads(ok(run(world, "hold", "show", "H1", "--json")))
    assert shown["recordings"] == [world.recording_id("c1")]
    assert (shown["reason"], shown["scope"]) == ("dispute", "call_ids")
    assert RFC3339.match(shown["placed_at"])
    listed = json.loads(ok(run(world, "hold", "list", "--json")))
    assert [h["hold_id"] for h in listed] == ["H1"]
    ok(run(world, "hold", "release", "H1"))
    assert json.loads(ok(run(world, "hold", "list", "--json"))) == []
    assert json.loads(ok(run(world, "hold", "show", "H1", "--json")))["released_at"]


def test_a_hold_needs_exactly_one_kind_of_scope(world: World) -> None:
    result = run(world, "hold", "place", "H1", "--reason", "r", "--call-id", "c", "--phone", "1")
    assert result.exit_code == 2
    assert "one kind" in result.stderr


def test_an_unknown_hold_or_request_exits_6(world: World) -> None:
    assert "no hold NOPE" in failed(run(world, "hold", "show", "NOPE"), 6)
    assert "no request R-0" in failed(run(world, "dsr", "status", "R-0"), 6)


def test_a_request_submitted_from_the_cli_is_answered_and_listed_until_then(
    world: World,
) -> None:
    world.store_call("c1")
    world.place_hold("H1", {"call_ids": ["c1"]})
    request_id = ok(run(world, "dsr", "submit", "erasure", "--phone", "8 612 34567")).strip()
    status = json.loads(ok(run(world, "dsr", "status", request_id, "--json")))
    assert (status["type"], status["status"]) == ("erasure", "partial")  # the hold keeps c1
    assert RFC3339.match(status["due_at"])
    (open_request,) = json.loads(ok(run(world, "dsr", "list", "--json")))
    assert open_request["request_id"] == request_id
    assert open_request["pending_recordings"] == 1
    world.release_hold("H1")
    assert json.loads(ok(run(world, "dsr", "status", request_id, "--json")))["status"] == (
        "completed"
    )
    assert "0 open request(s)" in ok(run(world, "dsr", "list"))


def test_a_certificate_verifies_and_a_tampered_one_does_not(world: World, tmp_path: Path) -> None:
    world.store_call("c1")
    world.send_dsr("R1", "erasure", {"phone_numbers": [CUSTOMER_PHONE]})
    (answer,) = [d for d in world.data("dsr.results") if d["request_id"] == "R1"]
    good = tmp_path / "certificate.json"
    good.write_text(json.dumps(answer))
    keys = tmp_path / "keys.json"
    keys.write_text(ok(run(world, "public-key")))
    assert "certificate valid: 1 recording(s)" in ok(
        run(world, "verify-certificate", str(good), "--keys", str(keys))
    )
    answer["certificate"]["request_id"] = "R2"  # moved to another request
    bad = tmp_path / "moved.json"
    bad.write_text(json.dumps(answer))
    result = run(world, "verify-certificate", str(bad), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["valid"] is False


def test_a_missing_file_is_a_usage_error(world: World, tmp_path: Path) -> None:
    result = run(world, "verify-certificate", str(tmp_path / "nowhere.json"))
    assert result.exit_code == 2
    assert "No such file or directory" in result.stderr


def test_the_audit_trail_verifies_against_a_checkpoint(world: World) -> None:
    world.store_call("c1")
    ok(run(world, "audit", "checkpoint"))
    report = json.loads(ok(run(world, "audit", "verify", "--json")))
    assert report["intact"] is True
    assert report["checkpoint"]["ok"] is True


def _verify(world: World, *args: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(ok(run(world, "audit", "verify", "--json", *args)))
    return report


def test_a_verification_starts_where_the_last_one_proved_the_chain(world: World) -> None:
    for n in range(3):
        world.store_call(f"c{n}")
    ok(run(world, "audit", "checkpoint"))
    first = _verify(world)
    checkpoint = first["checkpoint"]["seq"]
    assert (first["since"], first["entries"], first["marked"]) == (0, checkpoint, ["audit_log"])
    world.store_call("c3")
    again = _verify(world)  # only what was appended since the checkpoint's entry
    assert (again["since"], again["entries"]) == (
        checkpoint,
        len(world.db.state.audit) - checkpoint,
    )
    assert again["checkpoint"]["ok"] is True
    assert _verify(world, "--full")["entries"] == len(world.db.state.audit)
    assert _verify(world, "--from", "2", "--to", "3")["entries"] == 2


def test_a_record_of_verification_that_does_not_hold_is_not_a_starting_point(
    world: World,
) -> None:
    world.store_call("c1")
    ok(run(world, "audit", "checkpoint"))
    _verify(world)
    marks = world.db.state.audit_marks
    marks["audit_log"] = marks["audit_log"] | {"seq": 1}  # its signature no longer matches
    assert _verify(world)["since"] == 0
    assert _verify(world)["since"] > 0
    seq = world.db.state.audit_marks["audit_log"]["seq"]
    entries = world.db.state.audit
    entries[seq - 1] = dataclasses.replace(entries[seq - 1], hash=bytes(32))  # rewritten
    rewritten = json.loads(run(world, "audit", "verify", "--json").stdout)
    assert rewritten["since"] == 0  # back to the genesis, where the edit shows
    assert rewritten["broken_at"] == seq


def test_reconcile_finds_an_orphan_and_repairs_only_when_confirmed(world: World) -> None:
    world.store_call("c1")
    vault = world.settings.vault_bucket
    world.objects.put_stream(vault, "recordings/zz/stray.cva", [b"x"], content_type="x")
    world.clock.advance(hours=1)  # older than the orphan grace
    found = run(world, "reconcile", "--json")
    assert found.exit_code == 1  # findings
    (orphan,) = json.loads(found.stdout)["orphan_objects"]
    assert orphan.startswith("recordings/zz/stray.cva@")  # key@version
    declined = run(world, "reconcile", "--repair", stdin="n\n")
    assert declined.exit_code == 1  # aborted: nothing deleted
    assert list(world.objects.list_keys(vault, "recordings/zz/"))
    ok(run(world, "reconcile", "--repair", "--yes"))
    assert not list(world.objects.list_keys(vault, "recordings/zz/"))
    assert ok(run(world, "reconcile", "--json"))


def test_publish_lands_the_audio_and_sends_one_call(world: World, tmp_path: Path) -> None:
    audio = tmp_path / "call.wav"
    audio.write_bytes(WAV)
    out = ok(
        run(world, "publish", "--audio", str(audio), "--caller", "8 612 34567", "--call-id", "p1")
    )
    assert out.strip() == "published 1 event(s)"
    stored = world.recording("p1")
    assert stored is not None
    assert stored.sha256 is not None


@pytest.mark.parametrize(
    "args",
    [
        ("hold", "show", "H1", "--json"),
        ("dsr", "list", "--json"),
        ("reconcile", "--json"),
    ],
)
def test_json_output_is_json(world: World, args: Any) -> None:
    result = run(world, *args)
    assert result.exit_code in (0, 6)
    if result.exit_code == 0:
        json.loads(result.stdout)


def test_a_signed_audit_checkpoint_is_no_deletion_certificate(world: World, tmp_path: Path) -> None:
    """Checkpoints and certificates are signed with one key: each names its kind in its signed
    ``type``, so neither passes for the other."""
    world.store_call("c1")
    ok(run(world, "audit", "checkpoint"))
    (checkpoint,) = world.data("callvault.audit")
    assert checkpoint["type"] == "audit_checkpoint"
    as_certificate = tmp_path / "checkpoint.json"
    as_certificate.write_text(json.dumps(checkpoint))
    result = run(world, "verify-certificate", str(as_certificate), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "valid": False,
        "reason": "not a deletion certificate (type 'audit_checkpoint')",
        "request_id": None,
    }
    untyped = {k: v for k, v in checkpoint.items() if k != "type"}  # as signed before
    as_certificate.write_text(json.dumps(untyped))
    assert run(world, "verify-certificate", str(as_certificate)).exit_code == 1


def park_a_purge(world: World, recording_ids: tuple[str, ...]) -> int:
    """A purge follow-up that failed for good (the store refused), as the dispatcher parks it."""
    with world.db.unit_of_work() as uow:
        uow.record(PurgesScheduled(recording_ids, PurgeReason.RETENTION))
        uow.commit()
    claimed: list[int] = []

    def refused() -> None:
        with world.db.claim() as follow_up:
            claimed.append(follow_up.id)
            raise StoreRejected("object store refused delete: AccessDenied")

    with pytest.raises(StoreRejected):
        refused()
    world.db.give_up(claimed[0], "store_rejected: object store refused delete: AccessDenied")
    return claimed[0]


def test_failed_follow_ups_are_listed_counted_and_retried(world: World) -> None:
    first, second = park_a_purge(world, ("r1",)), park_a_purge(world, ("r2",))
    world.refresh_gauges()
    assert world.metrics.registry.get_sample_value("callvault_followups_parked") == 2
    listed = json.loads(ok(run(world, "followups", "list", "--json")))
    assert [(row["id"], row["kind"], row["attempts"]) for row in listed] == [
        (first, "purge", 1),
        (second, "purge", 1),
    ]
    assert listed[0]["error"].startswith("store_rejected: ")
    assert RFC3339.match(listed[0]["failed_at"])
    assert "2 parked follow-up(s)" in ok(run(world, "followups", "list"))
    assert "retried 1 follow-up(s)" in ok(run(world, "followups", "retry", str(second)))
    assert "retried 1 follow-up(s)" in ok(run(world, "followups", "retry", "--all", "--yes"))
    world.refresh_gauges()
    assert world.metrics.registry.get_sample_value("callvault_followups_parked") == 0
    assert world.db.follow_up_backlog() == 2  # due again: a retention worker carries them out


def test_retrying_follow_ups_wants_ids_or_all_and_says_which_were_not_parked(
    world: World,
) -> None:
    assert run(world, "followups", "retry").exit_code == 2
    parked = park_a_purge(world, ("r1",))
    result = run(world, "followups", "retry", str(parked), "99999")
    assert result.exit_code == 1
    assert "retried 1 of 2" in result.stderr


def test_an_audit_checkpoint_is_seen_by_its_metric(world: World) -> None:
    gauge = "callvault_audit_last_checkpoint_timestamp_seconds"
    assert world.metrics.registry.get_sample_value(gauge) == 0
    world.store_call("c1")
    ok(run(world, "audit", "checkpoint"))
    assert world.metrics.registry.get_sample_value(gauge) == world.clock.now.timestamp()
