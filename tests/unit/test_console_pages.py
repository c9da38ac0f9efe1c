"""The console's pages as a person uses them (in-process): sign in, search, choose a purpose,
listen; the DPO's and administrator's desks; CSRF on every form."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.unit.conftest import CUSTOMER_NAME, WAV, World
from tests.unit.console_world import PASSWORD, ConsoleWorld, build_console


@pytest.fixture
def cw(world: World) -> ConsoleWorld:
    return build_console(world)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(cw: ConsoleWorld, username: str) -> tuple[TestClient, str]:
    client = cw.client(follow_redirects=True)
    form = client.get("/login")
    landed = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": csrf(form.text)},
    )
    assert landed.status_code == 200, landed.text
    return client, csrf(landed.text)


def test_pages_need_a_session(cw: ConsoleWorld) -> None:
    client = cw.client(follow_redirects=False)
    for path in ("/", "/search", "/dpo", "/dpo/holds", "/admin/users"):
        answer = client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login"


def test_sign_in_form_is_csrf_protected(cw: ConsoleWorld) -> None:
    client = cw.client()
    client.get("/login")
    refused = client.post("/login", data={"username": "qa1", "password": PASSWORD})
    assert refused.status_code == 403
    wrong = client.post(
        "/login",
        data={
            "username": "qa1",
            "password": "nope-nope",
            "csrf_token": csrf(client.get("/login").text),
        },
    )
    assert wrong.status_code == 401
    assert "wrong password" in wrong.text


def test_qa_searches_by_national_notation_and_listens_with_a_purpose(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    client, token = sign_in(cw, "qa1")
    results = client.post("/search", data={"phone": "8 612 34567", "csrf_token": token})
    assert results.status_code == 200
    assert f'data-recording-id="{rec.recording_id}"' in results.text
    assert CUSTOMER_NAME not in results.text  # quality work needs no names
    page = client.get(f"/recordings/{rec.recording_id}")
    assert 'value="quality"' in page.text
    assert 'value="complaint"' not in page.text
    assert "<audio" not in page.text  # no player before a purpose is given
    player = client.post(
        f"/recordings/{rec.recording_id}/listen",
        data={"purpose": "quality", "csrf_token": csrf(page.text)},
    )
    assert player.status_code == 200
    src = re.search(r'<audio id="player"[^>]* src="([^"]+)"', player.text)
    assert src
    audio = client.get(src.group(1).replace("&amp;", "&"))
    assert audio.content == WAV
    assert [a.purpose.value for a in cw.state.accesses] == ["quality"]


def test_complaints_see_the_customer_beside_the_player_for_a_case(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    client, token = sign_in(cw, "cx1")
    results = client.post(
        "/search", data={"email": "ona.petraitiene@example.com", "csrf_token": token}
    )
    assert rec.recording_id in results.text
    assert CUSTOMER_NAME not in results.text  # no purpose yet: no customer
    assert CUSTOMER_NAME not in client.get(f"/recordings/{rec.recording_id}").text
    refused = client.post(
        f"/recordings/{rec.recording_id}/listen", data={"purpose": "complaint", "csrf_token": token}
    )
    assert refused.status_code == 422
    assert "case reference" in refused.text
    assert cw.state.accesses == []
    player = client.post(
        f"/recordings/{rec.recording_id}/listen",
        data={"purpose": "complaint", "case_ref": "C-12", "csrf_token": token},
    )
    assert CUSTOMER_NAME in player.text
    assert [(a.kind.value, a.case_ref) for a in cw.state.accesses] == [("personal_data", "C-12")]


def test_a_restricted_recording_is_refused_in_the_page(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    cw.world.db.state.recordings[rec.recording_id].restricted = True
    client, token = sign_in(cw, "qa1")
    refused = client.post(
        f"/recordings/{rec.recording_id}/listen", data={"purpose": "quality", "csrf_token": token}
    )
    assert refused.status_code == 403
    assert "Art. 18" in refused.text
    assert "<audio" not in refused.text


def test_forms_without_their_token_are_refused(cw: ConsoleWorld) -> None:
    client, _ = sign_in(cw, "dpo1")
    for path in ("/search", "/dpo/holds", "/dpo/disclosures", "/logout"):
        assert client.post(path, data={"reason": "x"}).status_code == 403, path


def test_dpo_places_and_releases_a_hold_and_discloses(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    client, token = sign_in(cw, "dpo1")
    placed = client.post(
        "/dpo/holds",
        data={
            "reason": "consumer dispute",
            "case_ref": "C-42",
            "hold_id": "H-42",
            "scope_kind": "phone_numbers",
            "targets": "8 612 34567",
            "csrf_token": token,
        },
    )
    assert "Hold H-42 placed" in placed.text
    page = client.get("/dpo/holds")
    assert 'data-hold-id="H-42"' in page.text
    assert "call-a" in page.text
    released = client.post("/dpo/holds/H-42/release", data={"csrf_token": token})
    assert "Hold H-42 released" in released.text
    assert 'data-hold-id="H-42"' not in client.get("/dpo/holds").text
    disclosed = client.post(
        "/dpo/disclosures",
        data={
            "recipient": "Telia Lietuva",
            "recipient_kind": "telecom_provider",
            "legal_basis": "Art. 28 contract",
            "reference": "INC-7",
            "recording_ids": rec.recording_id,
            "csrf_token": token,
        },
    )
    assert 'id="package-link"' in disclosed.text
    assert "Telia Lietuva" in disclosed.text


def test_dpo_desk_pages_render(cw: ConsoleWorld) -> None:
    rec = cw.world.store_call("call-a")
    cw.api("qa1").get(f"/api/v1/recordings/{rec.recording_id}/audio?purpose=quality")
    client, _ = sign_in(cw, "dpo1")
    overview = client.get("/dpo")
    assert overview.text.count("<svg") >= 3
    log = client.get(f"/dpo/access-log?recording_id={rec.recording_id}")
    assert "qa1" in log.text
    assert "Access log" in log.text
    assert "No request is open" in client.get("/dpo/requests").text
    report = client.get("/dpo/report?month=2025-03")
    assert "Record of processing" in report.text
    assert "Hash chain intact" in report.text


def test_admin_manages_users_but_sees_no_recordings(cw: ConsoleWorld) -> None:
    client, token = sign_in(cw, "admin1")
    added = client.post(
        "/admin/users",
        data={
            "username": "qa2",
            "role": "qa",
            "password": "another long one",
            "tenants": "shop-lt",
            "csrf_token": token,
        },
    )
    assert "User qa2 added" in added.text
    assert "shop-lt" in added.text
    refused = client.post("/admin/users/qa2/token", data={"csrf_token": token})
    assert refused.status_code == 403  # a token only for oneself
    made = client.post("/admin/users/admin1/token", data={"csrf_token": token})
    assert re.search(r'<pre id="new-token">cvt_', made.text)
    assert client.get("/search").status_code == 403
    assert client.get("/dpo").status_code == 403


def test_qa_cannot_open_the_dpo_desk(cw: ConsoleWorld) -> None:
    client, _ = sign_in(cw, "qa1")
    for path in ("/dpo", "/dpo/holds", "/dpo/requests", "/dpo/access-log", "/dpo/disclosures"):
        assert client.get(path).status_code == 403, path
