"""The console's pages as a person uses them (in-process): sign in, search, choose a purpose,
listen; the DPO's and administrator's desks; CSRF on every form."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from tests.unit.conftest import CUSTOMER_NAME, WAV, World
from tests.unit.console_world import PASSWORD, ConsoleWorld, build_console
from workers.app.console.model import Role
from workers.domain.errors import TransientError


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


# --- language and local time -----------------------------------------------------------------


def test_the_console_speaks_lithuanian_unless_the_browser_asks_otherwise(cw: ConsoleWorld) -> None:
    lithuanian = cw.client(language="").get("/login")
    assert '<html lang="lt">' in lithuanian.text
    assert "Prisijungti" in lithuanian.text
    assert "Naudotojo vardas" in lithuanian.text
    english = cw.client(language="en-GB,en;q=0.9").get("/login")
    assert '<html lang="en">' in english.text
    assert "User name" in english.text
    german = cw.client(language="de-DE,de;q=0.9").get("/login")
    assert '<html lang="lt">' in german.text  # no German catalogue: the default


def test_refusals_are_told_in_the_readers_language(cw: ConsoleWorld) -> None:
    client = cw.client(language="lt")
    form = client.get("/login")
    wrong = client.post(
        "/login", data={"username": "qa1", "password": "nope-nope", "csrf_token": csrf(form.text)}
    )
    assert wrong.status_code == 401
    assert "neteisingas slaptažodis" in wrong.text
    api = cw.client(language="lt").post(
        "/api/v1/session", json={"username": "qa1", "password": "nope-nope"}
    )
    assert api.json() == {"detail": "unknown user name or wrong password"}  # programs: English


def test_the_users_choice_of_language_wins_over_the_browsers(cw: ConsoleWorld) -> None:
    client, token = sign_in(cw, "qa1")  # an English browser
    assert "Find recordings" in client.get("/search").text
    chosen = client.post(
        "/language",
        data={"language": "lt", "csrf_token": token},
        headers={"referer": "http://testserver/search"},
    )
    assert chosen.url.path == "/search"
    assert "Įrašų paieška" in chosen.text
    again, _ = sign_in(cw, "qa1")  # kept with the account, in another browser too
    assert '<html lang="lt">' in again.get("/search").text
    refused = client.post("/language", data={"language": "xx", "csrf_token": token})
    assert refused.status_code == 422
    assert client.post("/language", data={"language": "en"}).status_code == 403  # no token


def test_the_sign_in_page_offers_each_language_and_remembers_the_choice(
    cw: ConsoleWorld,
) -> None:
    browser = cw.client(language="lt")
    page = browser.get("/login")
    assert '<html lang="lt">' in page.text
    assert 'href="/login?lang=en"' in page.text
    chosen = browser.get("/login?lang=en")
    assert '<html lang="en">' in chosen.text
    assert "Sign in" in chosen.text
    assert '<html lang="en">' in browser.get("/login").text  # remembered in this browser
    assert '<html lang="lt">' in browser.get("/login?lang=lt").text
    assert '<html lang="lt">' in cw.client(language="lt").get("/login?lang=xx").text


def test_unknown_pages_answer_a_person_with_a_page(cw: ConsoleWorld) -> None:
    client, _ = sign_in(cw, "dpo1")
    client.headers["accept-language"] = "lt"
    missing = client.get("/dpo/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "Tokio puslapio nėra" in missing.text or "tokio puslapio nėra" in missing.text
    anonymous = cw.client(language="en").get("/no/such/page")
    assert anonymous.status_code == 404
    assert "there is no such page" in anonymous.text
    api = client.get("/api/v1/no-such-route")
    assert api.status_code == 404
    assert api.json() == {"detail": "Not Found"}


def test_search_days_are_vilnius_days(cw: ConsoleWorld) -> None:
    """01:30 on 7 December in Vilnius is 23:30 on the 6th in UTC: the call is on the 7th."""
    late = cw.world.store_call(
        "call-night",
        started_at="2026-12-06T23:30:00Z",
        ended_at="2026-12-06T23:34:00Z",
    )
    client, token = sign_in(cw, "qa1")

    def found(**days: str) -> bool:
        page = client.post("/search", data={"call_id": "call-night", **days, "csrf_token": token})
        assert page.status_code == 200, page.text
        return f'data-recording-id="{late.recording_id}"' in page.text

    assert found(**{"from": "2026-12-07"})
    assert found(to="2026-12-07")
    assert not found(to="2026-12-06")
    assert not found(**{"from": "2026-12-08"})
    page = client.post("/search", data={"call_id": "call-night", "csrf_token": token})
    assert '<time datetime="2026-12-07T01:30:00+02:00">7 Dec 2026, 01:30</time>' in page.text
    client.headers["accept-language"] = "lt"
    page = client.post("/search", data={"call_id": "call-night", "csrf_token": token})
    assert ">2026-12-07 01:30</time>" in page.text
    assert "1 įrašas" in page.text


def test_the_overview_counts_local_days(cw: ConsoleWorld) -> None:
    cw.world.clock.set(datetime(2026, 12, 6, 23, 30, tzinfo=UTC))  # 01:30 on the 7th, local
    cw.world.store_call("call-night")
    data = cw.api("dpo1").get("/api/v1/overview").json()
    days, stored = data["per_day"]["days"], data["per_day"]["rows"]["stored"]
    assert days[-1] == "2026-12-07"
    assert stored[-1] == 1.0
    assert sum(stored) == 1.0


def test_the_monthly_report_covers_a_local_month(cw: ConsoleWorld) -> None:
    cw.world.clock.set(datetime(2026, 11, 30, 22, 30, tzinfo=UTC))  # 00:30 on 1 December
    cw.world.store_call("call-a")
    cw.api("qa1").get(
        f"/api/v1/recordings/{cw.world.recording('call-a').recording_id}/audio?purpose=quality"
    )  # type: ignore[union-attr]
    api = cw.api("dpo1")
    december = api.get("/api/v1/reports/monthly?month=2026-12").json()
    assert december["period_start"] == "2026-11-30T22:00:00Z"
    assert december["period_end"] == "2026-12-31T22:00:00Z"
    assert december["accesses_by_purpose"] == {"quality": 1}
    assert api.get("/api/v1/reports/monthly?month=2026-11").json()["accesses_by_purpose"] == {}
    client, _ = sign_in(cw, "dpo1")
    client.headers["accept-language"] = "lt"
    page = client.get("/dpo/report?month=2026-12")
    assert "2026 m. gruodis" in page.text
    assert "Europe/Vilnius" in page.text
    assert "Duomenų tvarkymo veiklos įrašas" in page.text
    assert "duomenų valdytojo teisėtas interesas" in page.text  # the notice's default, translated


def test_the_monthly_report_says_the_retention_period_in_words(world: World) -> None:
    cw = build_console(world, retention_tenants=("shop-ee=P6M",))
    client, _ = sign_in(cw, "dpo1")
    english = client.get("/dpo/report?month=2026-12").text
    assert "1 year after the call ends; per tenant: shop-ee: 6 months;" in english
    client.headers["accept-language"] = "lt"
    lithuanian = client.get("/dpo/report?month=2026-12").text
    assert "1 metai nuo pokalbio pabaigos; atskirų organizacijų: shop-ee: 6 mėnesiai;" in lithuanian
    assert "P1Y" not in lithuanian
    assert "P6M" not in lithuanian


def test_the_charts_legend_is_a_list_that_wraps(cw: ConsoleWorld) -> None:
    client, _ = sign_in(cw, "dpo1")
    client.headers["accept-language"] = "lt"
    page = client.get("/dpo").text
    legends = re.findall(r'<ul class="legend">(.*?)</ul>', page)
    names = [re.findall(r"</svg>([^<]+)</li>", legend) for legend in legends]
    assert names == [
        [
            "išsaugota",
            "ištrinta pasibaigus saugojimo terminui",
            "ištrinta pagal prašymą ištrinti",
            "ištrinta dėl nesutikimo",
        ],
        ["didžiausias vėlavimas (s)"],
    ]


def test_every_refusal_a_person_meets_is_told_in_lithuanian(
    cw: ConsoleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, token = sign_in(cw, "qa1")
    client.headers["accept-language"] = "lt"
    role = client.get("/dpo/holds")
    assert (role.status_code, "Neleidžiama") == (403, _heading(role.text))
    expired = client.post("/search", data={"phone": "8 612 34567"})  # no CSRF token
    assert expired.status_code == 403
    assert "įkelkite puslapį iš naujo" in expired.text
    wrong = client.post("/search", data={"from": "7.12.2026", "csrf_token": token})
    assert "datos rašomos MMMM-MM-DD" in wrong.text

    def away(*args: object, **kwargs: object) -> None:
        raise TransientError("database unavailable: PoolTimeout")

    monkeypatch.setattr(cw.console.accounts, "_user", away)
    outage = client.get("/search")
    assert (outage.status_code, _heading(outage.text)) == (503, "Pabandykite netrukus")
    assert "callvault reikalinga paslauga neatsako" in outage.text
    monkeypatch.undo()

    guesser = cw.client(language="lt", follow_redirects=True)
    for _ in range(6):
        form = guesser.get("/login").text
        refused = guesser.post(
            "/login", data={"username": "cx1", "password": "nope-nope", "csrf_token": csrf(form)}
        )
    assert refused.status_code == 429
    assert "per daug nesėkmingų bandymų prisijungti" in refused.text


def _heading(page: str) -> str:
    found = re.search(r"<h1>([^<]*)</h1>", page)
    return found.group(1) if found else ""


def test_a_page_that_does_not_take_the_method_answers_in_the_readers_language(
    cw: ConsoleWorld,
) -> None:
    client, _ = sign_in(cw, "qa1")
    client.headers["accept-language"] = "lt"
    answer = client.get("/logout")  # a form's target, typed into the address bar
    assert answer.status_code == 405
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["allow"] == "POST"
    assert "šio puslapio taip naudoti negalima" in answer.text


# --- a person's calendar follows their tenants -------------------------------------------------
LONDON = ("shop-uk=Europe/London",)
# 23:30 UTC on 6 December: 23:30 on the 6th in London, 01:30 on the 7th in Vilnius
NIGHT = {"started_at": "2026-12-06T23:30:00Z", "ended_at": "2026-12-06T23:34:00Z"}


def staff(cw: ConsoleWorld, username: str, role: Role, *tenants: str) -> tuple[TestClient, str]:
    cw.console.accounts.add_user(username, role, PASSWORD, list(tenants), by="admin1")
    return sign_in(cw, username)


def finds(client: TestClient, token: str, recording_id: str, **days: str) -> bool:
    page = client.post("/search", data={"call_id": "call-uk", **days, "csrf_token": token})
    assert page.status_code == 200, page.text
    return f'data-recording-id="{recording_id}"' in page.text


def test_someone_whose_tenants_share_a_time_zone_lives_in_it(world: World) -> None:
    cw = build_console(world, timezone_tenants=LONDON)
    call = cw.world.store_call("call-uk", tenant="shop-uk", **NIGHT)
    client, token = staff(cw, "qa-uk", Role.QA, "shop-uk")
    assert finds(client, token, call.recording_id, **{"from": "2026-12-06", "to": "2026-12-06"})
    assert not finds(client, token, call.recording_id, **{"from": "2026-12-07"})
    page = client.post("/search", data={"call_id": "call-uk", "csrf_token": token}).text
    assert '<time datetime="2026-12-06T23:30:00+00:00">6 Dec 2026, 23:30</time>' in page
    assert "Times are local (Europe/London)." in page


def test_someone_across_time_zones_reads_the_default_zone_with_offsets(world: World) -> None:
    cw = build_console(world, timezone_tenants=LONDON)
    call = cw.world.store_call("call-uk", tenant="shop-uk", **NIGHT)
    client, token = staff(cw, "qa-both", Role.QA, "shop-lt", "shop-uk")
    assert finds(client, token, call.recording_id, **{"from": "2026-12-07", "to": "2026-12-07"})
    assert not finds(client, token, call.recording_id, to="2026-12-06")
    client.headers["accept-language"] = "lt"
    page = client.post("/search", data={"call_id": "call-uk", "csrf_token": token}).text
    assert ">2026-12-07 01:30 GMT+02:00</time>" in page
    assert "pagal Europe/Vilnius laiko juostą, prie kiekvieno \N{EN DASH} poslinkis nuo UTC" in page
    dpo, _ = sign_in(cw, "dpo1")  # every tenant: London's too
    report = re.sub(r"<[^>]+>", "", dpo.get("/dpo/report?month=2026-12").text)
    assert "Period 1 Dec 2026, 00:00 GMT+02:00 to 1 Jan 2027, 00:00 GMT+02:00" in report


def test_someone_whose_browser_asks_for_no_language_of_ours_reads_their_tenants(
    world: World,
) -> None:
    cw = build_console(world, language_tenants=("shop-uk=en",))
    client, _ = staff(cw, "dpo-uk", Role.DPO, "shop-uk")
    client.headers["accept-language"] = "de-DE,de;q=0.9"
    page = client.get("/dpo/requests").text
    assert '<html lang="en">' in page
    assert '<option value="en" selected>' in page  # the answer's language, by default
    lithuanian, _ = staff(cw, "dpo-lt", Role.DPO, "shop-lt")
    lithuanian.headers["accept-language"] = "de-DE,de;q=0.9"
    assert '<html lang="lt">' in lithuanian.get("/dpo/requests").text


def test_a_dpo_in_london_registers_a_request_on_a_london_day(world: World) -> None:
    cw = build_console(world, timezone_tenants=LONDON)
    client, _ = staff(cw, "dpo-uk", Role.DPO, "shop-uk")
    page = client.get("/dpo/requests").text
    today = cw.world.clock.now.astimezone(ZoneInfo("Europe/London")).date().isoformat()
    assert f'name="received_on" type="date" value="{today}" max="{today}"' in page
    answer = client.post("/dpo/requests", data=registration_form(page))
    assert "Deadline: 13 Apr 2025." in answer.text
    event = json.loads(cw.world.records("dsr.requests")[0][1])
    assert event["data"]["received_at"] == "2025-03-13T00:00:00Z"  # midnight in London


# --- requests that come without a portal -----------------------------------------------------


def registration_form(page: str, **fields: str) -> dict[str, str]:
    request_id = re.search(r'name="request_id" value="([^"]+)"', page)
    assert request_id, "no request id in the form"
    return {
        "csrf_token": csrf(page),
        "request_id": request_id.group(1),
        "type": "access",
        "received_on": "2025-03-13",
        "channel": "letter",
        "verification": "id_document",
        "verified_by": "Ona Onaitė",
        "language": "en",
        "phone": "8 612 34567",
    } | fields


def test_the_dpo_registers_a_request_that_came_by_letter(cw: ConsoleWorld) -> None:
    cw.world.store_call("call-a")
    client, _ = sign_in(cw, "dpo1")
    page = client.get("/dpo/requests")
    assert 'id="register-request"' in page.text
    form = registration_form(page.text)
    answer = client.post("/dpo/requests", data=form)
    assert answer.status_code == 200, answer.text
    assert "Deadline: 13 Apr 2025." in answer.text  # one month from the day it came
    again = client.post("/dpo/requests", data=form)  # the same form sent twice
    assert again.status_code == 200

    published = cw.world.records("dsr.requests")
    assert {key for key, _ in published} == {form["request_id"]}
    event = json.loads(published[0][1])
    assert event["type"] == "callvault.dsr.requested.v1"
    assert event["data"] == {
        "request_id": form["request_id"],
        "type": "access",
        "received_at": "2025-03-12T22:00:00Z",  # midnight in Vilnius
        "identity_verified": True,
        "subject": {
            "phone_numbers": ["8 612 34567"],
            "emails": [],
            "customer_ids": [],
            "order_ids": [],
        },
        "language": "en",
    }
    with cw.world.container.database.unit_of_work() as uow:
        entries = [e for e in uow.audit_entries(0, 1000) if e.action == "request_registered"]
    assert len(entries) == 1  # registered once
    assert entries[0].entity_id == form["request_id"]
    assert entries[0].details | {"received_at": "…"} == {
        "by": "dpo1",
        "type": "access",
        "received_at": "…",
        "channel": "letter",
        "verification": "id_document",
        "verified_by": "Ona Onaitė",
        "language": "en",
        "tenant": None,
    }
    assert "612" not in json.dumps(entries[0].details)  # never the person's identifiers

    # the worker takes it from dsr.requests as it takes a portal's
    for key, value in published[:1]:
        assert cw.world.deliver("dsr.requests", value, key) == "completed"
    with cw.world.container.database.unit_of_work() as uow:
        record = uow.requests.get(form["request_id"])
    assert record is not None
    assert record.language == "en"
    (listed_by_api,) = cw.api("dpo1").get("/api/v1/requests?open=false").json()["items"]
    assert (listed_by_api["request_id"], listed_by_api["language"]) == (form["request_id"], "en")
    listed = client.get("/dpo/requests")
    assert form["request_id"] in listed.text
    assert "ZIP until" in listed.text
    assert record.result["export"]["url"] in listed.text.replace("&amp;", "&")  # to send on


def test_registering_needs_the_dpo_a_past_day_and_an_identifier(cw: ConsoleWorld) -> None:
    client, _ = sign_in(cw, "dpo1")
    page = client.get("/dpo/requests").text
    future = client.post("/dpo/requests", data=registration_form(page, received_on="2025-03-15"))
    assert future.status_code == 422
    nobody = client.post("/dpo/requests", data=registration_form(page, phone=""))
    assert nobody.status_code == 422
    forged = client.post("/dpo/requests", data=registration_form(page, request_id="R-1"))
    assert forged.status_code == 422
    assert cw.world.records("dsr.requests") == []
    qa, token = sign_in(cw, "qa1")
    refused = qa.post("/dpo/requests", data=registration_form(page, csrf_token=token))
    assert refused.status_code == 403
    assert cw.world.records("dsr.requests") == []


def test_an_unverified_registration_is_refused_by_the_worker(cw: ConsoleWorld) -> None:
    client, _ = sign_in(cw, "dpo1")
    client.headers["accept-language"] = "lt"
    page = client.get("/dpo/requests").text
    form = registration_form(page, verification="not_verified", type="erasure")
    answer = client.post("/dpo/requests", data=form)
    assert "užregistruotas" in answer.text
    ((key, value),) = cw.world.records("dsr.requests")
    assert json.loads(value)["data"]["identity_verified"] is False
    assert cw.world.deliver("dsr.requests", value, key) == "rejected"
    answered = client.get("/dpo/requests").text
    assert "asmens tapatybė nepatikrinta" in answered  # the worker's reason, in words
    assert "identity_not_verified" not in answered
