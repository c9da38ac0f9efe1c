"""The console's JSON API as the contract states it, over the in-memory fakes."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import pytest

from tests.unit.conftest import (
    CUSTOMER_EMAIL,
    CUSTOMER_NAME,
    CUSTOMER_PHONE,
    ORDER_ID,
    OTHER_PHONE,
    WAV,
    World,
    make_wav,
    personal_data_in,
)
from tests.unit.console_world import PASSWORD, ConsoleWorld, build_console
from workers.app.handlers.purge import purge
from workers.app.ports.objects import ObjectMissing
from workers.domain.errors import TransientError
from workers.domain.model import PurgeReason

ITEM_KEYS = {
    "recording_id",
    "call_id",
    "tenant",
    "direction",
    "agent_id",
    "started_at",
    "ended_at",
    "retention_due_at",
    "restricted",
    "held",
}
LONG_WAV = make_wav(seconds=9)  # 144 kB: three 64 KiB segments of ciphertext


@pytest.fixture
def cw(world: World) -> ConsoleWorld:
    return build_console(world)


def audio_url(recording_id: str, purpose: str = "quality", case_ref: str | None = None) -> str:
    url = f"/api/v1/recordings/{recording_id}/audio?purpose={purpose}"
    return url + (f"&case_ref={case_ref}" if case_ref else "")


# --- search -----------------------------------------------------------------------------------
@pytest.mark.parametrize("notation", ["8 612 34567", "+37061234567", "(8 612) 345 67"])
def test_search_finds_a_persons_calls_by_any_phone_notation(
    cw: ConsoleWorld, notation: str
) -> None:
    mine = cw.world.store_call("call-a")
    cw.world.store_call("call-b", caller=OTHER_PHONE, customer=None)
    answer = cw.api("qa1").post("/api/v1/recordings/search", json={"phone_numbers": [notation]})
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [i["recording_id"] for i in items] == [mine.recording_id]
    assert set(items[0]) == ITEM_KEYS
    assert items[0]["call_id"] == "call-a"
    assert items[0]["agent_id"] == "agent-042"
    assert items[0]["ended_at"] == "2025-03-14T10:21:02Z"
    assert (items[0]["restricted"], items[0]["held"]) == (False, False)


def test_search_by_email_order_call_dates_and_agent(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    api = cw.api("dpo1")

    def found(body: dict[str, Any]) -> list[str]:
        answer = api.post("/api/v1/recordings/search", json=body)
        assert answer.status_code == 200, answer.text
        return [i["recording_id"] for i in answer.json()["items"]]

    assert found({"emails": ["  ONA.Petraitiene@Example.com "]}) == [rec.recording_id]
    assert found({"order_ids": [ORDER_ID]}) == [rec.recording_id]
    assert found({"call_ids": ["call-a"]}) == [rec.recording_id]
    assert found({"agent_id": "agent-042"}) == [rec.recording_id]
    assert found({"agent_id": "agent-999"}) == []
    inside = {"from": "2025-03-14T10:00:00Z", "to": "2025-03-14T11:00:00Z"}
    assert found({"order_ids": [ORDER_ID], **inside}) == [rec.recording_id]
    assert found({"order_ids": [ORDER_ID], "from": "2025-03-15T00:00:00Z"}) == []
    assert found({"from": "2025-03-14", "to": "2025-03-14"}) == [rec.recording_id]
    assert found({"from": "2025-03-13", "to": "2025-03-13"}) == []
    assert (
        api.post(
            "/api/v1/recordings/search", json={"from": "2025-03-15", "to": "2025-03-14"}
        ).status_code
        == 422
    )
    assert found({"phone_numbers": ["not a number"]}) == []


def test_an_empty_search_is_refused(cw: ConsoleWorld) -> None:
    assert cw.api("qa1").post("/api/v1/recordings/search", json={}).status_code == 422


def test_names_and_emails_only_for_roles_that_need_them(cw: ConsoleWorld) -> None:
    cw.world.store_call("call-a")
    body = {"call_ids": ["call-a"], "include_customer": True, "purpose": "complaint"}
    for_complaints = (
        cw.api("cx1").post("/api/v1/recordings/search", json=body | {"case_ref": "C-1"}).json()
    )
    assert for_complaints["items"][0]["customer"] == {
        "name": CUSTOMER_NAME,
        "email": CUSTOMER_EMAIL,
    }
    for_qa = (
        cw.api("qa1").post("/api/v1/recordings/search", json=body | {"purpose": "quality"}).json()
    )
    assert "customer" not in for_qa["items"][0]
    assert personal_data_in(json.dumps(for_qa)) == []


# --- purposes for personal data, and restriction ----------------------------------------------
def test_personal_data_is_shown_only_for_a_purpose_and_each_view_is_on_record(
    cw: ConsoleWorld,
) -> None:
    rec = cw.world.store_call("call-a")
    api = cw.api("cx1")
    search = {"call_ids": ["call-a"], "include_customer": True}
    assert api.post("/api/v1/recordings/search", json=search).status_code == 422  # no purpose
    plain = api.post("/api/v1/recordings/search", json={"call_ids": ["call-a"]}).json()
    assert personal_data_in(json.dumps(plain)) == []  # no purpose: no customer
    detail = api.get(f"/api/v1/recordings/{rec.recording_id}").json()
    assert "customer" not in detail
    assert cw.state.accesses == []
    shown = api.get(f"/api/v1/recordings/{rec.recording_id}?purpose=complaint&case_ref=C-9")
    assert shown.json()["customer"]["name"] == CUSTOMER_NAME
    (access,) = cw.state.accesses
    assert (access.username, access.purpose.value, access.case_ref, access.kind.value) == (
        "cx1",
        "complaint",
        "C-9",
        "personal_data",
    )
    (entry,) = cw.audit("access")
    assert entry.details["kind"] == "personal_data"
    assert entry.entity_id == rec.recording_id
    log = cw.api("dpo1").get(f"/api/v1/access-log?recording_id={rec.recording_id}").json()
    assert [(e["user"], e["purpose"]) for e in log["items"]] == [("cx1", "complaint")]


def test_complaints_and_legal_claims_need_a_case_reference_in_the_api(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    for who, purpose in (("cx1", "complaint"), ("dpo1", "legal_claim")):
        api = cw.api(who)
        assert api.get(audio_url(rec.recording_id, purpose)).status_code == 422
        detail = f"/api/v1/recordings/{rec.recording_id}?purpose={purpose}"
        assert api.get(detail).status_code == 422
        assert api.get(audio_url(rec.recording_id, purpose, "CASE-1")).status_code == 200
    assert cw.api("qa1").get(audio_url(rec.recording_id, "quality")).status_code == 200


def test_a_restricted_recordings_customer_is_shown_only_for_a_legal_claim(
    cw: ConsoleWorld,
) -> None:
    rec = cw.world.store_call("call-a")
    cw.dsr("r-1", "restriction", {"phone_numbers": [CUSTOMER_PHONE]})
    api = cw.api("dpo1")
    url = f"/api/v1/recordings/{rec.recording_id}"
    assert api.get(url).json()["restricted"] is True
    assert "customer" not in api.get(url + "?purpose=complaint&case_ref=C-1").json()
    claim = api.get(url + "?purpose=legal_claim&case_ref=LC-1").json()
    assert claim["customer"]["email"] == CUSTOMER_EMAIL
    assert [(a.purpose.value, a.kind.value) for a in cw.state.accesses] == [
        ("legal_claim", "personal_data")
    ]


# --- listen -----------------------------------------------------------------------------------
def test_audio_is_byte_identical_and_every_access_is_on_record(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a", LONG_WAV)
    answer = cw.api("qa1").get(audio_url(rec.recording_id, "training"))
    assert answer.status_code == 200
    assert answer.content == LONG_WAV
    assert answer.headers["content-type"] == "audio/wav"
    assert answer.headers["accept-ranges"] == "bytes"
    assert "no-store" in answer.headers["cache-control"]
    log = cw.api("dpo1").get(f"/api/v1/access-log?recording_id={rec.recording_id}").json()
    assert log["items"] == [
        {
            "at": "2025-03-14T10:30:00Z",
            "user": "qa1",
            "purpose": "training",
            "case_ref": None,
            "recording_id": rec.recording_id,
        }
    ]
    entry = cw.world.db.state.audit[-1]
    assert (entry.action, entry.entity_id) == ("access", rec.recording_id)
    assert entry.details == {
        "user": "qa1",
        "role": "qa",
        "purpose": "training",
        "case_ref": None,
        "kind": "download",
    }


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=65530-65545", 65530, 65545),  # across a segment boundary
        ("bytes=131000-", 131000, len(LONG_WAV) - 1),
        ("bytes=-500", len(LONG_WAV) - 500, len(LONG_WAV) - 1),
        ("bytes=100000-999999999", 100000, len(LONG_WAV) - 1),
    ],
)
def test_ranges_are_served_from_the_segments_that_hold_them(
    cw: ConsoleWorld, header: str, first: int, last: int
) -> None:
    rec = cw.world.store_call("call-a", LONG_WAV)
    answer = cw.api("qa1").get(audio_url(rec.recording_id), headers={"range": header})
    assert answer.status_code == 206
    assert answer.content == LONG_WAV[first : last + 1]
    assert answer.headers["content-range"] == f"bytes {first}-{last}/{len(LONG_WAV)}"
    assert answer.headers["content-length"] == str(last - first + 1)


def test_an_impossible_range_is_refused(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    answer = cw.api("qa1").get(audio_url(rec.recording_id), headers={"range": "bytes=99999-"})
    assert answer.status_code == 416
    assert answer.headers["content-range"].startswith("bytes */")


def test_seeking_within_a_playback_is_one_access_a_new_playback_another(
    cw: ConsoleWorld,
) -> None:
    rec = cw.world.store_call("call-a", LONG_WAV)
    api = cw.api("qa1")
    url = audio_url(rec.recording_id)
    api.get(url, headers={"range": "bytes=0-"})
    api.get(url, headers={"range": "bytes=70000-"})  # the player seeks
    assert len(cw.state.accesses) == 1
    api.get(url)  # a new download from the start
    assert len(cw.state.accesses) == 2
    cw.world.clock.advance(hours=1)
    api.get(url, headers={"range": "bytes=70000-"})  # a range long after: a new access
    assert len(cw.state.accesses) == 3


def test_purposes_are_bound_to_roles(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    rid = rec.recording_id
    assert cw.api("qa1").get(audio_url(rid, "complaint", "C-1")).status_code == 403
    assert cw.api("qa1").get(audio_url(rid, "marketing")).status_code == 403
    assert cw.api("cx1").get(audio_url(rid, "quality")).status_code == 403
    assert cw.api("cx1").get(audio_url(rid, "complaint", "C-2025-7")).status_code == 200
    assert cw.api("cx1").get(audio_url(rid, "complaint", "a name?")).status_code == 422
    assert cw.api("admin1").get(audio_url(rid, "quality")).status_code == 403
    for purpose in ("quality", "training", "incident"):
        assert cw.api("dpo1").get(audio_url(rid, purpose)).status_code == 200
    assert cw.api("dpo1").get(audio_url(rid, "legal_claim", "LC-1")).status_code == 200
    assert cw.api("dpo1").get(audio_url(rid, "legal_claim")).status_code == 422  # which case?
    assert len(cw.state.accesses) == 5  # refusals leave no access entry


def test_restricted_recordings_only_for_legal_claims(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    cw.world.db.state.recordings[rec.recording_id].restricted = True
    search = cw.api("dpo1").post("/api/v1/recordings/search", json={"call_ids": ["call-a"]})
    assert search.json()["items"][0]["restricted"] is True
    assert cw.api("dpo1").get(audio_url(rec.recording_id, "quality")).status_code == 403
    assert cw.api("cx1").get(audio_url(rec.recording_id, "complaint", "C-1")).status_code == 403
    answer = cw.api("dpo1").get(audio_url(rec.recording_id, "legal_claim", "LC-9"))
    assert answer.status_code == 200
    assert answer.content == WAV


def test_purged_and_unknown_recordings_are_404(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    purge([rec.recording_id], PurgeReason.ERASURE, cw.world.ctx)
    api = cw.api("qa1")
    assert api.get(audio_url(rec.recording_id)).status_code == 404
    assert api.get(audio_url("00000000-0000-4000-8000-000000000000")).status_code == 404
    assert api.get(audio_url("not-a-uuid")).status_code == 404
    assert api.post("/api/v1/recordings/search", json={"call_ids": ["call-a"]}).json() == {
        "items": []
    }


# --- every route refuses strangers and the wrong roles ----------------------------------------
def api_routes(cw: ConsoleWorld) -> list[tuple[str, str, set[str]]]:
    """(method, path, roles admitted) of every API route the OpenAPI document lists."""
    paths = cw.client().get("/openapi.json").json()["paths"]
    return [
        (method.upper(), path, set(operation.get("x-callvault-roles", [])))
        for path, operations in paths.items()
        for method, operation in operations.items()
        if path.startswith("/api/") and path != "/api/v1/session"
    ]


def call(client: Any, method: str, path: str) -> Any:
    path = path.replace("{recording_id}", "00000000-0000-4000-8000-000000000000")
    path = path.replace("{hold_id}", "h-1").replace("{username}", "qa1")
    path = path.replace("{token_id}", "0000")
    return client.request(method, path + "?purpose=quality", json={})


def test_every_api_route_refuses_an_unauthenticated_call(cw: ConsoleWorld) -> None:
    routes = api_routes(cw)
    assert len(routes) >= 15
    for method, path, _ in routes:
        answer = call(cw.client(), method, path)
        assert answer.status_code == 401, (method, path, answer.status_code)
        bad = call(cw.client(headers={"authorization": "Bearer cvt_nope_nope"}), method, path)
        assert bad.status_code == 401, path


def test_every_api_route_refuses_the_wrong_roles(cw: ConsoleWorld) -> None:
    for method, path, allowed in api_routes(cw):
        assert allowed, f"{path} names no roles"
        for username, role in (("qa1", "qa"), ("cx1", "complaints"), ("dpo1", "dpo")):
            if role not in allowed:
                answer = call(cw.api(username), method, path)
                assert answer.status_code == 403, (method, path, role, answer.status_code)
        if "admin" not in allowed:
            assert call(cw.api("admin1"), method, path).status_code == 403, path


def test_openapi_document_names_the_contract_paths(cw: ConsoleWorld) -> None:
    paths = cw.client().get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/session",
        "/api/v1/recordings/search",
        "/api/v1/recordings/{recording_id}/audio",
        "/api/v1/access-log",
        "/api/v1/disclosures",
    ):
        assert path in paths


# --- sessions, tokens, headers ------------------------------------------------------------
def test_a_session_cookie_is_signed_httponly_and_strict(cw: ConsoleWorld) -> None:
    client = cw.client()
    answer = client.post("/api/v1/session", json={"username": "qa1", "password": PASSWORD})
    assert answer.json() == {
        "username": "qa1",
        "role": "qa",
        "purposes": ["quality", "training"],
    }
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert client.get("/api/v1/session").json()["username"] == "qa1"
    forged = cw.client(cookies={"cv_session": client.cookies["cv_session"][:-2] + "xx"})
    assert forged.get("/api/v1/session").status_code == 401
    assert client.delete("/api/v1/session").status_code == 204


def test_wrong_passwords_are_throttled_per_user(cw: ConsoleWorld) -> None:
    client = cw.client()
    for _ in range(5):
        wrong = client.post("/api/v1/session", json={"username": "qa1", "password": "nope-nope"})
        assert wrong.status_code == 401
    blocked = client.post("/api/v1/session", json={"username": "qa1", "password": PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    cw.world.clock.advance(minutes=16)
    assert (
        client.post("/api/v1/session", json={"username": "qa1", "password": PASSWORD}).status_code
        == 200
    )


def test_browser_sessions_cannot_be_used_cross_site(cw: ConsoleWorld) -> None:
    client = cw.signed_in("dpo1")
    body = {"call_ids": ["x"]}
    assert client.post("/api/v1/recordings/search", json=body).status_code == 200
    form = client.post("/api/v1/recordings/search", data={"call_ids": "x"})
    assert form.status_code == 403  # a form post from elsewhere: no JSON, no CSRF token
    foreign = client.post(
        "/api/v1/recordings/search", json=body, headers={"origin": "https://evil.example"}
    )
    assert foreign.status_code == 403


def test_disabled_users_and_revoked_tokens_are_out_at_once(cw: ConsoleWorld) -> None:
    session = cw.signed_in("qa1")
    api = cw.api("qa1")
    admin = cw.api("admin1")
    assert admin.post("/api/v1/users/qa1/disable").json()["disabled"] is True
    assert session.get("/api/v1/session").status_code == 401
    assert api.get("/api/v1/session").status_code == 401
    made = cw.signed_in("cx1").post("/api/v1/tokens", json={}).json()
    fresh = cw.client(headers={"authorization": f"Bearer {made['token']}"})
    assert fresh.get("/api/v1/session").status_code == 200
    assert admin.delete(f"/api/v1/tokens/{made['token_id']}").status_code == 204
    assert fresh.get("/api/v1/session").status_code == 401
    stored = cw.state.tokens[made["token_id"]]
    assert made["token"].split("_", 2)[2].encode() not in stored.secret_hash


def test_passwords_are_argon2id(cw: ConsoleWorld) -> None:
    stored = cw.console.accounts.user("qa1")
    assert stored is not None
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize("path", ["/login", "/api/v1/session", "/openapi.json"])
def test_security_headers(cw: ConsoleWorld, path: str) -> None:
    headers = cw.client().get(path).headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"


def test_nothing_personal_reaches_the_logs(
    cw: ConsoleWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = cw.world.store_call("call-a")
    api = cw.api("cx1")
    api.post(
        "/api/v1/recordings/search",
        json={"phone_numbers": [CUSTOMER_PHONE], "include_customer": True},
    )
    api.get(audio_url(rec.recording_id, "complaint", "C-1"))
    api.post("/api/v1/recordings/search", json={"phone_numbers": "not a list"})
    captured = capsys.readouterr()
    assert personal_data_in(captured.out + captured.err) == []


# --- disclosures ------------------------------------------------------------------------------
def disclose(cw: ConsoleWorld, kind: str, recipient: str, *ids: str) -> Any:
    return cw.api("dpo1").post(
        "/api/v1/disclosures",
        json={
            "recipient": recipient,
            "recipient_kind": kind,
            "legal_basis": "GDPR Art. 6(1)(c)",
            "reference": "REQ-2025-17",
            "recording_ids": list(ids),
        },
    )


def test_a_disclosure_packages_the_audio_and_keeps_holds(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a", LONG_WAV)
    cw.world.place_hold("h-1", {"call_ids": ["call-a"]})
    answer = disclose(cw, "telecom_provider", "Telia Lietuva", rec.recording_id)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body["export"]) == {"url", "expires_at", "sha256", "size_bytes", "format"}
    assert body["export"]["format"] == "zip"
    data = cw.world.fetch_export(body["export"]["url"])
    assert hashlib.sha256(data).hexdigest() == body["export"]["sha256"]
    archive = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["disclosure"]["recipient"] == "Telia Lietuva"
    assert manifest["disclosure"]["disclosure_id"] == body["disclosure_id"]
    entry = manifest["recordings"][0]
    assert archive.read(entry["audio_file"]) == LONG_WAV
    assert "personal_data" not in entry
    assert personal_data_in(json.dumps(manifest)) == []
    after = cw.world.recording("call-a")
    assert after is not None
    assert after.held
    register = cw.api("dpo1").get("/api/v1/disclosures").json()["items"]
    assert [d["disclosure_id"] for d in register] == [body["disclosure_id"]]


def test_disclosure_refuses_unknown_recordings_and_other_roles(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    unknown = disclose(cw, "other", "Vet clinic", "00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404
    assert disclose(cw, "spaceship", "X", rec.recording_id).status_code == 422
    as_qa = cw.api("qa1").post("/api/v1/disclosures", json={"recipient": "x"})
    assert as_qa.status_code == 403
    assert cw.state.disclosures == []


def test_an_erasure_deletes_a_disclosure_package_but_reports_only_the_persons_exports(
    cw: ConsoleWorld,
) -> None:
    rec = cw.world.store_call("call-a")
    package = disclose(cw, "telecom_provider", "Telia Lietuva", rec.recording_id).json()
    assert cw.dsr("A1", "access", {"phone_numbers": ["8 612 34567"]}) == "completed"
    assert cw.dsr("R1", "erasure", {"phone_numbers": ["+37061234567"]}) == "completed"
    answer = cw.world.db.state.requests["R1"].result
    assert answer["exports_deleted"] == ["A1"]  # the contract: the person's own exports
    with pytest.raises(ObjectMissing):  # no copy is left, the recipient's included
        cw.world.fetch_export(package["export"]["url"])


def test_access_export_lists_recipients_and_consultations_but_not_the_police(
    cw: ConsoleWorld,
) -> None:
    rec = cw.world.store_call("call-a")
    cw.api("qa1").get(audio_url(rec.recording_id, "training"))
    disclose(cw, "telecom_provider", "Telia Lietuva", rec.recording_id)
    disclose(cw, "law_enforcement", "Vilnius police, case 77", rec.recording_id)
    assert cw.dsr("req-1", "access", {"phone_numbers": ["8 612 34567"]}) == "completed"
    result = cw.world.db.state.requests["req-1"].result
    manifest = json.loads(
        cw.world.export_zip(result["export"]["url"]).read("manifest.json").decode()
    )
    assert [(r["recipient"], r["recipient_kind"]) for r in manifest["recipients"]] == [
        ("Telia Lietuva", "telecom_provider")
    ]
    assert manifest["recipients"][0]["disclosed_at"] == "2025-03-14T10:30:00Z"
    assert "police" not in json.dumps(manifest).lower()
    assert manifest["recordings"][0]["consultations"] == [
        {"at": "2025-03-14T10:30:00Z", "purpose": "training"}
    ]
    assert "qa1" not in json.dumps(manifest)


def test_erasure_answer_lists_the_recipients_to_tell(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    disclose(cw, "other", "Vet clinic Gyvūnėlis", rec.recording_id)
    disclose(cw, "law_enforcement", "Police", rec.recording_id)
    assert cw.dsr("req-2", "erasure", {"emails": [CUSTOMER_EMAIL]}) == "completed"
    record = cw.world.db.state.requests["req-2"]
    assert [r["recipient"] for r in record.result["recipients_to_notify"]] == [
        "Vet clinic Gyvūnėlis"
    ]
    answer = cw.world.published("dsr.results")[-1]
    assert "recipients_to_notify" not in answer["data"]  # the v1 event has no such field
    requests = cw.api("dpo1").get("/api/v1/requests?open=false").json()["items"]
    assert requests[0]["recipients_to_notify"][0]["recipient"] == "Vet clinic Gyvūnėlis"


# --- holds, requests, overview, report --------------------------------------------------------
def test_holds_from_the_console_are_in_force_at_once_and_audited(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    api = cw.api("dpo1")
    placed = api.post(
        "/api/v1/holds",
        json={
            "hold_id": "H-7",
            "reason": "dispute",
            "case_ref": "C-7",
            "scope": {"call_ids": ["call-a"]},
        },
    )
    assert placed.status_code == 201
    assert placed.json() == {"hold_id": "H-7", "status": "placed"}
    holds = api.get("/api/v1/holds").json()["items"]  # in force at once
    assert holds[0]["hold_id"] == "H-7"
    assert holds[0]["recordings"] == [{"recording_id": rec.recording_id, "call_id": "call-a"}]
    assert cw.world.db.state.recordings[rec.recording_id].held
    (entry,) = cw.audit("hold_placed")
    assert (entry.entity_id, entry.details["by"]) == ("H-7", "dpo1")
    again = api.post("/api/v1/holds", json={"hold_id": "H-7", "reason": "x", "scope": {}})
    assert again.status_code in (409, 422)
    assert api.post("/api/v1/holds/H-7/release").json()["status"] == "released"
    assert api.get("/api/v1/holds").json()["items"] == []
    assert cw.audit("hold_released")[0].details["by"] == "dpo1"
    assert api.post("/api/v1/holds/H-7/release").status_code == 404
    two_scopes = {"reason": "x", "scope": {"call_ids": ["a"], "recording_ids": ["b"]}}
    assert api.post("/api/v1/holds", json=two_scopes).status_code == 422


def test_overview_and_monthly_report_count_what_happened(cw: ConsoleWorld) -> None:
    kept = cw.world.store_call("call-a")
    gone = cw.world.store_call("call-b", caller=OTHER_PHONE, customer=None)
    purge([gone.recording_id], PurgeReason.ERASURE, cw.world.ctx)
    cw.api("qa1").get(audio_url(kept.recording_id, "quality"))
    disclose(cw, "other", "Vet clinic", kept.recording_id)
    api = cw.api("dpo1")
    overview = api.get("/api/v1/overview").json()
    assert overview["recordings"]["stored"] == 1
    assert overview["per_day"]["rows"]["stored"][-1] == 2.0
    assert overview["per_day"]["rows"]["purged (erasure)"][-1] == 1.0
    assert overview["accesses_by_purpose"] == {"quality": 1}
    assert overview["disclosures_by_kind"] == {"other": 1}
    report = api.get("/api/v1/reports/monthly?month=2025-03").json()
    assert report["deletions"] == {"erasure": 1}
    assert [d["recipient"] for d in report["disclosures"]] == ["Vet clinic"]
    assert report["audit_broken_at"] is None
    assert report["audit_entries"] == len(cw.world.db.state.audit)
    empty = api.get("/api/v1/reports/monthly?month=2025-01").json()
    assert empty["deletions"] == {}
    assert empty["disclosures"] == []


# --- outages ----------------------------------------------------------------------------------
def _away(*args: Any, **kwargs: Any) -> Any:
    raise TransientError("database unavailable: PoolTimeout")


def test_an_outage_is_503_with_retry_after_for_programs(
    cw: ConsoleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = cw.api("qa1")
    monkeypatch.setattr(cw.reads.search, "search", _away)
    answer = client.post("/api/v1/recordings/search", json={"call_ids": ["call-a"]})
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert "try again" in answer.json()["detail"]


def test_an_outage_is_503_for_people_even_when_the_session_cannot_be_checked(
    cw: ConsoleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = cw.signed_in("qa1")
    monkeypatch.setattr(cw.console.accounts, "_user", _away)
    answer = client.get("/search")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert "try again" in answer.text
