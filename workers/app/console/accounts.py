"""Staff accounts: Argon2id passwords, hashed API tokens, throttled sign-in, identity-provider
bindings, tenants. Every change is a command on the console's bus, audited with it (who did
what to which account); reads go through short units of work."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ...domain.keyed import Mac, keyed
from ...domain.text import N_
from ..context import Context
from ..messagebus import MessageBus
from ..ports.console import LoginThrottle
from .errors import Conflict, Invalid, NotAllowed, Throttled, Unauthenticated
from .messages import (
    AddFederatedUser,
    AddUser,
    BindIdentity,
    ChangeAccount,
    ChooseLanguage,
    CreateToken,
    RevokeToken,
)
from .model import (
    ApiToken,
    Identity,
    Principal,
    Role,
    User,
    valid_tenant,
    valid_username,
)
from .throttle import Rule, Tally, Verdict, attempt, take_back

MIN_PASSWORD = 8
WRONG_PASSWORD = N_("unknown user name or wrong password")
TOKEN_PREFIX = "cvt"  # noqa: S105 - the marker that starts every API token, not a secret
_HASHER = PasswordHasher()  # Argon2id with the library's (RFC 9106 low-memory) parameters


_QUARTER = timedelta(minutes=15)
PER_ACCOUNT_ADDRESS = Rule(5, _QUARTER, timedelta(seconds=30), _QUARTER)
PER_ADDRESS = Rule(50, _QUARTER, timedelta(seconds=30), _QUARTER)
PER_ACCOUNT = Rule(20, timedelta(days=1), _QUARTER, timedelta(days=1))


@dataclass(frozen=True)
class ThrottlePolicy:
    """Sign-in attempts: per account and address (a person mistyping, or a guesser at one
    address), per address (one address trying many names), and per account from many
    addresses - only that locks an account, and only when it counts distinct addresses."""

    per_account_address: Rule = PER_ACCOUNT_ADDRESS
    per_address: Rule = PER_ADDRESS
    per_account: Rule = PER_ACCOUNT

    @classmethod
    def of(cls, tries: int, window: timedelta, addresses: int) -> ThrottlePolicy:
        """From settings: ``tries`` per account and address in ``window``, an account locked
        after failures from ``addresses`` addresses within a day."""
        return cls(
            replace(PER_ACCOUNT_ADDRESS, free=tries, window=window, longest_pause=window),
            replace(PER_ADDRESS, window=window, longest_pause=window),
            replace(PER_ACCOUNT, free=addresses),
        )


class Accounts:
    def __init__(
        self,
        bus: MessageBus,
        ctx: Context,
        throttle: LoginThrottle,
        *,
        key: Mac,
        policy: ThrottlePolicy | None = None,
        hasher: PasswordHasher = _HASHER,
        federated_tenants: frozenset[str] = frozenset(),
    ) -> None:
        self._bus, self._ctx, self._throttle = bus, ctx, throttle
        self._federated_tenants = federated_tenants
        self._key, self._clock = key, ctx.clock
        self._policy = policy or ThrottlePolicy()
        self._hasher = hasher

    # users ---------------------------------------------------------------------------------
    def add_user(
        self,
        username: str,
        role: Role,
        password: str | None,
        tenants: Iterable[str],
        *,
        by: str,
    ) -> User:
        """A new account; ``tenants`` (at least one; ``*`` for all) are what it may see."""
        if not valid_username(username):
            raise Invalid("a user name is 1-64 of the letters a-z, A-Z, digits and . _ @ -")
        if password is not None and len(password) < MIN_PASSWORD:
            raise Invalid("a password has at least %(n)d characters", n=MIN_PASSWORD)
        user = User(
            username,
            role,
            self._hasher.hash(password) if password is not None else None,
            created_at=self._clock(),
            tenants=tenant_set(tenants),
        )
        self._bus.handle(AddUser(user, by))
        return user

    def users(self) -> list[User]:
        return self._ctx.read(lambda uow: uow.accounts.all())

    def user(self, username: str) -> User | None:
        return self._user(username)

    def set_disabled(self, username: str, disabled: bool, *, by: str) -> None:
        """Disabling also revokes the account's API tokens; its sessions end at once."""
        self._bus.handle(ChangeAccount(username, by, disabled=disabled))

    def set_tenants(self, username: str, tenants: Iterable[str], *, by: str) -> None:
        self._bus.handle(ChangeAccount(username, by, tenants=tenant_set(tenants)))

    def _user(self, username: str) -> User | None:
        return self._ctx.read(lambda uow: uow.accounts.get(username))

    def choose_language(self, principal: Principal, language: str | None) -> None:
        """The console's language for this user (None: their browser's)."""
        self._bus.handle(ChooseLanguage(principal.username, language))

    # sign-in -------------------------------------------------------------------------------
    def sign_in(self, username: str, password: str, address: str) -> Principal:
        """A principal for a right name and password; refused names and passwords look alike.
        Every attempt is counted before the password is checked (see :mod:`.throttle`)."""
        policy, now = self._policy, self._clock()
        account = self._digest("user", username.lower())
        by_address = self._digest("addr", address)
        pair = self._digest("pair", f"{username.lower()}\x1f{address}")
        self._admit(account, attempt(policy.per_account, now, count=False))
        self._admit(by_address, attempt(policy.per_address, now))
        new_address = self._admit(pair, attempt(policy.per_account_address, now)).count == 1
        if new_address:  # the account counts the addresses that try it, not the tries
            self._admit(account, attempt(policy.per_account, now))
        user = self._user(username)
        if user is None or user.password_hash is None or user.disabled:
            self._verify(self._dummy_hash, password)  # as long as a wrong password takes
            raise Unauthenticated(WRONG_PASSWORD)
        if not self._verify(user.password_hash, password):
            raise Unauthenticated(WRONG_PASSWORD)
        self._throttle.forget(pair, now)
        self._throttle.update(by_address, take_back(policy.per_address))
        if new_address:
            self._throttle.update(account, take_back(policy.per_account))
        return _principal(user, "session")

    def _admit(self, key: bytes, change: Callable[[Tally], tuple[Verdict, Tally]]) -> Verdict:
        verdict = self._throttle.update(key, change)
        if not verdict.admitted:
            raise Throttled(max(1, math.ceil(verdict.retry_after.total_seconds())))
        return verdict

    @cached_property
    def _dummy_hash(self) -> str:
        """Checked when the name is unknown, so that timing does not tell which names exist."""
        return self._hasher.hash(secrets.token_urlsafe(16))

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _digest(self, kind: str, value: str) -> bytes:
        return keyed(self._key, "login", [f"{kind}\x1f{value}"])[0]

    def resume(self, username: str, role: str, via: str) -> Principal | None:
        """The principal of a signed session, if the account still exists, is enabled and
        still has the role the session was opened with (a change signs the person out)."""
        user = self._user(username)
        if user is None or user.disabled or user.role.value != role:
            return None
        return _principal(user, via)

    def sign_in_federated(self, identity: Identity, role: Role) -> Principal:
        """An identity provider vouched for the person and mapped their role. The account is
        the one bound to the provider's (issuer, subject) - created, under the name the
        provider shows, on the first sign-in. A name that belongs to a password account, or
        to another identity, is never taken over; a disabled account stays out."""
        user = self._ctx.read(
            lambda uow: uow.accounts.for_identity(identity.issuer, identity.subject)
        )
        if user is None:
            user = self._first_federated(identity, role)
        if user.disabled:
            raise Unauthenticated("this account is disabled")
        if user.role is not role:
            self._bus.handle(ChangeAccount(user.username, identity.issuer, role=role))
            user = replace(user, role=role)
        return _principal(user, "oidc")

    def _first_federated(self, identity: Identity, role: Role) -> User:
        name = identity.username
        if not valid_username(name):
            raise NotAllowed("the identity provider gave no usable user name")
        existing = self._user(name)
        if existing is None:
            # the tenants CALLVAULT_OIDC_TENANTS names (none: an administrator gives them)
            tenants = self._federated_tenants
            created = User(name, role, None, created_at=self._clock(), tenants=tenants)
            with suppress(Conflict):
                self._bus.handle(AddFederatedUser(created, identity))
                return created
        elif existing.password_hash is None:  # made without a password before it was bound
            with suppress(Conflict):
                self._bus.handle(BindIdentity(name, identity))
                return existing
        raise NotAllowed(
            "the name %(user)s belongs to another account of this console; "
            "an administrator must rename one of them",
            user=name,
        )

    # API tokens ----------------------------------------------------------------------------
    def create_token(self, username: str, *, by: str) -> tuple[str, str]:
        """(token id, the token itself); only a hash of the secret part is kept. The console
        makes a token only for the person asking (``by`` is ``username``); the command line,
        which holds the database's keys anyway, for anyone - audited either way."""
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        token = ApiToken(token_id, username, _hash_secret(secret), self._clock())
        self._bus.handle(CreateToken(token, by))
        return token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def revoke_token(self, token_id: str, *, by: str, owner: str | None = None) -> None:
        """Revoke a token (only one of ``owner``'s, when given)."""
        self._bus.handle(RevokeToken(token_id, by, owner))

    def tokens_of(self, username: str) -> list[ApiToken]:
        return self._ctx.read(lambda uow: uow.accounts.tokens_of(username))

    def principal_for_token(self, text: str) -> Principal | None:
        prefix, _, rest = text.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != TOKEN_PREFIX or not token_id or not secret:
            return None
        token = self._ctx.read(lambda uow: uow.accounts.token(token_id))
        if token is None or token.revoked_at is not None:
            return None
        if not hmac.compare_digest(token.secret_hash, _hash_secret(secret)):
            return None
        user = self._user(token.username)
        return _principal(user, "token") if user and not user.disabled else None


def tenant_set(tenants: Iterable[str]) -> frozenset[str]:
    """At least one tenant, each a code or ``*``."""
    chosen = frozenset(t.strip() for t in tenants if t.strip())
    if not chosen:
        raise Invalid("name at least one tenant (--tenant T, or '*' for every tenant)")
    for tenant in chosen:
        if not valid_tenant(tenant):
            raise Invalid("a tenant is a code: letters, digits and . _ : / # -, or *")
    return chosen


def _principal(user: User, via: str) -> Principal:
    return Principal(user.username, user.role, via, tenants=user.tenants, language=user.language)


def _hash_secret(secret: str) -> bytes:
    # 256 random bits need no slow hash: SHA-256 cannot be brute-forced back to them.
    return hashlib.sha256(secret.encode()).digest()
