"""The whole lifecycle of recordings, narrated as it happens (``callvault demo --lifecycle``,
run by ``make run``): calls stored; a demo tenant with a short retention whose recordings are
purged while you watch; a legal hold that keeps one of them; an access request answered with a
downloadable export; an erasure with a signed certificate; a bad event in the dead-letter topic.

The tour plays the systems around callvault (the PBX, the DSR portal, the compliance team) and
reports what callvault publishes, read from its output topics as any consumer would. It needs a
running worker whose policy gives the tenant ``demo-short`` a retention of a few minutes at most
(``deploy/run.sh`` sets ``CALLVAULT_RETENTION_TENANTS=demo-short=PT1M``)."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..adapters.kafka import codec
from ..adapters.kafka.watch import TopicWatch
from ..domain import events
from ..domain.errors import ConfigError, TransientError
from ..domain.model import recording_id_for
from ..domain.retention import rfc3339
from .traffic import CUSTOMERS, PHRASES, SHOP_LINE, speech, tone_wav

if TYPE_CHECKING:
    from ..bootstrap import App

SHORT_TENANT = "demo-short"
LONGEST_SHORT_RETENTION = timedelta(minutes=5)
SOURCE = "urn:callvault:demo"
Event = dict[str, Any]
Match = Callable[[str, Event], bool]


@dataclass
class Tour:
    """One run of the tour over a built callvault."""

    built: App
    say: Callable[[str], None]
    timeout: float = 120.0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    started: float = field(default_factory=time.monotonic)
    seen: list[tuple[str, Event]] = field(default_factory=list)
    watch: TopicWatch | None = None

    # --- the story ------------------------------------------------------------------------
    def run(self, due_in: float) -> None:
        short = self._short_retention()
        self.watch = self._open_watch()
        try:
            self._tell(short, due_in)
        finally:
            self.watch.close()

    def _tell(self, short: timedelta, due_in: float) -> None:
        ended = datetime.now(UTC) + timedelta(seconds=due_in) - short
        self.step(
            f"1. The PBX sends {len(CUSTOMERS) + 3} calls: one per customer, and 3 for tenant "
            f"{SHORT_TENANT}, whose retention is {short.total_seconds():.0f} s"
        )
        kept_calls = self.send_calls(ended)
        short_calls = self.send_calls(ended, tenant=SHORT_TENANT, count=3)
        stored = self.wait_all("recordings_stored", [*kept_calls, *short_calls], "call_id")
        for data in stored:
            self.note(
                f"stored   {data['call_id']}  tenant {data['tenant']:<10} "
                f"due {data['retention_due_at']}"
            )
        held = short_calls[0]
        self.step(f"2. Compliance places a legal hold on {held} (a customer dispute)")
        hold_id = self.place_hold(held)
        self.note(f"hold {hold_id} in force: {held} will outlive its retention")
        self.step("3. A malformed event arrives: it goes to the dead-letter topic, nothing stops")
        letter = self.send_bad_event()
        self.note(
            f"dead letter: error_code {letter['error_code']} - see `callvault deadletter list`"
        )
        self.step("4. Ona asks for her recordings, giving her number as '8 612 34567'")
        self.show_access(self.request("access", {"phone_numbers": ["8 612 34567"]}))
        self.step("5. Jonas asks for erasure, by e-mail")
        self.show_erasure(self.request("erasure", {"emails": ["jonas@example.lt"]}))
        self.step(f"6. Retention runs out for tenant {SHORT_TENANT}: purged while you watch")
        self.show_purges(short_calls[1:], held, hold_id)

    # --- what the tour sends --------------------------------------------------------------
    def send_calls(self, ended: datetime, tenant: str | None = None, count: int = 0) -> list[str]:
        """One call per customer (or ``count`` calls) with spoken audio in the landing bucket."""
        people = CUSTOMERS if not count else [CUSTOMERS[2 + i % 2] for i in range(count)]
        call_ids = []
        with tempfile.TemporaryDirectory(prefix="callvault-tour-") as workdir:
            for n, (e164, national, name, email, customer_id) in enumerate(people):
                call_id = f"tour-{self.run_id}-{tenant or 'shop'}-{n + 1}"
                audio = speech(PHRASES[n % len(PHRASES)], "wav", Path(workdir)) or tone_wav(1.5)
                data = {
                    "call_id": call_id,
                    "direction": "inbound",
                    "caller": national if n % 2 else e164,
                    "callee": SHOP_LINE,
                    "agent_id": f"agent-{n % 3 + 1}",
                    "started_at": rfc3339(ended - timedelta(minutes=3)),
                    "ended_at": rfc3339(ended),
                    "notice_played": True,
                    "recording": self.land(call_id, audio),
                    "customer": {"name": name, "email": email, "customer_id": customer_id},
                }
                if tenant:
                    data["tenant"] = tenant
                self.publish("calls_ended", call_id, events.CALL_ENDED, data)
                call_ids.append(call_id)
        return call_ids

    def land(self, call_id: str, audio: bytes) -> dict[str, Any]:
        key = f"demo/{call_id}.wav"
        bucket = self.built.settings.landing_bucket
        self.built.objects.put_stream(bucket, key, [audio], content_type="audio/wav")
        return {
            "uri": f"s3://{bucket}/{key}",
            "size_bytes": len(audio),
            "content_type": "audio/wav",
        }

    def place_hold(self, call_id: str) -> str:
        hold_id = f"tour-{self.run_id}-hold"
        data = {"hold_id": hold_id, "reason": "customer dispute", "scope": {"call_ids": [call_id]}}
        self.publish("holds_commands", hold_id, events.HOLD_PLACED, data)
        self.until(lambda: self.hold_in_force(hold_id), f"hold {hold_id} to take effect")
        return hold_id

    def hold_in_force(self, hold_id: str) -> bool:
        with self.built.database.unit_of_work() as uow:
            hold = uow.holds.get(hold_id)
            return hold is not None and hold.active

    def send_bad_event(self) -> Event:
        key = f"tour-{self.run_id}-broken"
        topic = self.built.settings.topics()["calls_ended"]
        self.built.bus.publish([(topic, key, b'{"specversion": "1.0", "broken": ')])
        return self.wait_one("deadletter", lambda d: d.get("key") == key)

    def request(self, dsr_type: str, subject: dict[str, list[str]]) -> Event:
        request_id = f"tour-{self.run_id}-{dsr_type}"
        data = {
            "request_id": request_id,
            "type": dsr_type,
            "received_at": rfc3339(datetime.now(UTC)),
            "identity_verified": True,
            "subject": {"phone_numbers": [], "emails": [], "customer_ids": [], "order_ids": []}
            | subject,
        }
        self.publish("dsr_requests", request_id, events.DSR_REQUESTED, data)
        return self.wait_one("dsr_results", lambda d: d.get("request_id") == request_id)

    def publish(self, logical: str, key: str, event_type: str, data: dict[str, Any]) -> None:
        envelope = codec.envelope(
            event_type, data, source=SOURCE, id=events.event_id(event_type, key)
        )
        value = codec.encode(envelope)
        self.built.bus.publish([(self.built.settings.topics()[logical], key, value)])

    # --- what the tour shows --------------------------------------------------------------
    def show_access(self, answer: Event) -> None:
        export = answer.get("export") or {}
        self.note(
            f"answer: {answer['status']}, {len(answer['recordings'])} recording(s) exported, "
            f"ZIP of {export.get('size_bytes', 0)} bytes (audio, manifest.json, and the "
            "caller's letter: letter.pdf and letter.html)"
        )
        if export:
            self.note(f"download until {export['expires_at']}:")
            self.note(f"  curl -o access.zip '{export['url']}'")

    def show_erasure(self, answer: Event) -> None:
        from ..adapters.signatures import check_certificate

        certificate = answer.get("certificate") or {}
        valid, reason = check_certificate(certificate, [self.built.keys.public_key()])
        versions = sum(int(r.get("versions_deleted", 0)) for r in certificate.get("recordings", []))
        self.note(
            f"answer: {answer['status']}, {len(answer['recordings'])} recording(s) erased, "
            f"{versions} object version(s) deleted"
        )
        self.note(
            f"deletion certificate signed by {certificate.get('key_id')}: "
            + ("signature valid" if valid else f"INVALID ({reason})")
        )
        path = Path(tempfile.gettempdir()) / f"callvault-certificate-{self.run_id}.json"
        path.write_text(json.dumps(certificate, indent=2))
        self.note(f"saved to {path}; check it: callvault verify-certificate {path}")
        letter = answer.get("letter") or {}
        if letter:
            self.note(
                f"the caller's confirmation (PDF, the certificate attached) until "
                f"{letter['expires_at']}:"
            )
            self.note(f"  curl -o erasure.pdf '{letter['url']}'")

    def show_purges(self, due_calls: list[str], held: str, hold_id: str) -> None:
        self.note(f"waiting for {len(due_calls)} recordings to fall due (the hold keeps {held})")
        purged = self.wait_all("recordings_purged", due_calls, "call_id")
        for data in purged:
            self.note(
                f"purged   {data['call_id']}  reason {data['reason']}, due {data['due_at']}, "
                f"{data['lag_seconds']:.1f} s after due, {data['versions_deleted']} version(s)"
            )
        with self.built.database.unit_of_work() as uow:
            recording = uow.recordings.get(recording_id_for(self.built.keys.hasher, held))
        state = (
            "still stored" if recording is not None and recording.purged_at is None else "gone (?)"
        )
        self.note(f"{held} is past due and {state}: held by {hold_id}")
        self.note(f"release it with: callvault hold release {hold_id}  (it is purged at once)")

    # --- plumbing -------------------------------------------------------------------------
    def _short_retention(self) -> timedelta:
        short = self.built.settings.policy.for_tenant(SHORT_TENANT)
        if short.months or short.as_timedelta() > LONGEST_SHORT_RETENTION:
            raise ConfigError(
                f"the tour needs tenant {SHORT_TENANT} with a retention of at most 5 minutes: "
                f"set CALLVAULT_RETENTION_TENANTS={SHORT_TENANT}=PT1M for `callvault migrate`, "
                "the worker and the tour (deploy/run.sh does)"
            )
        return short.as_timedelta()

    def _open_watch(self) -> TopicWatch:
        return self.built.topic_watch(
            ("recordings_stored", "recordings_purged", "dsr_results", "deadletter")
        )

    def step(self, text: str) -> None:
        self.say("")
        self.say(f"[{time.monotonic() - self.started:5.1f}s] {text}")

    def note(self, text: str) -> None:
        self.say(f"         {text}")

    def wait_one(self, topic: str, match: Callable[[Event], bool]) -> Event:
        return self.wait_all(topic, [None], "", lambda d, _: match(d))[0]

    def wait_all(
        self,
        topic: str,
        wanted: list[Any],
        key: str,
        match: Callable[[Event, Any], bool] | None = None,
    ) -> list[Event]:
        """The data of one event on ``topic`` for each of ``wanted`` (``key`` compares)."""
        matches = match or (lambda data, want: data.get(key) == want)
        found: dict[int, Event] = {}

        def done() -> bool:
            for name, event in self.seen:
                data = event.get("data") or {}
                for i, want in enumerate(wanted):
                    if name == topic and i not in found and matches(data, want):
                        found[i] = data
            return len(found) == len(wanted)

        self.until(done, f"{len(wanted)} event(s) on {topic}")
        return [found[i] for i in range(len(wanted))]

    def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TransientError(
                    f"waited {self.timeout:.0f} s for {what}: is the worker running?"
                )
            assert self.watch is not None
            self.seen += self.watch.poll()


def tour(
    built: App, say: Callable[[str], None], due_in: float = 45.0, timeout: float = 120.0
) -> None:
    """Tell the whole lifecycle; the short-retention recordings fall due ``due_in`` seconds
    after the calls are sent."""
    Tour(built, say, timeout).run(due_in)
