"""Staff accounts: Argon2id passwords, hashed API tokens, throttled sign-in, role checks."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ...domain.keyed import Mac, keyed
from ...domain.text import N_
from ..ports.console import ApiTokens, LoginThrottle, UserDirectory
from .errors import Conflict, Invalid, NotAllowed, NotFound, Throttled, Unauthenticated
from .model import ApiToken, Identity, Principal, Role, User, valid_username
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
        users: UserDirectory,
        tokens: ApiTokens,
        throttle: LoginThrottle,
        *,
        key: Mac,
        clock: Callable[[], datetime],
        policy: ThrottlePolicy | None = None,
        hasher: PasswordHasher = _HASHER,
    ) -> None:
        self._users, self._tokens, self._throttle = users, tokens, throttle
        self._key, self._clock = key, clock
        self._policy = policy or ThrottlePolicy()
        self._hasher = hasher

    # users ---------------------------------------------------------------------------------
    def add_user(self, username: str, role: Role, password: str | None) -> User:
        if not valid_username(username):
            raise Invalid("a user name is 1-64 of the letters a-z, A-Z, digits and . _ @ -")
        if password is not None and len(password) < MIN_PASSWORD:
            raise Invalid("a password has at least %(n)d characters", n=MIN_PASSWORD)
        user = User(
            username,
            role,
            self._hasher.hash(password) if password is not None else None,
            created_at=self._clock(),
        )
        if not self._users.add_user(user):
            raise Conflict("user %(user)s exists", user=username)
        return user

    def users(self) -> list[User]:
        return self._users.users()

    def set_disabled(self, username: str, disabled: bool) -> None:
        if not self._users.set_disabled(username, disabled):
            raise NotFound("no user %(user)s", user=username)
        if disabled:
            for token in self._tokens.tokens_of(username):
                if token.revoked_at is None:
                    self._tokens.revoke_token(token.token_id, self._clock())

    def choose_language(self, principal: Principal, language: str | None) -> None:
        """The console's language for this user (None: their browser's)."""
        self._users.set_language(principal.username, language)

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
        user = self._users.user(username)
        if user is None or user.password_hash is None or user.disabled:
            self._verify(self._dummy_hash, password)  # as long as a wrong password takes
            raise Unauthenticated(WRONG_PASSWORD)
        if not self._verify(user.password_hash, password):
            raise Unauthenticated(WRONG_PASSWORD)
        self._throttle.forget(pair, now)
        self._throttle.update(by_address, take_back(policy.per_address))
        if new_address:
            self._throttle.update(account, take_back(policy.per_account))
        return Principal(user.username, user.role, "session", user.language)

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
        user = self._users.user(username)
        if user is None or user.disabled or user.role.value != role:
            return None
        return Principal(user.username, user.role, via, user.language)

    def sign_in_federated(self, identity: Identity, role: Role) -> Principal:
        """An identity provider vouched for the person and mapped their role. The account is
        the one bound to the provider's (issuer, subject) - created, under the name the
        provider shows, on the first sign-in. A name that belongs to a password account, or
        to another identity, is never taken over; a disabled account stays out."""
        user = self._users.user_for_identity(identity.issuer, identity.subject)
        if user is None:
            user = self._first_federated(identity, role)
        if user.disabled:
            raise Unauthenticated("this account is disabled")
        if user.role is not role:
            self._users.set_role(user.username, role)
            user = replace(user, role=role)
        return Principal(user.username, user.role, "oidc", user.language)

    def _first_federated(self, identity: Identity, role: Role) -> User:
        name, now = identity.username, self._clock()
        if not valid_username(name):
            raise NotAllowed("the identity provider gave no usable user name")
        created = User(name, role, None, created_at=now)
        if self._users.add_federated_user(created, identity.issuer, identity.subject, now):
            return created
        # an account made without a password (for this provider) before it was bound
        if self._users.bind_identity(name, identity.issuer, identity.subject, now):
            found = self._users.user(name)
            assert found is not None
            return found
        raise NotAllowed(
            "the name %(user)s belongs to another account of this console; "
            "an administrator must rename one of them",
            user=name,
        )

    # API tokens ----------------------------------------------------------------------------
    def create_token(self, username: str) -> tuple[str, str]:
        """(token id, the token itself). Only a hash of the secret part is kept."""
        user = self._users.user(username)
        if user is None:
            raise NotFound("no user %(user)s", user=username)
        if user.disabled:
            raise Invalid("user %(user)s is disabled", user=username)
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        self._tokens.add_token(ApiToken(token_id, username, _hash_secret(secret), self._clock()))
        return token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def revoke_token(self, token_id: str) -> None:
        if not self._tokens.revoke_token(token_id, self._clock()):
            raise NotFound("no active token %(token)s", token=token_id)

    def tokens_of(self, username: str) -> list[ApiToken]:
        return self._tokens.tokens_of(username)

    def principal_for_token(self, text: str) -> Principal | None:
        prefix, _, rest = text.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != TOKEN_PREFIX or not token_id or not secret:
            return None
        token = self._tokens.token(token_id)
        if token is None or token.revoked_at is not None:
            return None
        if not hmac.compare_digest(token.secret_hash, _hash_secret(secret)):
            return None
        return self.resume(token.username, self._role_of(token.username), "token")

    def _role_of(self, username: str) -> str:
        user = self._users.user(username)
        return user.role.value if user else ""


def _hash_secret(secret: str) -> bytes:
    # 256 random bits need no slow hash: SHA-256 cannot be brute-forced back to them.
    return hashlib.sha256(secret.encode()).digest()
