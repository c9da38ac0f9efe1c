"""Staff see only their tenants (search, playback, disclosures, the DPO's pages), and nobody
acts as someone else unseen: API tokens only for oneself, every account operation in the
hash-chained audit trail."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.conftest import OTHER_PHONE, World
from tests.unit.console_world import PASSWORD, ConsoleWorld, build_console
from workers.app.console.model import Role
from workers.domain.audit import verify_chain

OTHER = "shop-lv"  # a second tenant of the same installation


@pytest.fixture
def cw(world: World) -> ConsoleWorld:
    cw = build_console(world)
    for name, role in (("qa-lt", Role.QA), ("dpo-lt", Role.DPO)):
        cw.console.accounts.add_user(name, role, PASSWORD, ["shop-lt"], by="admin1")
        cw.tokens[name] = cw.console.accounts.create_token(name, by=name)[1]
    return cw


def stored(cw: ConsoleWorld) -> tuple[str, str]:
    """(a recording of shop-lt, a recording of shop-lv)."""
    mine = cw.world.store_call("call-lt").recording_id
    theirs = cw.world.store_call("call-lv", caller=OTHER_PHONE, tenant=OTHER).recording_id
    return mine, theirs


def ids(answer: Any) -> list[str]:
    return [i["recording_id"] for i in answer.json()["items"]]


# --- tenants ----------------------------------------------------------------------------------
def test_a_user_of_one_tenant_finds_and_plays_only_its_recordings(cw: ConsoleWorld) -> None:
    mine, theirs = stored(cw)
    by_date = {"from": "2025-03-01", "to": "2025-03-31"}
    assert ids(cw.api("qa-lt").post("/api/v1/recordings/search", json=by_date)) == [mine]
    assert sorted(ids(cw.api("qa1").post("/api/v1/recordings/search", json=by_date))) == sorted(
        [mine, theirs]
    )  # '*': every tenant
    api = cw.api("qa-lt")
    assert api.get(f"/api/v1/recordings/{theirs}/audio?purpose=quality").status_code == 404
    assert api.get(f"/api/v1/recordings/{theirs}").status_code == 404
    assert api.get(f"/api/v1/recordings/{mine}/audio?purpose=quality").status_code == 200
    client = cw.signed_in("qa-lt")
    assert client.get(f"/recordings/{theirs}").status_code == 404


def test_a_dpo_of_one_tenant_discloses_and_reads_the_registers_of_it_only(
    cw: ConsoleWorld,
) -> None:
    mine, theirs = stored(cw)
    body = {
        "recipient": "Telia",
        "recipient_kind": "telecom_provider",
        "legal_basis": "Art. 28",
        "reference": "R-1",
    }
    dpo_lt, dpo = cw.api("dpo-lt"), cw.api("dpo1")
    refused = dpo_lt.post("/api/v1/disclosures", json=body | {"recording_ids": [mine, theirs]})
    assert refused.status_code == 404
    assert dpo_lt.post("/api/v1/disclosures", json=body | {"recording_ids": [mine]}).is_success
    assert dpo.post("/api/v1/disclosures", json=body | {"recording_ids": [theirs]}).is_success
    assert len(dpo_lt.get("/api/v1/disclosures").json()["items"]) == 1
    assert len(dpo.get("/api/v1/disclosures").json()["items"]) == 2
    cw.api("qa1").get(f"/api/v1/recordings/{theirs}/audio?purpose=quality")
    cw.api("qa1").get(f"/api/v1/recordings/{mine}/audio?purpose=quality")
    log = dpo_lt.get("/api/v1/access-log").json()["items"]
    assert [e["recording_id"] for e in log] == [mine]
    hold = {"reason": "dispute", "scope": {"recording_ids": [theirs]}}
    assert dpo_lt.post("/api/v1/holds", json=hold).status_code == 404
    by_call = {"reason": "dispute", "scope": {"call_ids": ["call-lt"]}}
    assert dpo_lt.post("/api/v1/holds", json=by_call).status_code == 403  # calls: every tenant
    assert dpo.post("/api/v1/holds", json={**hold, "hold_id": "H-lv"}).status_code == 201
    assert dpo_lt.get("/api/v1/holds").json()["items"] == []
    assert dpo_lt.post("/api/v1/holds/H-lv/release").status_code == 404
    assert dpo_lt.get("/api/v1/overview").status_code == 403  # counts every tenant


def test_a_user_needs_a_tenant_and_every_tenant_is_said_explicitly(cw: ConsoleWorld) -> None:
    admin = cw.api("admin1")
    user = {"username": "ona", "role": "qa", "password": "long enough secret"}
    assert admin.post("/api/v1/users", json=user).status_code == 422
    assert admin.post("/api/v1/users", json=user | {"tenants": []}).status_code == 422
    assert admin.post("/api/v1/users", json=user | {"tenants": ["no spaces"]}).status_code == 422
    made = admin.post("/api/v1/users", json=user | {"tenants": ["shop-lt", OTHER]}).json()
    assert made["tenants"] == ["shop-lt", OTHER]
    changed = admin.put("/api/v1/users/ona/tenants", json={"tenants": ["*"]}).json()
    assert changed["tenants"] == ["*"]


# --- nobody acts as someone else unseen ------------------------------------------------------
def test_an_administrator_cannot_make_a_token_for_someone_else(cw: ConsoleWorld) -> None:
    admin = cw.signed_in("admin1")
    before = set(cw.state.tokens)
    for_dpo = admin.post("/api/v1/users/dpo1/tokens", json={})
    assert not for_dpo.is_success
    assert set(cw.state.tokens) == before
    own = admin.post("/api/v1/tokens", json={})
    assert own.status_code == 201
    assert cw.state.tokens[own.json()["token_id"]].username == "admin1"
    minted = cw.api("dpo1").post("/api/v1/tokens", json={})  # a token cannot mint tokens
    assert minted.status_code == 403
    listed = cw.signed_in("dpo1").get("/api/v1/tokens").json()["items"]
    assert len(listed) == 1
    assert "token" not in listed[0]


def test_every_account_operation_is_in_the_hash_chained_audit(cw: ConsoleWorld) -> None:
    admin = cw.api("admin1")
    user = {"username": "ona", "role": "qa", "password": PASSWORD, "tenants": ["*"]}
    admin.post("/api/v1/users", json=user)
    admin.put("/api/v1/users/ona/tenants", json={"tenants": ["shop-lt"]})
    made = cw.signed_in("ona").post("/api/v1/tokens", json={}).json()
    admin.delete(f"/api/v1/tokens/{made['token_id']}")
    admin.post("/api/v1/users/ona/disable")
    admin.post("/api/v1/users/ona/enable")
    ona = [
        (e.details["action"], e.details["by"]) for e in cw.audit("account") if e.entity_id == "ona"
    ]
    assert ona == [
        ("user_added", "admin1"),
        ("tenants_changed", "admin1"),
        ("token_created", "ona"),
        ("token_revoked", "admin1"),
        ("disabled", "admin1"),
        ("enabled", "admin1"),
    ]
    assert verify_chain(cw.world.db.state.audit)[1] is None
    text = repr([e.details for e in cw.audit("account")])
    assert PASSWORD not in text
    assert made["token"].split("_", 2)[2] not in text
