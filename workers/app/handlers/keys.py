"""Keys: the check values that stop a process started with another key, and the rotations.

``callvault migrate`` stores a check value of every key (see :mod:`workers.adapters.keys`);
a worker or ``serve`` compares the keys it was given with them and refuses to start, naming
the setting, when one differs - a wrong hash key would make erasures "complete" with nothing
found, a wrong master key would store audio nobody can read, a wrong signing key would sign
certificates no published key verifies.

Master-key rotation re-wraps data keys batch by batch under the current master key (each
batch one transaction, audited); once none is wrapped under another key, those keys are
retired and may leave the settings. Hash-key rotation re-computes every digest that can be
re-computed: call digests from call ids, look-up digests from each recording's sealed
personal data, subject and call holds from their sealed identifiers (and those on record);
tombstones and discards keep their digests, recognised through the retired key for a grace
period. Recording ids, derived from the hash key once, are stored ids and never change."""

from __future__ import annotations

from collections.abc import Iterable

from ...domain.errors import ConfigError, IntegrityError
from ...domain.identifiers import digest
from ...domain.keyed import Mac
from ...domain.messages import (
    DataKeysRewrapped,
    DigestsRekeyed,
    FinishHashRotation,
    HashKeyRotated,
    MasterKeysRetired,
    RekeyDigests,
    RetireMasterKeys,
    RewrapDataKeys,
)
from ...domain.model import CALL_ID, Hold, HoldScopeKind, Recording, call_digest
from ..context import Context
from ..ports.keys import KeyCheck, Keys
from ..ports.unit_of_work import StoredKeyCheck, UnitOfWork
from .subjects import identifiers_of

HASH_NEXT = "next"  # the key_checks row of a hash key a rotation is moving the digests to
SAMPLE = 200  # rows looked at to prove a key before its check value is first stored
Stored = dict[tuple[str, str], StoredKeyCheck]


# --- key checks -------------------------------------------------------------------------------


def verify_keys(ctx: Context, *, register: bool) -> list[KeyCheck]:
    """Compare the configured keys with the stored check values; a :class:`ConfigError`
    naming the setting when one differs. ``register`` stores the check values of keys not seen
    before (``callvault migrate``): the first master and hash key only after they proved
    themselves on a stored recording. Returns the checks registered."""
    keys = ctx.keys
    with ctx.uow() as uow:
        stored: Stored = {(s.check.kind, s.check.key_id): s for s in uow.key_checks.all()}
        mine = keys.checks()
        problems = [*_hash_problems(keys, stored), *_problems(mine, stored)]
        if problems:
            raise ConfigError(
                "the configured keys do not match this database - " + "; ".join(problems)
            )
        missing = [c for c in mine if (c.kind, c.key_id) not in stored]
        if missing and not register:
            named = ", ".join(f"{c.kind} key {c.key_id!r}" for c in missing)
            raise ConfigError(f"{named} not registered yet: run `callvault migrate`")
        for check in missing:
            _prove(uow, keys, check)
            uow.key_checks.put(check, ctx.clock())
        uow.commit()
    return missing


def _hash_problems(keys: Keys, stored: Stored) -> list[str]:
    mine = next(c.value for c in keys.checks() if c.kind == "hash")
    current, upcoming = stored.get(("hash", "current")), stored.get(("hash", HASH_NEXT))
    if upcoming is not None:
        return [
            "a hash-key rotation is under way: finish it with `callvault keys rehash` "
            "(CALLVAULT_HASH_KEY the new key, CALLVAULT_HASH_KEYS_RETIRED the old one)"
        ]
    if current is None or current.check.value == mine:
        return []
    if current.check.value in keys.retired_hash_checks():
        return [
            "CALLVAULT_HASH_KEY is a new key: re-key the digests first with "
            "`callvault keys rehash` (with the workers stopped)"
        ]
    return [
        "CALLVAULT_HASH_KEY is not the key this database's digests were made with (requests "
        "and holds would match nothing)"
    ]


def _problems(mine: list[KeyCheck], stored: Stored) -> Iterable[str]:
    configured: dict[tuple[str, str], KeyCheck] = {(c.kind, c.key_id): c for c in mine}
    current_signing = next(c.key_id for c in mine if c.kind == "signing")
    for (kind, key_id), entry in stored.items():
        check = configured.get((kind, key_id))
        if kind == "master":
            if check is not None and check.value != entry.check.value:
                yield (
                    f"CALLVAULT_MASTER_KEY(S): master key {key_id!r} is not the key this "
                    "database was set up with"
                )
            elif check is None and entry.retired_at is None:
                yield (
                    f"data keys are wrapped under master key {key_id!r}, which is not "
                    "configured: keep it in CALLVAULT_MASTER_KEYS until `callvault keys "
                    "rotate` has re-wrapped them"
                )
        elif kind == "signing":
            if check is None:
                yield (
                    f"certificates signed with key {key_id!r} would no longer verify: add "
                    f"{key_id}={entry.check.value} to CALLVAULT_SIGNING_PUBLIC_KEYS_RETIRED"
                )
            elif check.value != entry.check.value:
                setting = (
                    "CALLVAULT_SIGNING_KEY"
                    if key_id == current_signing
                    else "CALLVAULT_SIGNING_PUBLIC_KEYS_RETIRED"
                )
                yield (
                    f"{setting}: key id {key_id!r} was published with another public key (a "
                    "new signing key needs a new CALLVAULT_SIGNING_KEY_ID)"
                )


def _prove(uow: UnitOfWork, keys: Keys, check: KeyCheck) -> None:
    """Before the first check value of a kind is stored, make sure the key fits the data an
    earlier version stored (a database migrated with the wrong key would be trusted)."""
    sample = uow.scans.page("", SAMPLE)
    if check.kind == "hash":
        named = [r for r in sample if r.call_id is not None]
        if named and call_digest(keys.hasher, named[0].call_id or "") != named[0].call_digest:
            raise ConfigError(
                "CALLVAULT_HASH_KEY does not reproduce the digests stored in this database"
            )
    elif check.kind == "master":
        wrapped = [
            r for r in sample if r.wrapped_key is not None and r.master_key_id == check.key_id
        ]
        if wrapped:
            _unwraps(keys, wrapped[0], check.key_id)


def _unwraps(keys: Keys, recording: Recording, key_id: str) -> None:
    assert recording.wrapped_key is not None
    try:
        keys.unwrap(recording.wrapped_key, key_id, recording.recording_id)
    except IntegrityError:
        raise ConfigError(
            f"CALLVAULT_MASTER_KEY(S): master key {key_id!r} does not unwrap the data keys "
            "stored under that id"
        ) from None


# --- master-key rotation ------------------------------------------------------------------------


def rewrap_data_keys(command: RewrapDataKeys, ctx: Context) -> str:
    keys, now = ctx.keys, ctx.clock()
    current = keys.current_master_id
    with ctx.uow() as uow:
        ids = uow.scans.wrapped_elsewhere(current, command.after_id, command.limit)
        moved, old = [], set()
        for recording in uow.recordings.lock(ids):
            wrapped, previous = recording.wrapped_key, recording.master_key_id
            if wrapped is None or previous == current:
                continue  # purged or re-wrapped meanwhile
            new_wrapped, key_id = keys.rewrap(wrapped, previous, recording.recording_id)
            recording.rewrap(new_wrapped, key_id)
            uow.recordings.update(recording)
            moved.append(recording.recording_id)
            old.add(previous or "unnamed")
        if moved:
            uow.record(DataKeysRewrapped(tuple(moved), tuple(sorted(old)), current, now))
        uow.commit()
    return f"rewrapped:{len(moved)}:{ids[-1] if ids else ''}"


def retire_master_keys(command: RetireMasterKeys, ctx: Context) -> str:
    now, current = ctx.clock(), ctx.keys.current_master_id
    with ctx.uow() as uow:
        left = uow.counts.count_wrapped_elsewhere(current)
        if left:
            return f"pending:{left}"
        uow.holds.reseal()
        retired = tuple(
            s.check.key_id
            for s in uow.key_checks.all()
            if s.check.kind == "master" and s.check.key_id != current and s.retired_at is None
        )
        for key_id in retired:
            uow.key_checks.retire("master", key_id, now)
        if retired:
            uow.record(MasterKeysRetired(retired, current, now))
        uow.commit()
    return f"retired:{len(retired)}:{','.join(retired)}"


# --- hash-key rotation --------------------------------------------------------------------------


def begin_hash_rotation(ctx: Context) -> str | None:
    """The check value of the hash key the digests are made with now (a retired one), with the
    rotation marked as under way; ``None`` when the current key is in force already."""
    keys = ctx.keys
    mine = next(c for c in keys.checks() if c.kind == "hash")
    with ctx.uow() as uow:
        stored = {(s.check.kind, s.check.key_id): s.check for s in uow.key_checks.all()}
        current = stored.get(("hash", "current"))
        if current is None:
            raise ConfigError("no hash key registered yet: run `callvault migrate` first")
        if current.value == mine.value:
            return None
        if current.value not in keys.retired_hash_checks():
            raise ConfigError(
                "the hash key the digests were made with is not in CALLVAULT_HASH_KEYS_RETIRED"
            )
        uow.key_checks.put(KeyCheck("hash", HASH_NEXT, mine.value), ctx.clock())
        uow.commit()
    return current.value


def rekey_digests(command: RekeyDigests, ctx: Context) -> str:
    keys, region = ctx.keys, ctx.settings.default_region
    with ctx.uow() as uow:
        page = uow.scans.page(command.after_id, command.limit)
        stale = [
            r.recording_id
            for r in page
            if r.call_id is not None and r.call_digest != call_digest(keys.hasher, r.call_id)
        ]
        done = []
        for recording in uow.recordings.lock(stale):
            if recording.call_id is None:
                continue  # purged meanwhile: a tombstone keeps its digest
            recording.rekey_call(call_digest(keys.hasher, recording.call_id))
            uow.recordings.update(recording)
            personal = _personal(keys, recording)
            if personal is not None:
                digests = frozenset(
                    digest(keys.hasher, kind, value)
                    for kind, value in identifiers_of(personal, region)
                )
                uow.recordings.replace_digests(recording.recording_id, digests)
            done.append(recording.recording_id)
        if done:
            uow.record(DigestsRekeyed(tuple(done), ctx.clock()))
        uow.commit()
    return f"rekeyed:{len(done)}:{page[-1].recording_id if page else ''}"


def finish_hash_rotation(command: FinishHashRotation, ctx: Context) -> str:
    """Holds get their digests under the new key: subject holds from the identifiers sealed
    with the hold, and from the identifiers on record that match one of its digests (a hold
    follows a person through rectifications); call holds from their sealed call ids, and from
    the call ids of the recordings stored. A digest none of these explain is kept as it was
    and counted."""
    keys, old = ctx.keys, ctx.keys.retired_hash_checks()[command.previous]
    mine = next(c for c in keys.checks() if c.kind == "hash")
    with ctx.uow() as uow:
        uow.lock_holds(exclusive=True)
        active = uow.holds.active()
        subject_holds = [h for h in active if h.scope_kind is HoldScopeKind.SUBJECT]
        call_holds = [h for h in active if h.scope_kind is HoldScopeKind.CALLS]
        unmapped = _rekey_subject_holds(uow, ctx, old, subject_holds)
        unmapped += _rekey_call_holds(uow, keys, old, call_holds)
        uow.key_checks.put(KeyCheck("hash", "current", mine.value), ctx.clock())
        uow.key_checks.remove("hash", HASH_NEXT)
        ids = tuple(h.hold_id for h in [*subject_holds, *call_holds])
        uow.record(HashKeyRotated(ids, unmapped, ctx.clock()))
        uow.commit()
    return f"finished:{len(ids)}:{unmapped}"


def _rekey_subject_holds(uow: UnitOfWork, ctx: Context, old: Mac, holds: list[Hold]) -> int:
    keys, region = ctx.keys, ctx.settings.default_region
    mapping: dict[bytes, bytes] = {}
    for hold in holds:
        for kind, value in hold.identifiers:
            mapping[digest(old, kind, value)] = digest(keys.hasher, kind, value)
    wanted = set().union(*(h.subject_digests for h in holds)) - set(mapping)
    if wanted:
        mapping |= _mapped_by_records(uow, keys, region, old, wanted)
    unmapped = 0
    for hold in holds:
        new = {mapping.get(d, d) for d in hold.subject_digests}
        unmapped += sum(1 for d in hold.subject_digests if d not in mapping)
        uow.holds.replace_subject_digests(hold.hold_id, frozenset(new))
    return unmapped


def _rekey_call_holds(uow: UnitOfWork, keys: Keys, old: Mac, holds: list[Hold]) -> int:
    mapping = {
        call_digest(old, value): call_digest(keys.hasher, value)
        for hold in holds
        for kind, value in hold.identifiers
        if kind == CALL_ID
    }
    wanted = {t for h in holds for t in h.targets} - set(mapping)
    if wanted:
        mapping |= _calls_on_record(uow, keys, old, wanted)
    unmapped = 0
    for hold in holds:
        unmapped += sum(1 for t in hold.targets if t not in mapping)
        new = tuple(dict.fromkeys(mapping.get(t, t) for t in hold.targets))
        uow.holds.replace_call_digests(hold.hold_id, new)
    return unmapped


def _calls_on_record(uow: UnitOfWork, keys: Keys, old: Mac, wanted: set[str]) -> dict[str, str]:
    """Old to new call digests of stored recordings whose old call digest is ``wanted``."""
    found: dict[str, str] = {}
    after = ""
    while page := uow.scans.page(after, 1000):
        after = page[-1].recording_id
        for recording in page:
            if recording.call_id is not None:
                before = call_digest(old, recording.call_id)
                if before in wanted:
                    found[before] = call_digest(keys.hasher, recording.call_id)
    return found


def _mapped_by_records(
    uow: UnitOfWork, keys: Keys, region: str, old: Mac, wanted: set[bytes]
) -> dict[bytes, bytes]:
    """Old to new digests of the identifiers on record whose old digest is ``wanted``."""
    found: dict[bytes, bytes] = {}
    after = ""
    while page := uow.scans.page(after, 1000):
        after = page[-1].recording_id
        for recording in page:
            personal = _personal(keys, recording)
            for kind, value in identifiers_of(personal or {}, region):
                before = digest(old, kind, value)
                if before in wanted:
                    found[before] = digest(keys.hasher, kind, value)
    return found


def _personal(keys: Keys, recording: Recording) -> dict[str, object] | None:
    if recording.wrapped_key is None or recording.customer_sealed is None:
        return None
    data_key = keys.unwrap(recording.wrapped_key, recording.master_key_id, recording.recording_id)
    return keys.open(data_key, recording.recording_id, recording.customer_sealed)
