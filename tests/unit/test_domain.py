"""The pure core: durations and deadlines, identifiers, audio recognition, URI rules, crypto,
the audit chain and settings - checked against what the contract and the privacy notice say."""

from __future__ import annotations

import dataclasses
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import (
    CUSTOMER_E164,
    CUSTOMER_NOTATIONS,
    FLAC,
    HASH_KEY,
    HTML,
    MP3_FRAME,
    MP3_ID3,
    OGG,
    PDF,
    SHOP_E164,
    WAV,
    make_settings,
    make_wav,
    settings_values,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.fakes.memory import MemoryDatabase, MemoryObjectStore
from workers.adapters import crypto
from workers.adapters.fetch import AudioFetcher
from workers.adapters.keys import KeyRing, software_key_ring
from workers.adapters.signatures import check_certificate
from workers.domain.audio import check_audio, sniff
from workers.domain.audit import canonical, numbered, unnumbered, verify_chain
from workers.domain.calendar import LocalCalendar
from workers.domain.errors import (
    ConfigError,
    FetchFailed,
    NotAudio,
    SchemaViolation,
    UnsupportedUri,
    UriNotAllowed,
)
from workers.domain.identifiers import (
    Subject,
    digest,
    is_withheld,
    normalize_email,
    normalize_phone,
    subject_keys,
)
from workers.domain.keyed import HmacKey
from workers.domain.messages import PolicyApplied
from workers.domain.model import DSR_DEADLINE, CallEnded, DsrRequest, call_digest, recording_id_for
from workers.domain.retention import IsoDuration, RetentionPolicy, parse_timestamp
from workers.domain.uris import AudioLocation, locate
from workers.settings import load_settings

# --- ISO 8601 durations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "months", "days", "seconds"),
    [
        ("P1Y", 12, 0, 0),
        ("P1M", 1, 0, 0),
        ("PT30S", 0, 0, 30),
        ("P1W", 0, 7, 0),
        ("P30D", 0, 30, 0),
        ("P1Y2M3DT4H", 14, 3, 4 * 3600),
        ("PT1H30M", 0, 0, 5400),
        ("PT0.5S", 0, 0, 0.5),
        ("p6m", 6, 0, 0),
    ],
)
def test_iso_duration_parses(text: str, months: int, days: int, seconds: float) -> None:
    duration = IsoDuration.parse(text)
    assert (duration.months, duration.days, duration.seconds) == (months, days, seconds)
    assert str(duration) == text.upper()


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "1Y", "P1H", "P1.5Y", "PT1D", "P-1D", "P1Y junk", "one year", "P1S"]
)
def test_invalid_iso_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        IsoDuration.parse(text)


def test_calendar_duration_has_no_fixed_length_but_clock_duration_does() -> None:
    assert IsoDuration.parse("PT30S").as_timedelta() == timedelta(seconds=30)
    assert IsoDuration.parse("P1W").as_timedelta() == timedelta(days=7)
    with pytest.raises(ValueError, match="calendar months"):
        IsoDuration.parse("P1Y").as_timedelta()


# --- deadlines ------------------------------------------------------------------------------


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("collected", "duration", "due"),
    [
        (utc(2024, 2, 29, 9, 0), "P1Y", utc(2025, 2, 28, 9, 0)),
        (utc(2025, 1, 31, 12, 0), "P1M", utc(2025, 2, 28, 12, 0)),
        (utc(2024, 1, 31, 12, 0), "P1M", utc(2024, 2, 29, 12, 0)),
        (utc(2025, 3, 14, 10, 21, 2), "P1Y", utc(2026, 3, 14, 10, 21, 2)),
        (utc(2025, 12, 31, 23, 59, 59), "PT30S", utc(2026, 1, 1, 0, 0, 29)),
        (utc(2025, 11, 30, 0, 0), "P1Y2M3DT4H", utc(2027, 2, 2, 4, 0)),
        (utc(2025, 3, 1), "P1W", utc(2025, 3, 8)),
    ],
)
def test_due_date_is_calendar_arithmetic_in_utc(
    collected: datetime, duration: str, due: datetime
) -> None:
    assert IsoDuration.parse(duration).after(collected) == due


def test_ended_at_with_positive_offset_counts_from_the_utc_instant() -> None:
    # 01:00 on 1 March in +03:00 is still 29 February in UTC: one year later is 28 February.
    ended = parse_timestamp("2024-03-01T01:00:00+03:00")
    due = IsoDuration.parse("P1Y").after(ended)
    assert due == utc(2025, 2, 28, 22, 0)
    assert due.utcoffset() == timedelta(0)


def test_ended_at_with_negative_offset_counts_from_the_utc_instant() -> None:
    # 23:30 on 28 February in -05:00 is 04:30 on 1 March UTC: P1M lands on 1 April UTC.
    ended = parse_timestamp("2025-02-28T23:30:00-05:00")
    assert IsoDuration.parse("P1M").after(ended) == utc(2025, 4, 1, 4, 30)


def test_due_date_across_a_dst_change_is_exact_in_utc() -> None:
    vilnius = ZoneInfo("Europe/Vilnius")  # EET -> EEST on 30 March 2025
    ended = datetime(2025, 3, 29, 12, 0, tzinfo=vilnius)  # 10:00 UTC
    due = IsoDuration.parse("P1D").after(ended)
    assert due == utc(2025, 3, 30, 10, 0)  # 24 real hours later, 13:00 local summer time
    assert due - ended == timedelta(hours=24)
    year = IsoDuration.parse("P1Y").after(datetime(2025, 10, 25, 12, 0, tzinfo=vilnius))
    assert year == utc(2026, 10, 25, 9, 0)  # computed on the UTC calendar, reported in UTC


def test_per_tenant_policy_overrides_the_default() -> None:
    policy = RetentionPolicy(
        default=IsoDuration.parse("P1Y"), per_tenant=(("shop-lv", IsoDuration.parse("P6M")),)
    )
    collected = utc(2025, 3, 14)
    assert policy.due_at("shop-lt", collected) == utc(2026, 3, 14)
    assert policy.due_at("shop-lv", collected) == utc(2025, 9, 14)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        parse_timestamp("2025-03-14T10:00:00")
    with pytest.raises(ValueError, match="offset"):
        IsoDuration.parse("P1Y").after(datetime(2025, 3, 14))


def test_dsr_deadline_is_one_calendar_month_from_receipt() -> None:
    request = DsrRequest.from_data(
        "e1",
        {
            "request_id": "R1",
            "type": "access",
            "received_at": "2025-01-31T10:00:00+02:00",
            "identity_verified": True,
            "subject": {"emails": ["a@example.com"]},
        },
    )
    assert request.deadline(LocalCalendar()) == utc(2025, 2, 28, 8, 0)


def test_dsr_deadline_counts_the_month_on_the_local_calendar() -> None:
    """Received at 00:30 on 1 December in Vilnius (22:30 on 30 November in UTC): due on
    1 January, not on 31 December; 1 March (28 February in UTC): 1 April, not 29 March."""
    vilnius = LocalCalendar()
    for received, due in (
        (utc(2025, 11, 30, 22, 30), utc(2025, 12, 31, 22, 30)),
        (utc(2026, 2, 28, 22, 30), utc(2026, 3, 31, 21, 30)),  # 00:30 EEST on 1 April
        (utc(2026, 1, 30, 22, 30), utc(2026, 2, 27, 22, 30)),  # 31 January: 28 February
    ):
        assert vilnius.day_of(received).day in (1, 31)
        assert vilnius.after(DSR_DEADLINE, received) == due
        local_due = vilnius.local(due)
        assert (local_due.hour, local_due.minute) == (0, 30)


# --- identifiers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+370 521 44500", SHOP_E164),
        ("8 5 214 4500", SHOP_E164),
        ("+37052144500", SHOP_E164),
        ("0037052144500", SHOP_E164),
        ("37052144500", SHOP_E164),
        ("tel:+37052144500", SHOP_E164),
        ("tel:8-5-214-4500", SHOP_E164),
        ("sip:+37052144500@pbx.example;user=phone", SHOP_E164),
        ("SIP:+370.521.44500@pbx.example", SHOP_E164),
        ("(8 5) 271 2804", "+37052712804"),
        ("+1 (212) 555-0100", "+12125550100"),
    ],
)
def test_phone_notations_normalise_to_e164(raw: str, e164: str) -> None:
    assert normalize_phone(raw, "LT") == e164


@pytest.mark.parametrize(
    "raw", ["anonymous", "Anonymous", " ANONYMOUS ", "", "   ", "abc", "12", "sip:anonymous@pbx"]
)
def test_non_numbers_normalise_to_none(raw: str) -> None:
    assert normalize_phone(raw, "LT") is None


WITHHELD_FORMS = [
    "anonymous",
    "Anonymous",
    " ANONYMOUS ",
    "unknown",
    "Unknown",
    "restricted",
    "RESTRICTED",
    "unavailable",
    "private",
    "Private",
    "blocked",
    "withheld",
    "",
    "   ",
    "0000000000",
    "sip:anonymous@anonymous.invalid",
    "SIP:Anonymous@anonymous.invalid",
    "tel:restricted",
    "+266696687",
    "266696687",
    "+8656696",
    "+7378742833",
    "+17378742833",
    "+86282452253",
    "+2562533",
]


@pytest.mark.parametrize("raw", WITHHELD_FORMS)
def test_withheld_forms_are_recognised_and_give_no_number(raw: str) -> None:
    assert is_withheld(raw)
    assert normalize_phone(raw, "LT") is None


@pytest.mark.parametrize(
    "raw", ["+370 612 34567", "8 612 34567", "sip:+37052144500@pbx", "anonymus", "private line"]
)
def test_numbers_and_other_words_are_not_withheld(raw: str) -> None:
    assert not is_withheld(raw)


def test_withheld_callers_never_match_each_other() -> None:
    pairs = Subject(phone_numbers=("0000000000", "+266696687", "Anonymous")).normalized("LT")
    assert pairs == set()


def test_every_notation_of_one_number_has_the_same_digest() -> None:
    key = HmacKey(bytes(32))
    digests = {
        frozenset(subject_keys(key, Subject(phone_numbers=(n,)).normalized("LT")).digests)
        for n in CUSTOMER_NOTATIONS
    }
    assert len(digests) == 1
    (only,) = digests
    assert only == {digest(key, "phone", CUSTOMER_E164)}
    other = subject_keys(key, Subject(phone_numbers=("+370 612 34568",)).normalized("LT"))
    assert not other.digests & only


def test_digest_depends_on_the_secret_key_and_the_kind() -> None:
    assert digest(HmacKey(b"a" * 32), "phone", SHOP_E164) != digest(
        HmacKey(b"b" * 32), "phone", SHOP_E164
    )
    assert digest(HmacKey(b"a" * 32), "customer_id", "X") != digest(
        HmacKey(b"a" * 32), "order_id", "X"
    )
    assert SHOP_E164.encode() not in digest(HmacKey(b"a" * 32), "phone", SHOP_E164)


@pytest.mark.parametrize(
    "raw",
    [
        "Ona.Petraitiene@Example.com",
        "  ona.petraitiene@example.com ",
        "ONA.PETRAITIENE@EXAMPLE.COM",
    ],
)
def test_emails_fold_case_and_whitespace(raw: str) -> None:
    assert normalize_email(raw) == "ona.petraitiene@example.com"


def test_non_email_is_no_identifier() -> None:
    assert normalize_email("not an address") is None
    assert Subject(emails=("nope",), customer_ids=(" ",)).normalized("LT") == set()


def test_subject_identifiers_of_all_kinds_are_collected() -> None:
    pairs = Subject(
        phone_numbers=("8 612 34567", "anonymous"),
        emails=(" A@B.example ",),
        customer_ids=("C-1",),
        order_ids=("O-1", "O-2"),
    ).normalized("LT")
    assert pairs == {
        ("phone", CUSTOMER_E164),
        ("email", "a@b.example"),
        ("customer_id", "C-1"),
        ("order_id", "O-1"),
        ("order_id", "O-2"),
    }


def _call_data(
    direction: str = "inbound",
    caller: str = "anonymous",
    callee: str = "+370 521 44500",
    started: str = "2025-03-14T12:00:00+02:00",
    ended: str = "2025-03-14T12:05:00+02:00",
) -> dict[str, Any]:
    return {
        "call_id": "c1",
        "direction": direction,
        "caller": caller,
        "callee": callee,
        "started_at": started,
        "ended_at": ended,
        "notice_played": True,
        "recording": {"uri": "s3://landing/a.wav"},
    }


def _call(direction: str, caller: str, callee: str) -> CallEnded:
    return CallEnded.from_data("e1", _call_data(direction, caller, callee))


def test_customer_party_is_caller_inbound_and_callee_outbound() -> None:
    inbound = _call("inbound", "8 612 34567", "+370 521 44500")
    outbound = _call("outbound", "+370 521 44500", "8 612 34567")
    assert inbound.subject_pairs("LT") == {("phone", CUSTOMER_E164)}
    assert outbound.subject_pairs("LT") == {("phone", CUSTOMER_E164)}
    assert inbound.tenant == "default"
    assert inbound.collected_at == utc(2025, 3, 14, 10, 5)


def test_anonymous_caller_gives_no_phone_identifier() -> None:
    assert _call("inbound", "anonymous", "+370 521 44500").subject_pairs("LT") == set()


def test_call_that_ends_before_it_starts_is_a_schema_violation() -> None:
    data = _call_data(started="2025-03-14T12:05:00+02:00", ended="2025-03-14T10:04:59Z")
    with pytest.raises(SchemaViolation, match="ended_at"):
        CallEnded.from_data("e1", data)
    data["ended_at"] = "2025-03-14T10:05:00Z"  # equal instants in different offsets are fine
    assert CallEnded.from_data("e1", data).collected_at == utc(2025, 3, 14, 10, 5)


def test_recording_id_is_stable_per_call_id_and_keyed() -> None:
    key, other_key = HmacKey(bytes(32)), HmacKey(bytes(range(32)))
    assert recording_id_for(key, "pbx-1") == recording_id_for(key, "pbx-1")
    assert recording_id_for(key, "pbx-1") != recording_id_for(key, "pbx-2")
    # without the key, a call id built from a phone number cannot be confirmed by guessing
    assert recording_id_for(key, "pbx-1") != recording_id_for(other_key, "pbx-1")
    assert call_digest(key, "pbx-1") != call_digest(other_key, "pbx-1")


# --- audio recognition ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "media_type"),
    [
        (WAV, "audio/wav"),
        (MP3_ID3, "audio/mpeg"),
        (MP3_FRAME, "audio/mpeg"),
        (OGG, "audio/ogg"),
        (FLAC, "audio/flac"),
    ],
)
def test_audio_is_recognised_by_its_bytes(content: bytes, media_type: str) -> None:
    assert sniff(content[:64]) == media_type
    assert check_audio(content[:64], None) == media_type
    assert check_audio(content[:64], media_type) == media_type


@pytest.mark.parametrize(
    ("content", "declared"),
    [
        (WAV, "audio/x-wav"),
        (WAV, "audio/wave; codecs=1"),
        (MP3_FRAME, "audio/mp3"),
        (OGG, "audio/opus"),
        (FLAC, "AUDIO/X-FLAC"),
    ],
)
def test_declared_aliases_are_accepted(content: bytes, declared: str) -> None:
    assert check_audio(content[:64], declared)


@pytest.mark.parametrize(
    "content",
    [PDF, HTML, b"", b"RIFF\x00\x00\x00\x00AVI LIST", b"\xff\xff\xff\xff", b"\x00" * 64],
    ids=["pdf", "html", "empty", "avi", "ff-noise", "zeros"],
)
def test_non_audio_is_refused(content: bytes) -> None:
    assert sniff(content[:64]) is None
    with pytest.raises(NotAudio):
        check_audio(content[:64], None)


@pytest.mark.parametrize(
    ("content", "declared"),
    [(WAV, "audio/mpeg"), (MP3_ID3, "audio/wav"), (OGG, "audio/flac"), (FLAC, "application/pdf")],
)
def test_declared_type_contradicting_the_content_is_refused(content: bytes, declared: str) -> None:
    with pytest.raises(NotAudio, match="content_type"):
        check_audio(content[:64], declared)


# --- recording URIs -------------------------------------------------------------------------


def _locate(uri: str) -> AudioLocation:
    return locate(uri, landing_bucket="landing", allowed_hosts=("recordings.pbx.example",))


def test_allowed_uris_are_located() -> None:
    s3 = _locate("s3://landing/2025/03/14/c1.wav")
    assert (s3.scheme, s3.host, s3.path) == ("s3", "landing", "2025/03/14/c1.wav")
    https = _locate("https://Recordings.PBX.example./r/1.wav")
    assert https.scheme == "https"
    assert _locate("file:///var/spool/pbx/rec%20001.wav").path == "/var/spool/pbx/rec 001.wav"


@pytest.mark.parametrize(
    "uri",
    [
        "s3://vault/recordings/ab/x.cva",
        "s3://other-bucket/a.wav",
        "s3://landing/../vault/x.cva",
        "s3://landing/a/%2e%2e/%2e%2e/vault/x",
        "s3://landing/./a.wav",  # '.' segments: the S3 client refuses them
        "s3://landing/incoming/%2e/a.wav",
        "s3://landing/incoming/.",
        "s3://landing/a.wav?versionId=abc",
        "s3://landing/",
        "https://evil.example/a.wav",
        "https://recordings.pbx.example.evil.example/a.wav",
        "http://169.254.169.254/latest/meta-data",
        "https://user:secret@recordings.pbx.example/a.wav",
        "https://:token@recordings.pbx.example/a.wav",
        "file://remote-host/etc/passwd",
    ],
)
def test_disallowed_uris_are_refused(uri: str) -> None:
    with pytest.raises(UriNotAllowed):
        _locate(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://pbx.example/a.wav",
        "gopher://x/",
        "/var/spool/a.wav",
        "s3://landing/a\x00.wav",
        " s3://landing/a",
    ],
)
def test_unsupported_uris_are_refused(uri: str) -> None:
    with pytest.raises(UnsupportedUri):
        _locate(uri)


def _fetcher(root: Path) -> AudioFetcher:
    return AudioFetcher(MemoryObjectStore(), fetch_root=root, timeout_seconds=1)


def test_file_uri_under_the_root_is_read(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    (root / "a.wav").write_bytes(WAV)
    where = _locate(f"file://{root}/a.wav")
    assert b"".join(_fetcher(root).open(where)) == WAV


def test_file_uri_outside_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    secret = tmp_path / "secret.wav"
    secret.write_bytes(WAV)
    for uri in (f"file://{secret}", f"file://{root}/../secret.wav", "file:///etc/hostname"):
        with pytest.raises(UriNotAllowed):
            _fetcher(root).open(_locate(uri))


def test_symlink_escaping_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    secret = tmp_path / "secret.wav"
    secret.write_bytes(WAV)
    os.symlink(secret, root / "link.wav")
    with pytest.raises(UriNotAllowed):
        _fetcher(root).open(_locate(f"file://{root}/link.wav"))


def test_a_directory_swapped_for_a_symlink_after_the_check_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of checking a path and then opening it by name: the fetcher is asked for
    ``<root>/calls/a.wav``; right after it starts looking, ``calls`` becomes a link to a
    directory outside the root. The file there must not be read."""
    root, elsewhere = tmp_path / "spool", tmp_path / "elsewhere"
    (root / "calls").mkdir(parents=True)
    (root / "calls" / "a.wav").write_bytes(WAV)
    elsewhere.mkdir()
    (elsewhere / "a.wav").write_bytes(make_wav(seconds=1.0))  # someone else's audio
    fetcher = _fetcher(root)
    swapped: list[bool] = []

    def swap() -> None:
        if not swapped:
            swapped.append(True)
            shutil.rmtree(root / "calls")
            os.symlink(elsewhere, root / "calls")

    def realpath(path: Any, *args: Any, **kwargs: Any) -> Any:
        found = real_realpath(path, *args, **kwargs)
        swap()  # the attacker wins the race just after the look
        return found

    def open_(path: Any, *args: Any, **kwargs: Any) -> int:
        swap()
        return real_open(path, *args, **kwargs)

    real_realpath, real_open = os.path.realpath, os.open
    monkeypatch.setattr(os.path, "realpath", realpath)
    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(UriNotAllowed):
        b"".join(fetcher.open(_locate(f"file://{root}/calls/a.wav")))
    assert swapped


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_file_uri_naming_no_regular_file_is_fetch_failed(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    if kind == "fifo":
        os.mkfifo(root / "a.wav")  # opening it for reading would block a worker for ever
    else:
        (root / "a.wav").mkdir()
    with pytest.raises(FetchFailed):
        b"".join(_fetcher(root).open(_locate(f"file://{root}/a.wav")))


def test_file_uri_without_configured_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(WAV)
    fetcher = AudioFetcher(MemoryObjectStore(), fetch_root=None, timeout_seconds=1)
    with pytest.raises(UriNotAllowed):
        fetcher.open(_locate(f"file://{tmp_path}/a.wav"))


def test_missing_file_or_landing_object_is_fetch_failed(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    with pytest.raises(FetchFailed):
        _fetcher(root).open(_locate(f"file://{root}/missing.wav"))
    objects = MemoryObjectStore()
    objects.ensure_bucket("landing", versioned=False, object_lock=False)
    fetcher = AudioFetcher(objects, fetch_root=None, timeout_seconds=1)
    with pytest.raises(FetchFailed):
        fetcher.open(_locate("s3://landing/missing.wav"))


# --- crypto ---------------------------------------------------------------------------------

AUDIO = os.urandom(150_000)  # three segments: two full, one short


def _encrypt(data: bytes, dek: bytes, rid: str = "rec-1", chunk: int = 10_000) -> bytes:
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return b"".join(crypto.encrypt_stream(dek, rid, chunks))


def _decrypt(blob: bytes, dek: bytes, rid: str = "rec-1") -> bytes:
    return b"".join(crypto.decrypt_stream(dek, rid, [blob[:5], blob[5:70_000], blob[70_000:]]))


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 64 * 1024 + 1, 150_000])
def test_encryption_round_trip(size: int) -> None:
    dek = crypto.new_data_key()
    data = AUDIO[:size]
    blob = _encrypt(data, dek)
    assert len(blob) == crypto.ciphertext_size(size)
    assert _decrypt(blob, dek) == data
    if size > 32:
        assert data[:32] not in blob


def test_tampered_ciphertext_is_detected() -> None:
    dek = crypto.new_data_key()
    blob = bytearray(_encrypt(AUDIO, dek))
    blob[100_000] ^= 0x01
    with pytest.raises(crypto.IntegrityError):
        _decrypt(bytes(blob), dek)


@pytest.mark.parametrize("cut", [1, 16, 150_000 - 2 * 64 * 1024 + 16])
def test_truncated_ciphertext_is_detected(cut: int) -> None:
    dek = crypto.new_data_key()
    blob = _encrypt(AUDIO, dek)
    with pytest.raises(crypto.IntegrityError):
        _decrypt(blob[:-cut], dek)


def test_truncation_at_a_segment_boundary_is_detected() -> None:
    dek = crypto.new_data_key()
    blob = _encrypt(AUDIO, dek)
    header = crypto.ciphertext_size(0) - crypto.TAG
    whole_segments = blob[: header + 2 * (crypto.SEGMENT + crypto.TAG)]
    with pytest.raises(crypto.IntegrityError):
        _decrypt(whole_segments, dek)


def test_ciphertext_of_another_recording_or_key_is_refused() -> None:
    dek = crypto.new_data_key()
    blob = _encrypt(WAV, dek, rid="rec-1")
    with pytest.raises(crypto.IntegrityError):
        _decrypt(blob, dek, rid="rec-2")
    with pytest.raises(crypto.IntegrityError):
        _decrypt(blob, crypto.new_data_key())
    with pytest.raises(crypto.IntegrityError):
        _decrypt(b"NOPE" + blob[4:], dek)
    with pytest.raises(crypto.IntegrityError):
        _decrypt(b"CVA", dek)


def test_wrapped_key_unwraps_only_with_the_master_key_and_its_recording() -> None:
    master, dek = AESGCM(os.urandom(32)), crypto.new_data_key()
    wrapped = crypto.wrap_key(master, dek, "rec-1")
    assert dek not in wrapped
    assert crypto.unwrap_key(master, wrapped, "rec-1") == dek
    with pytest.raises(crypto.IntegrityError):
        crypto.unwrap_key(master, wrapped, "rec-2")
    with pytest.raises(crypto.IntegrityError):
        crypto.unwrap_key(AESGCM(os.urandom(32)), wrapped, "rec-1")
    with pytest.raises(crypto.IntegrityError):
        crypto.unwrap_key(master, b"\x02" + wrapped[1:], "rec-1")


def test_sealed_customer_data_round_trips_and_is_bound_to_its_recording() -> None:
    dek = crypto.new_data_key()
    sealed = crypto.seal_json(dek, "rec-1", {"email": "a@example.com"})
    assert b"a@example.com" not in sealed
    assert crypto.open_json(dek, "rec-1", sealed) == {"email": "a@example.com"}
    with pytest.raises(crypto.IntegrityError):
        crypto.open_json(dek, "rec-2", sealed)


def _key_ring(seed: bytes, key_id: str) -> KeyRing:
    return software_key_ring(
        master_keys={"m1": bytes(32)},
        current_master="m1",
        hash_key=bytes(32),
        signing_seed=seed,
        signing_key_id=key_id,
    )


def test_certificates_verify_and_detect_changes() -> None:
    ring = _key_ring(bytes(range(32)), "k1")
    body = {
        "type": "erasure",
        "request_id": "R-1",
        "recordings": [{"recording_id": "r", "sha256": "0" * 64}],
    }
    certificate = ring.sign(body)
    keys = [ring.public_key()]
    assert check_certificate(certificate, keys) == (True, "ok")
    assert not check_certificate(certificate | {"request_id": "R-2"}, keys)[0]  # no replay
    other = _key_ring(bytes(range(1, 33)), "k1")
    assert not check_certificate(certificate, [other.public_key()])[0]
    assert check_certificate(certificate, [other.public_key() | {"key_id": "k2"}, *keys])[0]


# --- audit chain ----------------------------------------------------------------------------


def _audit_trail(count: int = 5) -> list:
    db = MemoryDatabase()
    at = datetime(2025, 3, 14, tzinfo=UTC)
    for i in range(count):
        with db.unit_of_work() as uow:
            uow.record(PolicyApplied(f"tenant-{i}", None, f"P{i + 1}D", i, at + timedelta(i)))
            uow.commit()
    with db.unit_of_work() as uow:
        return uow.audit_entries(0, 100)


def test_intact_audit_chain_verifies() -> None:
    entries = _audit_trail()
    assert verify_chain(entries) == (5, None)


def test_edited_audit_entry_breaks_the_chain() -> None:
    entries = _audit_trail()
    entries[2] = dataclasses.replace(entries[2], details={"new": "P1Y"})
    assert verify_chain(entries) == (2, 3)
    edited_action = _audit_trail()
    edited_action[3] = dataclasses.replace(edited_action[3], action="store")
    assert verify_chain(edited_action) == (3, 4)


def test_deleted_audit_entry_breaks_the_chain() -> None:
    entries = _audit_trail()
    del entries[1]
    assert verify_chain(entries) == (1, 3)


def test_reordered_audit_entries_break_the_chain() -> None:
    entries = _audit_trail()
    entries[1], entries[2] = entries[2], entries[1]
    assert verify_chain(entries) == (1, 3)


def test_rehashed_entry_without_its_successors_still_breaks_the_chain() -> None:
    from workers.domain.audit import chain_hash

    entries = _audit_trail()
    forged = dataclasses.replace(entries[1], details={"new": "P9Y"})
    body = canonical(forged.seq, forged.at, forged.action, forged.entity_id, forged.details)
    entries[1] = dataclasses.replace(forged, hash=chain_hash(forged.prev_hash, body))
    assert verify_chain(entries) == (2, 3)


# --- settings -------------------------------------------------------------------------------


def test_settings_built_explicitly() -> None:
    settings = make_settings(retention="PT60S", retention_tenants="shop-lv=P6M")
    assert settings.policy.for_tenant("shop-lt") == IsoDuration.parse("PT60S")
    assert settings.policy.for_tenant("shop-lv") == IsoDuration.parse("P6M")
    assert settings.topics()["calls_ended"] == "calls.ended"
    assert settings.topics()["deadletter"] == "callvault.deadletter"
    assert settings.retention.text == "PT60S"


def test_settings_defaults_follow_the_contract() -> None:
    settings = load_settings(**{k: v for k, v in settings_values().items() if k != "retention"})
    assert settings.retention.text == "P1Y"
    assert settings.require_notice is True
    assert settings.default_region == "LT"
    assert settings.topics() == {
        "calls_ended": "calls.ended",
        "dsr_requests": "dsr.requests",
        "holds_commands": "holds.commands",
        "recordings_stored": "recordings.stored",
        "retention_due": "retention.due",
        "recordings_purged": "recordings.purged",
        "dsr_results": "dsr.results",
        "deadletter": "callvault.deadletter",
        "audit_checkpoints": "callvault.audit",
    }


def test_settings_come_from_callvault_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in settings_values().items():
        monkeypatch.setenv(f"CALLVAULT_{name.upper()}", str(value))
    monkeypatch.setenv("CALLVAULT_RETENTION", "PT30S")
    monkeypatch.setenv("CALLVAULT_REQUIRE_NOTICE", "false")
    monkeypatch.setenv("CALLVAULT_FETCH_ALLOWED_HOSTS", "a.example, b.example")
    monkeypatch.setenv("CALLVAULT_TOPIC_CALLS_ENDED", "pbx.calls")
    settings = load_settings()
    assert settings.retention.text == "PT30S"
    assert settings.require_notice is False
    assert settings.fetch_allowed_hosts == ("a.example", "b.example")
    assert settings.topics()["calls_ended"] == "pbx.calls"
    assert settings.key("hash_key") == bytes(range(32, 64))
    assert HASH_KEY not in repr(settings)


def test_missing_setting_is_named_by_the_command_that_needs_it() -> None:
    values = settings_values()
    del values["kafka_bootstrap"]
    settings = load_settings(**values)  # a command that never talks to Kafka runs without it
    with pytest.raises(ConfigError, match="CALLVAULT_KAFKA_BOOTSTRAP: missing"):
        settings.need("kafka_bootstrap", "database_url")
    with pytest.raises(ConfigError, match="CALLVAULT_KAFKA_BOOTSTRAP: missing"):
        _ = settings.kafka


def test_publishing_needs_no_database_and_no_keys() -> None:
    values = settings_values()
    for name in ("database_url", "master_key", "hash_key", "signing_key"):
        del values[name]
    settings = load_settings(**values)
    assert settings.kafka == "kafka.invalid:9092"
    assert settings.s3()[0] == "http://s3.invalid:9000"
    with pytest.raises(ConfigError, match="CALLVAULT_MASTER_KEY: missing"):
        settings.key("master_key")


@pytest.mark.parametrize(
    ("name", "value", "variable"),
    [
        ("retention", "one year", "CALLVAULT_RETENTION"),
        ("retention", "P1X", "CALLVAULT_RETENTION"),
        ("master_key", "c2hvcnQ=", "CALLVAULT_MASTER_KEY"),
        ("hash_key", "not base64!!", "CALLVAULT_HASH_KEY"),
        ("signing_key", "QUFB" * 12, "CALLVAULT_SIGNING_KEY"),
        ("export_ttl", "P8D", "CALLVAULT_EXPORT_TTL"),
        ("export_ttl", "P1M", "CALLVAULT_EXPORT_TTL"),
        ("export_ttl", "PT169H", "CALLVAULT_EXPORT_TTL"),
        ("retention_tenants", "shop-lv:P6M", "CALLVAULT_RETENTION_TENANTS"),
        ("retention_tenants", "shop-lv=6 months", "CALLVAULT_RETENTION_TENANTS"),
        ("metrics_port", "70000", "CALLVAULT_METRICS_PORT"),
        ("require_notice", "perhaps", "CALLVAULT_REQUIRE_NOTICE"),
        ("s3_endpoint", "s3.example:9000", "CALLVAULT_S3_ENDPOINT"),
    ],
)
def test_bad_setting_is_named(name: str, value: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable + ":"):
        load_settings(**settings_values(**{name: value}))


def test_bad_key_is_named_without_echoing_the_secret() -> None:
    secret = "QUFB" * 12  # valid base64, 36 bytes
    with pytest.raises(ConfigError, match="CALLVAULT_MASTER_KEY") as error:
        load_settings(**settings_values(master_key=secret))
    assert secret not in str(error.value)


def test_export_ttl_of_seven_days_is_accepted() -> None:
    assert make_settings(export_ttl="P7D").export_ttl.as_timedelta() == timedelta(days=7)


def test_every_bad_setting_is_named_at_once() -> None:
    values = settings_values(retention="bad", master_key="short", metrics_port="-1")
    with pytest.raises(ConfigError) as error:
        load_settings(**values)
    message = str(error.value)
    for variable in ("CALLVAULT_RETENTION", "CALLVAULT_MASTER_KEY", "CALLVAULT_METRICS_PORT"):
        assert variable in message


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("8 5 000 0000", "+370 5 000 0000"),  # a range not assigned (yet): still one person
        ("0037060000000", "+370 600 00000"),
        ("5 214 4500", "+37052144500"),  # national number without the trunk prefix
        ("+370 612 34567 ext. 12", "+37061234567"),
    ],
)
def test_unassigned_but_possible_numbers_still_match(typed: str, stored: str) -> None:
    assert normalize_phone(typed, "LT") == normalize_phone(stored, "LT") is not None


@pytest.mark.parametrize(
    "details",
    [{}, {"reason": "retention", "lag": 1.5}, {"z": [1, {"b": None, "a": "ą"}], "seq": 7}],
)
def test_an_entry_prepared_before_its_number_hashes_as_the_whole(details: dict[str, Any]) -> None:
    """Appends prepare each entry's canonical form before taking the chain's lock; numbered
    afterwards it is byte for byte the canonical form (``seq`` sorts last)."""
    at = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    for seq in (1, 42, 10**12):
        whole = canonical(seq, at, "purge", "rec-1", details)
        assert numbered(unnumbered(at, "purge", "rec-1", details), seq) == whole


@pytest.mark.parametrize(
    ("started", "ended"),
    [
        ("9999-12-31T10:00:00Z", "9999-12-31T10:05:00Z"),
        ("0001-01-01T00:00:00Z", "2025-03-14T10:00:00Z"),
    ],
)
def test_a_call_at_no_countable_time_is_a_schema_violation(started: str, ended: str) -> None:
    with pytest.raises(SchemaViolation, match="within the years"):
        CallEnded.from_data("e1", _call_data(started=started, ended=ended))
