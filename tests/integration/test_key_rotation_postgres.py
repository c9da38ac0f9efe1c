"""Both key rotations on the real PostgreSQL (the unit tests prove them on the fakes): data
keys re-wrapped row by row under row locks, digests and a subject hold re-keyed, the check
values in force afterwards."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.stack import Instance
from tests.fakes.memory import MemoryBus, MemoryHoldCommands, MemoryObjectStore
from tests.unit.conftest import WAV, call_data, cloudevent, subject
from workers.adapters.fetch import AudioFetcher
from workers.adapters.postgres.migrate import migrate_schema
from workers.app.handlers.keys import begin_hash_rotation, verify_keys
from workers.app.messagebus import Delivery
from workers.bootstrap import App, bootstrap
from workers.domain import messages as m
from workers.domain.errors import ConfigError
from workers.settings import load_settings

LANDING = "landing"


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class Shop:
    """callvault over the instance's real database, with the object store and Kafka faked."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.objects, self.bus = MemoryObjectStore(), MemoryBus()
        settings = self.settings()
        for bucket in (settings.vault_bucket, settings.export_bucket, LANDING):
            self.objects.ensure_bucket(bucket, versioned=True, object_lock=False)
        migrate_schema(instance.migration_settings())
        self.containers: list[App] = []
        self.offset = 0

    def settings(self, **overrides: Any) -> Any:
        return load_settings(
            **{**self.instance.settings_kwargs(), "landing_bucket": LANDING, **overrides}
        )

    def start(self, **overrides: Any) -> App:
        built = bootstrap(
            self.settings(**overrides),
            objects=self.objects,
            bus=self.bus,
            fetcher=AudioFetcher(self.objects, fetch_root=None, timeout_seconds=5),
            hold_commands=MemoryHoldCommands(),
        )
        self.containers.append(built)
        return built

    def deliver(self, built: App, topic: str, method: str, event: dict[str, Any]) -> str:
        self.offset += 1
        record = Delivery(topic, 0, self.offset, None, json.dumps(event).encode())
        outcome: str = getattr(built.inputs, method)(record)
        while built.dispatcher.drain() or built.relay.publish_pending():
            pass
        return outcome

    def call(self, built: App, call_id: str, phone: str) -> str:
        key_name = f"in/{call_id}.wav"
        self.objects.put_stream(LANDING, key_name, [WAV], content_type="audio/wav")
        data = call_data(call_id, f"s3://{LANDING}/{key_name}", WAV, caller=phone, customer=None)
        return self.deliver(
            built, "calls", "call_ended", cloudevent("callvault.call.ended.v1", data)
        )

    def answers(self) -> list[dict[str, Any]]:
        events = [json.loads(v) for t, _, v in self.bus.records if t.endswith("dsr_results")]
        return [e["data"] for e in events]


@pytest.fixture
def shop(instance: Instance) -> Iterator[Shop]:
    made = Shop(instance)
    yield made
    for built in made.containers:
        built.close()


def test_master_key_rotation_on_postgres(shop: Shop) -> None:
    old, new = shop.settings().master_key.get_secret_value(), key()
    first = shop.start()
    verify_keys(first.ctx, register=True)
    assert shop.call(first, "pg-1", "+370 612 34567") == "stored"
    rotating = shop.start(master_key=None, master_keys=f"m1={old},m2={new}", master_key_id="m2")
    verify_keys(rotating.ctx, register=True)
    assert shop.call(rotating, "pg-2", "+370 612 34567") == "stored"
    assert rotating.messagebus.handle(m.RewrapDataKeys("", 10)).startswith("rewrapped:1:")
    assert rotating.messagebus.handle(m.RetireMasterKeys()) == "retired:1:m1"
    final = shop.start(master_key=None, master_keys=f"m2={new}", master_key_id="m2")
    assert verify_keys(final.ctx, register=False) == []
    request = {
        "request_id": "pg-r",
        "type": "access",
        "received_at": "2026-01-01T00:00:00Z",
        "identity_verified": True,
        "subject": subject(phone_numbers=["8 612 34567"]),
    }
    event = cloudevent("callvault.dsr.requested.v1", request)
    assert shop.deliver(final, "dsr", "dsr_request", event) == "completed"
    assert len(shop.answers()[-1]["recordings"]) == 2


def test_hash_key_rotation_on_postgres(shop: Shop) -> None:
    old, new = shop.settings().hash_key.get_secret_value(), key()
    first = shop.start()
    verify_keys(first.ctx, register=True)
    assert shop.call(first, "pg-h1", "+370 612 34567") == "stored"
    hold = {
        "hold_id": "pg-hold",
        "reason": "dispute",
        "scope": {"subject": {"phone_numbers": ["+370 655 55555"]}},
    }
    assert (
        shop.deliver(first, "holds", "hold_command", cloudevent("callvault.hold.placed.v1", hold))
        == "placed"
    )

    rotated = shop.start(hash_key=new, hash_keys_retired=old)
    with pytest.raises(ConfigError, match="re-key the digests first"):
        verify_keys(rotated.ctx, register=False)
    previous = begin_hash_rotation(rotated.ctx)
    assert previous is not None
    assert rotated.messagebus.handle(m.RekeyDigests("", 10)).startswith("rekeyed:1:")
    assert rotated.messagebus.handle(m.FinishHashRotation(previous)) == "finished:1:0"
    assert verify_keys(rotated.ctx, register=False) == []

    assert shop.call(rotated, "pg-h1", "+370 612 34567") == "duplicate"  # the same call
    assert shop.call(rotated, "pg-h2", "+370 655 55555") == "stored"
    with rotated.database.connection() as conn:
        held = conn.execute("SELECT call_id FROM recordings WHERE held").fetchall()
    assert [r["call_id"] for r in held] == ["pg-h2"]  # the hold covers a later call
