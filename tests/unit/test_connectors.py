"""The publisher every connector shares, and the Asterisk / FreePBX connectors, over fakes of
S3 and Kafka: what reaches the landing bucket and calls.ended, what stays on the PBX's disk."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog
from conftest import WAV, make_wav

from tests.fakes.connectors import Rig
from workers.adapters.connectors import publisher as publisher_module
from workers.adapters.connectors.asterisk import (
    SpoolWatcher,
    mixmonitor_call,
    parse_freepbx_name,
)
from workers.adapters.connectors.publisher import BacklogFull, FinishedCall
from workers.domain.errors import NotAudio, SchemaViolation
from workers.domain.retention import parse_timestamp

NUMBER = "+37061234567"
VILNIUS = ZoneInfo("Europe/Vilnius")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path / "state")


def recording(directory: Path, name: str = "rec.wav", audio: bytes = WAV, age: float = 60) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(audio)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def mixmonitor(path: Path, uniqueid: str = "1710411300.12", caller: str = NUMBER) -> FinishedCall:
    return mixmonitor_call(
        path, uniqueid, "1710411300.11", caller, "+370 521 44500", "in", pbx_id="pbx1"
    )


# --- the publisher --------------------------------------------------------------------------


def test_a_finished_recording_lands_is_announced_and_then_leaves_the_pbx(
    rig: Rig, tmp_path: Path
) -> None:
    path = recording(tmp_path / "spool")
    assert rig.publisher.submit(mixmonitor(path)) == "queued"
    assert path.exists()  # nothing is deleted before Kafka has the event
    assert rig.publisher.drain() == 1

    ((topic, key, _),) = rig.kafka.records
    (data,) = rig.kafka.data()  # valid CloudEvent and call.ended data
    assert (topic, key) == ("calls.ended", "pbx1:1710411300.12")
    assert data["call_id"] == "pbx1:1710411300.12"
    assert data["x_asterisk_linkedid"] == "1710411300.11"
    assert (data["caller"], data["direction"], data["notice_played"]) == (NUMBER, "inbound", True)
    landing_key = data["recording"]["uri"].removeprefix("s3://landing/")
    assert rig.landing.objects[landing_key] == WAV
    assert data["recording"]["size_bytes"] == len(WAV)
    assert data["recording"]["content_type"] == "audio/wav"
    assert "rec" not in landing_key
    assert "612" not in landing_key  # the key is callvault's own, never a number or a name
    assert not path.exists()
    assert rig.sample("callvault_connector_calls_published_total") == 1
    assert rig.sample("callvault_connector_backlog_calls") == 0


def test_duration_gives_the_start_of_a_call_known_by_its_end(rig: Rig, tmp_path: Path) -> None:
    path = recording(tmp_path, audio=make_wav(seconds=3.0))
    rig.publisher.submit(mixmonitor(path))
    rig.publisher.drain()
    (data,) = rig.kafka.data()
    length = parse_timestamp(data["ended_at"]) - parse_timestamp(data["started_at"])
    assert length.total_seconds() == pytest.approx(3.0, abs=0.01)


def test_the_same_call_offered_again_is_not_sent_twice_even_after_a_restart(
    rig: Rig, tmp_path: Path
) -> None:
    first = recording(tmp_path / "a")
    rig.publisher.submit(mixmonitor(first))
    assert rig.publisher.submit(mixmonitor(first)) == "duplicate"
    rig.publisher.drain()
    rig.restart()
    again = recording(tmp_path / "b")  # the PBX offers the same call once more
    assert rig.publisher.submit(mixmonitor(again)) == "duplicate"
    rig.publisher.drain()
    assert len(rig.kafka.records) == 1
    assert not again.exists()  # sent before: the leftover copy goes
    assert rig.sample("callvault_connector_duplicates_total") == 1


@pytest.mark.parametrize("away", ["kafka", "landing"])
def test_a_call_waits_in_the_backlog_while_kafka_or_s3_is_away(
    rig: Rig, tmp_path: Path, away: str
) -> None:
    getattr(rig, away).away = True
    path = recording(tmp_path)
    rig.publisher.submit(mixmonitor(path))
    assert rig.publisher.drain() == 0
    assert path.exists()
    assert rig.kafka.records == []
    assert rig.sample("callvault_connector_backlog_calls") == 1
    stage = "publish" if away == "kafka" else "upload"
    assert rig.sample("callvault_connector_failures_total", stage=stage) == 1

    rig.restart()  # a restart loses nothing
    getattr(rig, away).away = False
    assert rig.publisher.drain() == 1
    assert len(rig.kafka.records) == 1
    assert len(rig.landing.objects) == 1  # a retried upload reuses its key
    assert not path.exists()


def test_a_backlog_from_before_confined_directories_still_drains(tmp_path: Path) -> None:
    """A call queued by an older connector (no directory recorded) is sent after an upgrade,
    its file read and deleted beneath its own directory."""
    path = recording(tmp_path / "spool")
    old = Rig(tmp_path / "state")
    old.kafka.away = True
    old.publisher.submit(mixmonitor(path))
    with sqlite3.connect(tmp_path / "state" / "state.sqlite3") as db:
        db.execute("ALTER TABLE pending DROP COLUMN directory")
        db.execute("ALTER TABLE pending DROP COLUMN companions_directory")
    upgraded = Rig(tmp_path / "state")
    assert upgraded.publisher.drain() == 1
    assert not path.exists()


def test_the_backlog_is_bounded_and_a_full_one_leaves_files_in_place(tmp_path: Path) -> None:
    rig = Rig(tmp_path / "state", backlog_max=2)
    rig.kafka.away = True
    paths = [recording(tmp_path, f"r{i}.wav") for i in range(3)]
    for i, path in enumerate(paths[:2]):
        rig.publisher.submit(mixmonitor(path, uniqueid=f"1.{i}"))
    with pytest.raises(BacklogFull):
        rig.publisher.submit(mixmonitor(paths[2], uniqueid="1.2"))
    assert all(p.exists() for p in paths)
    assert rig.sample("callvault_connector_rejected_total", reason="backlog_full") == 1


def test_what_is_not_audio_is_refused_before_anything_is_queued(rig: Rig, tmp_path: Path) -> None:
    path = recording(tmp_path, audio=b"<html>" + b" " * 200)
    with pytest.raises(NotAudio):
        rig.publisher.submit(mixmonitor(path))
    assert path.exists()
    assert rig.publisher.backlog_size() == 0


@pytest.mark.parametrize(
    ("uniqueid", "direction"), [("1/2", "in"), ("1.2", "sideways"), ("", "out")]
)
def test_mixmonitor_arguments_are_checked(tmp_path: Path, uniqueid: str, direction: str) -> None:
    path = recording(tmp_path)
    with pytest.raises(SchemaViolation):
        mixmonitor_call(path, uniqueid, "1.1", NUMBER, "1", direction, pbx_id="pbx1")


@pytest.mark.parametrize("hostile", ["1;$(id>/tmp/x)", "1 --no-notice", "sip:$(id)@pbx", "a\nb"])
def test_a_party_that_is_no_number_uri_or_withheld_spelling_is_sent_as_withheld(
    rig: Rig, tmp_path: Path, hostile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = recording(tmp_path)
    captured = structlog.testing.LogCapture()
    logger = structlog.wrap_logger(None, processors=[captured], wrapper_class=structlog.BoundLogger)
    monkeypatch.setattr(publisher_module, "log", logger)
    assert rig.publisher.submit(mixmonitor(path, caller=hostile)) == "queued"
    rig.publisher.drain()
    logs = captured.entries
    (data,) = rig.kafka.data()  # a valid event: nothing for callvault to dead-letter
    assert (data["caller"], data["notice_played"]) == ("anonymous", True)
    (refusal,) = [entry for entry in logs if entry["event"] == "party_refused"]
    assert refusal["party"] == "caller"
    assert hostile not in repr(logs)  # the value is never logged
    assert rig.sample("callvault_connector_parties_refused_total", party="caller") == 1
    assert rig.sample("callvault_connector_parties_refused_total", party="callee") == 0


def test_raw_ulaw_from_asterisk_is_declared_by_its_extension(rig: Rig, tmp_path: Path) -> None:
    path = recording(tmp_path, "rec.ul", bytes(range(256)) * 40)
    rig.publisher.submit(mixmonitor(path))
    rig.publisher.drain()
    (data,) = rig.kafka.data()
    assert data["recording"]["content_type"] == "audio/pcmu"


# --- FreePBX --------------------------------------------------------------------------------


def test_freepbx_names_are_read_with_the_pbx_time_zone() -> None:
    name = parse_freepbx_name(
        Path("in-52144500-+37061234567-20250314-121500-1710411300.12.wav"), VILNIUS
    )
    assert name is not None
    assert (name.kind, name.to, name.source, name.uniqueid) == (
        "in",
        "52144500",
        "+37061234567",
        "1710411300.12",
    )
    assert name.started_at.isoformat() == "2025-03-14T12:15:00+02:00"
    withheld = parse_freepbx_name(Path("in-52144500--20250314-121500-1.2.WAV"), VILNIUS)
    assert withheld is not None
    assert withheld.source == ""
    for other in ("notes.txt", "in-1-2-2025-121500-1.2.wav", "in-52144500-20250314-121500-1.2.wav"):
        assert parse_freepbx_name(Path(other), VILNIUS) is None


def watcher(rig: Rig, root: Path, **options: object) -> SpoolWatcher:
    return SpoolWatcher(
        root,
        rig.publisher,
        rig.metrics,
        pbx_id="freepbx",
        zone=VILNIUS,
        clock=time.time,
        **options,
    )


def test_freepbx_spool_sends_finished_recordings_and_keeps_numbers_out_of_ids_and_logs(
    rig: Rig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = tmp_path / "monitor" / "2025" / "03" / "14"
    inbound = recording(day, "in-52144500-+37061234567-20250314-121500-1710411300.12.wav")
    outbound = recording(day, "out-861234567-201-20250314-130000-1710414000.7.wav")
    withheld = recording(day, "q600-52144500--20250314-140000-1710417600.3.wav")
    growing = recording(day, "in-52144500-+37069999999-20250314-150000-1710421200.1.wav", age=0)
    internal = recording(day, "internal-201-202-20250314-160000-1710424800.9.wav")
    stranger = recording(day, "voicemail-+37061234567.wav")

    spool = watcher(rig, tmp_path / "monitor", settle_seconds=10)
    assert spool.scan() == 3
    rig.publisher.drain()

    by_id = {d["call_id"]: d for d in rig.kafka.data()}
    assert set(by_id) == {
        "freepbx:1710411300.12",
        "freepbx:1710414000.7",
        "freepbx:1710417600.3",
    }
    first = by_id["freepbx:1710411300.12"]
    assert (first["direction"], first["caller"], first["callee"]) == (
        "inbound",
        "+37061234567",
        "52144500",
    )
    assert first["started_at"] == "2025-03-14T10:15:00Z"
    assert first["x_freepbx_kind"] == "in"
    out = by_id["freepbx:1710414000.7"]
    assert (out["direction"], out["caller"], out["callee"]) == ("outbound", "201", "861234567")
    assert by_id["freepbx:1710417600.3"]["caller"] == ""  # withheld: stored as withheld
    assert not any(p.exists() for p in (inbound, outbound, withheld))
    assert growing.exists()  # still being written
    assert internal.exists()  # no customer in an internal call: left for the shop to decide
    assert stranger.exists()
    assert rig.sample("callvault_connector_rejected_total", reason="unreadable_name") == 1

    logs = capsys.readouterr()
    for text in (logs.out + logs.err, *rig.landing.objects):
        assert "37061234567" not in text
        assert "52144500" not in text

    spool.scan()  # a second pass counts nothing twice
    assert rig.sample("callvault_connector_rejected_total", reason="unreadable_name") == 1


def test_freepbx_spool_follows_no_symlink_and_deletes_nothing_outside(
    rig: Rig, tmp_path: Path
) -> None:
    secret = recording(tmp_path / "elsewhere", "secret.wav")
    day = tmp_path / "monitor" / "2025" / "03" / "14"
    day.mkdir(parents=True)
    link = day / "in-52144500-+37061234567-20250314-121500-1710411300.12.wav"
    link.symlink_to(secret)
    (tmp_path / "monitor" / "2025" / "04").symlink_to(secret.parent, target_is_directory=True)
    spool = watcher(rig, tmp_path / "monitor", settle_seconds=0)
    assert spool.scan() == 0
    rig.publisher.drain()
    assert rig.kafka.records == []
    assert rig.landing.objects == {}
    assert secret.exists()
    assert link.is_symlink()  # left where it is, and counted once
    spool.scan()
    assert rig.sample("callvault_connector_rejected_total", reason="unsafe_path") == 1


def test_a_recording_swapped_for_a_symlink_before_the_upload_is_not_read(
    rig: Rig, tmp_path: Path
) -> None:
    """Checked when queued, replaced by a link to another file before the backlog drains: the
    upload opens the name without following it, so the other file is neither sent nor
    deleted."""
    secret = recording(tmp_path / "elsewhere", "secret.wav", make_wav(seconds=1.0))
    path = recording(tmp_path / "spool")
    assert rig.publisher.submit(mixmonitor(path)) == "queued"
    path.unlink()
    path.symlink_to(secret)
    rig.publisher.drain()
    assert rig.landing.objects == {}
    assert rig.kafka.records == []
    assert secret.exists()
    assert rig.sample("callvault_connector_rejected_total", reason="audio_missing") == 1


def test_internal_calls_can_be_filed_with_a_direction(rig: Rig, tmp_path: Path) -> None:
    recording(tmp_path, "internal-201-202-20250314-160000-1710424800.9.wav")
    watcher(rig, tmp_path, other_kinds="outbound").scan()
    rig.publisher.drain()
    (data,) = rig.kafka.data()
    assert data["direction"] == "outbound"


def test_the_post_command_refuses_what_is_not_audio_with_exit_65(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from workers.entrypoints.cli import cli

    for name, value in {
        "CALLVAULT_KAFKA_BOOTSTRAP": "kafka.invalid:9092",
        "CALLVAULT_S3_ENDPOINT": "http://s3.invalid",
        "CALLVAULT_S3_ACCESS_KEY": "k",
        "CALLVAULT_S3_SECRET_KEY": "s",
        "CALLVAULT_LANDING_BUCKET": "landing",
        "CALLVAULT_LOG_FORMAT": "console",
    }.items():
        monkeypatch.setenv(name, value)
    page = recording(tmp_path, "rec.wav", b"<html>" + b" " * 200)
    args = ["connect", "asterisk-mixmonitor", "--state-dir", str(tmp_path / "state"), "--"]
    result = CliRunner().invoke(cli, [*args, str(page), "1.2", "1.2", NUMBER, "100", "in"])
    assert result.exit_code == 65
    assert "not sent" in result.output
    assert page.exists()
