"""Retention: each recording is announced once when it falls due and is not held, and its
purge is scheduled in the same transaction; purges that a crash or a lost follow-up left
half-way are found and finished. The policy in force lives in the database: a worker
configured with another one refuses to start until ``callvault migrate`` applies it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ...domain.errors import ConfigError
from ...domain.messages import AnnounceDue, PolicyApplied, PurgesScheduled, ResumeStalledPurges
from ...domain.model import PurgeReason, collected_times
from ...domain.retention import RetentionPolicy
from ..context import Context
from ..ports.unit_of_work import UnitOfWork
from .keys import verify_keys
from .purge import purge

DEFAULT_TENANT = "*"
STALLED_AFTER = timedelta(minutes=2)


def announce_due(command: AnnounceDue, ctx: Context) -> str:
    now = ctx.clock()
    with ctx.uow() as uow:
        due = uow.recordings.claim_due(now, ctx.settings.purge_batch)
        for recording in due:
            recording.announce_due(now)
        uow.recordings.update_many(due)
        if due:
            ids = tuple(r.recording_id for r in due)
            uow.record(PurgesScheduled(ids, PurgeReason.RETENTION, collected_times(due)))
        uow.commit()
    return f"announced:{len(due)}"


def resume_stalled_purges(command: ResumeStalledPurges, ctx: Context) -> str:
    announced_before = ctx.clock() - STALLED_AFTER
    stalled = ctx.read(lambda uow: uow.scans.stalled(announced_before, ctx.settings.purge_batch))
    if stalled:
        purge(stalled, PurgeReason.RETENTION, ctx)
    return f"resumed:{len(stalled)}"


@dataclass(frozen=True)
class PolicyCheck:
    in_force: dict[str, str]
    configured: dict[str, str]

    @property
    def agrees(self) -> bool:
        return self.in_force == self.configured


def configured(policy: RetentionPolicy) -> dict[str, str]:
    return {DEFAULT_TENANT: policy.default.text} | {t: d.text for t, d in policy.per_tenant}


def check_policy(ctx: Context) -> PolicyCheck:
    in_force = ctx.read(lambda uow: uow.policies.current())
    return PolicyCheck(in_force, configured(ctx.settings.policy))


def refuse_other_policy(ctx: Context) -> None:
    """A worker configured with another policy than the one in force must not revert it."""
    check = check_policy(ctx)
    if check.in_force and not check.agrees:
        raise ConfigError(
            f"the retention policy in force is {_describe(check.in_force)} but this worker is "
            f"configured with {_describe(check.configured)}; run `callvault migrate` to apply "
            "the configured policy, or configure the one in force"
        )


def _describe(policies: dict[str, str]) -> str:
    return ", ".join(f"{tenant}={policy}" for tenant, policy in sorted(policies.items()))


def apply_policy(ctx: Context) -> int:
    """Make the configured policy the one in force (audited per tenant) and re-compute the
    due dates of stored recordings; returns how many were rescheduled."""
    policy = ctx.settings.policy
    wanted = configured(policy)
    now = ctx.clock()
    with ctx.uow() as uow:
        in_force = uow.policies.current()
        moved = _reschedule(uow, policy)
        for tenant, text in wanted.items():
            if in_force.get(tenant) != text:
                uow.policies.set(tenant, text, now)
                uow.record(PolicyApplied(tenant, in_force.get(tenant), text, moved, now))
        uow.policies.remove_others(list(wanted))
        uow.commit()
    return moved


def _reschedule(uow: UnitOfWork, policy: RetentionPolicy) -> int:
    moved = sum(uow.recordings.reschedule(t, d, []) for t, d in policy.per_tenant)
    others = [tenant for tenant, _ in policy.per_tenant]
    return moved + uow.recordings.reschedule(None, policy.default, others)


def register_keys_and_policy(ctx: Context, apply: bool) -> tuple[str, list[str]]:
    """What ``callvault migrate`` settles once the schema is up to date: the check values of
    keys not seen before stored (a configured key that differs from a stored one stops it),
    and the retention policy in force. ``apply`` makes the configured policy the one in force
    (an explicit ``callvault migrate``); a worker's implicit migrate only records it the first
    time, so a stale worker never reverts a changed policy."""
    registered = [f"{c.kind} {c.key_id}" for c in verify_keys(ctx, register=True)]
    check = check_policy(ctx)
    if check.agrees:
        return "in force", registered
    if check.in_force and not apply:
        return "differs (not applied: run `callvault migrate`)", registered
    moved = apply_policy(ctx)
    return f"applied ({moved} recording(s) rescheduled)", registered
