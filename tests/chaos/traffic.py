"""Steady mixed traffic, as the systems around callvault send it, and a ledger of everything
sent (the oracle the checks compare the outcome with).

- the telephony system: a call-ended event every ``call_every`` seconds (audio landed in S3, or
  a file under the fetch root), some already past due on arrival, a few without the recording
  notice, a few redelivered (the same event again, or a second event for the same call);
- compliance: a hold on a call placed right after the call is published; holds on recordings
  (upper-case ids too) and on subjects; releases; "release the old, place the renewed" pairs;
- the DSR portal: erasures (of held subjects too) and access requests.

Every send is retried until the broker acknowledges it, as a producer with ``acks=all`` and a
local spool would: a broker outage delays traffic, it never drops it (a retried send may reach
the topic twice, which callvault must absorb)."""

from __future__ import annotations

import hashlib
import heapq
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from testbed.stack import Instance
from tests.chaos.profiles import Profile
from tests.e2e.harness import cloudevent, make_wav, stamp
from workers.bootstrap import object_store
from workers.domain.keyed import HmacKey
from workers.domain.model import recording_id_for
from workers.domain.retention import IsoDuration
from workers.settings import Settings

HELD = (0, 1)  # subject holds placed at the start and never released
RENEWED = (2, 3)  # subject holds renewed twice; subject 2's last one is released
ERASED = (4, 5)  # erasure requests now and then
ACCESSED = (6, 7)  # access requests now and then
SUBJECTS = 12
SEND_GIVE_UP = 300.0  # a send still failing after this long is recorded as not sent


@dataclass(frozen=True)
class Subject:
    index: int

    @property
    def phone(self) -> str:
        return "+3706" + f"{1000000 + self.index * 7919:07d}"

    @property
    def national(self) -> str:
        """The same number as a person writes it at home (8 6xx xxxxx)."""
        return f"8 {self.phone[4:7]} {self.phone[7:]}"

    @property
    def email(self) -> str:
        return f"Person.{self.index}@Example.lt"

    def scope(self) -> dict[str, list[str]]:
        return {"phone_numbers": [self.national], "emails": [self.email.upper()]}


@dataclass
class CallSent:
    call_id: str
    recording_id: str
    subject: int
    ended_at: datetime
    due_at: datetime
    sent_at: datetime
    notice: bool
    sha256: str
    event_id: str
    value: bytes


@dataclass
class HoldSent:
    hold_id: str
    kind: str  # call, recording, subject
    calls: tuple[str, ...] = ()
    subject: int | None = None
    fate: str = "keep"  # keep, release, renew, scripted
    placed_sent: datetime | None = None
    released_sent: datetime | None = None
    renewed_by: str | None = None

    @property
    def in_force_at_end(self) -> bool:
        return self.released_sent is None


@dataclass
class RequestSent:
    request_id: str
    type: str
    subject: int
    sent_at: datetime


@dataclass
class Ledger:
    calls: dict[str, CallSent] = field(default_factory=dict)
    holds: dict[str, HoldSent] = field(default_factory=dict)
    requests: dict[str, RequestSent] = field(default_factory=dict)
    redelivered: int = 0  # the same event again
    second_events: int = 0  # another event for a call already sent
    renewals: int = 0
    unsent: int = 0  # sends that never got through (lost at the source, not by callvault)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Sender:
    def __init__(self, bootstrap: str) -> None:
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            max_block_ms=5000,
            request_timeout_ms=8000,
            retries=3,
            reconnect_backoff_max_ms=2000,
        )

    def send(self, topic: str, key: str, value: bytes) -> bool:
        """Send until acknowledged; ``False`` after SEND_GIVE_UP seconds of failures."""
        deadline = time.monotonic() + SEND_GIVE_UP
        while True:
            try:
                self._producer.send(topic, key=key.encode(), value=value).get(timeout=15)
                return True
            except KafkaError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(1.0)

    def close(self) -> None:
        self._producer.close(timeout=10)


class Traffic:
    def __init__(self, instance: Instance, settings: Settings, profile: Profile, seed: int) -> None:
        self.instance = instance
        self.settings = settings
        self.profile = profile
        self.random = random.Random(seed)
        self.ledger = Ledger()
        self.sender = Sender(settings.kafka_bootstrap)
        self.objects = object_store(settings)
        self.hash_key = HmacKey(settings.key("hash_key"))
        self.retention = IsoDuration.parse(profile.retention)
        self.files = Path(settings.fetch_root or "/nonexistent") / instance.name
        self.files.mkdir(parents=True, exist_ok=True)
        self._later: list[tuple[float, int, str, str]] = []  # (when, n, kind, call_id)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0
        self._calls = 0

    # running --------------------------------------------------------------------------------
    def start(self) -> None:
        self._started = time.monotonic()
        for subject in HELD + RENEWED:
            fate = "keep" if subject in HELD else "scripted"
            self._place(HoldSent(self._hold_id("s"), "subject", subject=subject, fate=fate))
        for target in (self._calls_loop, self._control_loop):
            thread = threading.Thread(target=target, name=target.__name__, daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self) -> None:
        """Wait until the traffic's time is up, then send what was scheduled for later."""
        for thread in self._threads:
            thread.join()
        self._redeliver(until=float("inf"))
        self.sender.close()

    def stop(self) -> None:
        self._stop.set()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _running(self) -> bool:
        return not self._stop.is_set() and self.elapsed() < self.profile.traffic_seconds

    # the telephony system -------------------------------------------------------------------
    def _calls_loop(self) -> None:
        while self._running():
            began = time.monotonic()
            call = self._call()
            roll = self.random.random()
            if call.notice and roll < 0.15:  # a hold on the call right after it was published
                fate = self.random.choice(("keep", "release", "renew"))
                self._place(HoldSent(self._hold_id("c"), "call", calls=(call.call_id,), fate=fate))
            elif roll < 0.22:
                self._schedule(self.random.uniform(1, 15), "redeliver", call.call_id)
            elif roll < 0.27:
                self._schedule(self.random.uniform(1, 15), "second", call.call_id)
            self._stop.wait(max(0.0, self.profile.call_every - (time.monotonic() - began)))

    def _call(self) -> CallSent:
        n = self._calls
        self._calls += 1
        subject = Subject(self.random.randrange(SUBJECTS))
        past_due = self.random.random() < 0.3
        now = datetime.now(UTC)
        ended = now - timedelta(seconds=self.random.uniform(25, 90)) if past_due else now
        notice = self.random.random() >= 0.05
        audio = make_wav(0.2, tone=180.0 + 7 * n)  # distinct audio per call
        call_id = f"{self.instance.name}-call-{n:04d}"
        inbound = self.random.random() < 0.7
        data: dict[str, Any] = {
            "call_id": call_id,
            "direction": "inbound" if inbound else "outbound",
            "caller": subject.phone if inbound else "+370 521 44500",
            "callee": "+370 521 44500" if inbound else subject.national,
            "started_at": stamp(ended - timedelta(minutes=2)),
            "ended_at": stamp(ended),
            "notice_played": notice,
            "recording": {
                "uri": self._land(audio, n),
                "size_bytes": len(audio),
                "sha256": hashlib.sha256(audio).hexdigest(),
            },
            "customer": {"email": subject.email, "customer_id": f"C-{subject.index}"},
        }
        event_id = str(uuid.uuid4())
        value = cloudevent("callvault.call.ended.v1", data, event_id)
        call = CallSent(
            call_id,
            recording_id_for(self.hash_key, call_id),
            subject.index,
            ended,
            self.retention.after(ended),
            now,
            notice,
            hashlib.sha256(audio).hexdigest(),
            event_id,
            value,
        )
        with self.ledger.lock:
            self.ledger.calls[call_id] = call
        self._send("calls_ended", call_id, value)
        call.sent_at = datetime.now(UTC)  # arrival: after a broker outage, later than made
        return call

    def _land(self, audio: bytes, n: int) -> str:
        """Two calls in three land in the S3 landing bucket, the others as a local file."""
        if n % 3 == 2:
            path = self.files / f"call-{n:04d}.wav"
            path.write_bytes(audio)
            return path.as_uri()
        key = f"incoming/{uuid.uuid4()}.wav"
        while True:
            try:
                self.objects.put_stream(
                    self.settings.landing_bucket, key, [audio], content_type="audio/wav"
                )
                return f"s3://{self.settings.landing_bucket}/{key}"
            except Exception:  # noqa: BLE001 - the telephony system retries an upload until it lands
                time.sleep(1.0)

    # compliance and the DSR portal ----------------------------------------------------------
    def _control_loop(self) -> None:
        renewals_due = [0.35, 0.65]
        final_release_due = 0.8
        while self._running():
            share = self.elapsed() / self.profile.traffic_seconds
            if renewals_due and share >= renewals_due[0]:
                renewals_due.pop(0)
                for hold in self._holds(lambda h: h.fate == "scripted"):
                    self._renew(hold, fate="scripted")
            if final_release_due and share >= final_release_due:
                final_release_due = 0.0
                for hold in self._holds(lambda h: h.fate == "scripted" and h.subject == 2):
                    self._release(hold)
            self._redeliver(until=time.monotonic())
            self._act()
            self._stop.wait(self.profile.control_every)

    def _act(self) -> None:
        actions = [
            (self._hold_recording, 2.0),
            (self._release_one, 3.0),
            (self._renew_one, 2.0),
            (self._erase, 2.0),
            (self._access, 1.5),
        ]
        chosen = self.random.choices([a for a, _ in actions], [w for _, w in actions])[0]
        chosen()

    def _hold_recording(self) -> None:
        recent = [c for c in self._recent_calls(30) if c.notice]
        if not recent:
            return
        call = self.random.choice(recent)
        target = call.recording_id.upper() if self.random.random() < 0.5 else call.recording_id
        fate = self.random.choice(("keep", "release", "renew"))
        hold = HoldSent(self._hold_id("r"), "recording", calls=(call.call_id,), fate=fate)
        self._place(hold, {"recording_ids": [target]})

    def _release_one(self) -> None:
        ripe = self._holds(lambda h: h.fate == "release" and self._age(h) > 8)
        if ripe:
            self._release(self.random.choice(ripe))

    def _renew_one(self) -> None:
        ripe = self._holds(lambda h: h.fate == "renew" and self._age(h) > 6)
        if ripe:
            self._renew(self.random.choice(ripe), fate=self.random.choice(("keep", "release")))

    def _renew(self, old: HoldSent, fate: str) -> None:
        """Release the old hold and place the renewed one on the same scope, back to back
        (in either order: they travel on different partitions anyway)."""
        new = HoldSent(self._hold_id(old.hold_id[0]), old.kind, old.calls, old.subject, fate)
        old.renewed_by = new.hold_id
        with self.ledger.lock:
            self.ledger.renewals += 1
        scope = self._scope_of(old)
        if self.random.random() < 0.5:
            self._release(old)
            self._place(new, scope)
        else:
            self._place(new, scope)
            self._release(old)

    def _erase(self) -> None:
        subject = self.random.choice((*ERASED, *ERASED, *ERASED, HELD[0], RENEWED[0]))
        self._request("erasure", subject)

    def _access(self) -> None:
        self._request("access", self.random.choice((*ACCESSED, *ACCESSED, HELD[1])))

    def _request(self, kind: str, subject: int) -> None:
        request_id = f"dsr-{uuid.uuid4().hex[:12]}"
        data = {
            "request_id": request_id,
            "type": kind,
            "received_at": stamp(datetime.now(UTC)),
            "identity_verified": True,
            "subject": Subject(subject).scope(),
        }
        with self.ledger.lock:
            self.ledger.requests[request_id] = RequestSent(
                request_id, kind, subject, datetime.now(UTC)
            )
        self._send("dsr_requests", request_id, cloudevent("callvault.dsr.requested.v1", data))

    # holds ----------------------------------------------------------------------------------
    def _place(self, hold: HoldSent, scope: dict[str, Any] | None = None) -> None:
        scope = scope or self._scope_of(hold)
        data = {"hold_id": hold.hold_id, "reason": "litigation (chaos run)", "scope": scope}
        hold.placed_sent = datetime.now(UTC)
        with self.ledger.lock:
            self.ledger.holds[hold.hold_id] = hold
        self._send("holds_commands", hold.hold_id, cloudevent("callvault.hold.placed.v1", data))

    def _release(self, hold: HoldSent) -> None:
        hold.released_sent = datetime.now(UTC)
        data = {"hold_id": hold.hold_id}
        self._send("holds_commands", hold.hold_id, cloudevent("callvault.hold.released.v1", data))

    def _scope_of(self, hold: HoldSent) -> dict[str, Any]:
        if hold.kind == "subject":
            assert hold.subject is not None
            return {"subject": Subject(hold.subject).scope()}
        if hold.kind == "call":
            return {"call_ids": list(hold.calls)}
        return {"recording_ids": [self.ledger.calls[c].recording_id for c in hold.calls]}

    def _holds(self, wanted: Any) -> list[HoldSent]:
        with self.ledger.lock:
            return [h for h in self.ledger.holds.values() if h.in_force_at_end and wanted(h)]

    def _age(self, hold: HoldSent) -> float:
        assert hold.placed_sent is not None
        return (datetime.now(UTC) - hold.placed_sent).total_seconds()

    def _hold_id(self, kind: str) -> str:
        return f"{kind}-hold-{uuid.uuid4().hex[:10]}"

    # redeliveries ---------------------------------------------------------------------------
    def _schedule(self, seconds: float, kind: str, call_id: str) -> None:
        with self.ledger.lock:
            heapq.heappush(self._later, (time.monotonic() + seconds, self._calls, kind, call_id))

    def _redeliver(self, until: float) -> None:
        while True:
            with self.ledger.lock:
                if not self._later or self._later[0][0] > until:
                    return
                _, _, kind, call_id = heapq.heappop(self._later)
                call = self.ledger.calls[call_id]
            if kind == "redeliver":  # the same bytes, the same event id
                value = call.value
                with self.ledger.lock:
                    self.ledger.redelivered += 1
            else:  # another event for the same call: a new id, the same audio and data
                value = call.value.replace(call.event_id.encode(), str(uuid.uuid4()).encode())
                with self.ledger.lock:
                    self.ledger.second_events += 1
            self._send("calls_ended", call_id, value)

    def _recent_calls(self, seconds: float) -> list[CallSent]:
        since = datetime.now(UTC) - timedelta(seconds=seconds)
        with self.ledger.lock:
            return [c for c in self.ledger.calls.values() if c.sent_at >= since]

    def _send(self, logical: str, key: str, value: bytes) -> None:
        if not self.sender.send(self.instance.topic(logical), key, value):
            with self.ledger.lock:
                self.ledger.unsent += 1
