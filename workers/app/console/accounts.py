"""Staff accounts: Argon2id passwords, hashed API tokens, throttled sign-in, role checks."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ...domain.keyed import Mac, keyed
from ..ports.console import ApiTokens, LoginThrottle, UserDirectory
from .errors import Conflict, Invalid, NotFound, Throttled, Unauthenticated
from .model import ApiToken, Principal, Role, User, valid_username

MIN_PASSWORD = 8
TOKEN_PREFIX = "cvt"  # noqa: S105 - the marker that starts every API token, not a secret
_HASHER = PasswordHasher()  # Argon2id with the library's (RFC 9106 low-memory) parameters
# Verified against when the name is unknown, so timing does not tell which names exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class ThrottlePolicy:
    per_user: int = 5
    per_address: int = 50
    window: timedelta = timedelta(minutes=15)


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
            raise Invalid(f"a password has at least {MIN_PASSWORD} characters")
        user = User(
            username,
            role,
            self._hasher.hash(password) if password is not None else None,
            created_at=self._clock(),
        )
        if not self._users.add_user(user):
            raise Conflict(f"user {username} exists")
        return user

    def users(self) -> list[User]:
        return self._users.users()

    def set_disabled(self, username: str, disabled: bool) -> None:
        if not self._users.set_disabled(username, disabled):
            raise NotFound(f"no user {username}")
        if disabled:
            for token in self._tokens.tokens_of(username):
                if token.revoked_at is None:
                    self._tokens.revoke_token(token.token_id, self._clock())

    # sign-in -------------------------------------------------------------------------------
    def sign_in(self, username: str, password: str, address: str) -> Principal:
        """A principal for a right name and password; refused names and passwords look alike.
        Failures count per name and per client address, in the shared database."""
        keys = [self._digest("user", username.lower()), self._digest("addr", address)]
        limits = [self._policy.per_user, self._policy.per_address]
        since = self._clock() - self._policy.window
        for key, limit in zip(keys, limits, strict=True):
            if self._throttle.failures_since(key, since) >= limit:
                raise Throttled(int(self._policy.window.total_seconds()))
        user = self._users.user(username)
        if user is None or user.password_hash is None or user.disabled:
            self._verify(_DUMMY_HASH, password)
            self._failed(keys)
        elif not self._verify(user.password_hash, password):
            self._failed(keys)
        assert user is not None
        self._throttle.clear_failures(keys[0])
        return Principal(user.username, user.role, "session")

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _failed(self, keys: list[bytes]) -> None:
        now = self._clock()
        for key in keys:
            self._throttle.record_failure(key, now)
        raise Unauthenticated("unknown user name or wrong password")

    def _digest(self, kind: str, value: str) -> bytes:
        return keyed(self._key, "login", [f"{kind}\x1f{value}"])[0]

    def resume(self, username: str, role: str, via: str) -> Principal | None:
        """The principal of a signed session, if the account still exists, is enabled and
        still has the role the session was opened with (a change signs the person out)."""
        user = self._users.user(username)
        if user is None or user.disabled or user.role.value != role:
            return None
        return Principal(user.username, user.role, via)

    def sign_in_federated(self, username: str, role: Role) -> Principal:
        """An identity provider vouched for the person and mapped their role: the account is
        created on first sign-in; a disabled account stays out."""
        user = self._users.user(username)
        if user is None:
            user = self.add_user(username, role, None)
        if user.disabled:
            raise Unauthenticated("this account is disabled")
        if user.role is not role:
            self._users.set_role(username, role)
            user = replace(user, role=role)
        return Principal(user.username, user.role, "oidc")

    # API tokens ----------------------------------------------------------------------------
    def create_token(self, username: str) -> tuple[str, str]:
        """(token id, the token itself). Only a hash of the secret part is kept."""
        user = self._users.user(username)
        if user is None:
            raise NotFound(f"no user {username}")
        if user.disabled:
            raise Invalid(f"user {username} is disabled")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        self._tokens.add_token(ApiToken(token_id, username, _hash_secret(secret), self._clock()))
        return token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def revoke_token(self, token_id: str) -> None:
        if not self._tokens.revoke_token(token_id, self._clock()):
            raise NotFound(f"no active token {token_id}")

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
