"""The error taxonomy.

Every failure a handler can meet is one of two kinds:

* :class:`TransientError` - the world may heal (a broker restarts, a store is briefly away):
  the handler is retried with bounded backoff; if it keeps failing the worker stops rather
  than skipping the event, so nothing is lost.
* :class:`PermanentError` - the input itself is wrong: retrying cannot help, so the event goes
  to the dead-letter topic with a stable ``error_code`` and the pipeline moves on.
"""

from __future__ import annotations


class CallvaultError(Exception):
    """Base of every error callvault raises on purpose."""


class TransientError(CallvaultError):
    """A failure of infrastructure that a retry may cure."""


class HoldsPending(TransientError):
    """Hold commands are published that no worker has applied yet: nothing is purged until they
    are (a retry finds them applied once the holds consumer has caught up)."""


class AccessRefused(TransientError):
    """A service refused this principal (its credentials, or an ACL): a worker keeps retrying
    until an operator grants it; a command says so and exits."""


class PermanentError(CallvaultError):
    """A failure of the input; ``error_code`` is stable, snake_case and part of the contract."""

    error_code = "permanent_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidJson(PermanentError):
    error_code = "invalid_json"


class SchemaViolation(PermanentError):
    error_code = "schema_violation"


class UnsupportedUri(PermanentError):
    error_code = "unsupported_uri"


class UriNotAllowed(PermanentError):
    error_code = "uri_not_allowed"


class FetchFailed(PermanentError):
    error_code = "fetch_failed"


class ChecksumMismatch(PermanentError):
    error_code = "checksum_mismatch"


class NotAudio(PermanentError):
    error_code = "not_audio"


class UnsupportedAudio(NotAudio):
    """Audio whose declared parameters (rate, channels) no recording can have."""

    error_code = "unsupported_audio"


class ConfigError(CallvaultError):
    """A setting is missing or wrong; start-up stops with a message naming it."""


class StoreRejected(PermanentError):
    """The object store refused a request that no retry can make succeed."""

    error_code = "store_rejected"


class DuplicateCallId(PermanentError):
    """A call id that names a different recording than the one callvault already has."""

    error_code = "duplicate_call_id"


class InternalError(PermanentError):
    """A bug met while handling this input; the event can be replayed once it is fixed."""

    error_code = "internal_error"


class SchemaMissing(PermanentError):
    """The database has no callvault schema (``callvault migrate`` was never run)."""

    error_code = "schema_missing"


class NotFound(CallvaultError):
    """A command named a request, hold or record that does not exist."""


class IntegrityError(CallvaultError):
    """Ciphertext or a wrapped key failed authentication (tampered, or its key is gone)."""
