"""Why a console request was refused; the HTTP layer maps each to its status code."""

from __future__ import annotations


class ConsoleError(Exception):
    status = 400


class Unauthenticated(ConsoleError):
    status = 401


class NotAllowed(ConsoleError):
    """A role or a purpose not allowed (or a restricted recording)."""

    status = 403


class NotFound(ConsoleError):
    status = 404


class Conflict(ConsoleError):
    status = 409


class Invalid(ConsoleError):
    status = 422


class RangeNotSatisfiable(ConsoleError):
    status = 416

    def __init__(self, size: int) -> None:
        super().__init__("range not satisfiable")
        self.size = size


class Throttled(ConsoleError):
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed sign-ins; try again later")
        self.retry_after = retry_after


class Unavailable(ConsoleError):
    """PostgreSQL or the object store did not answer (a transient failure): try again."""

    status = 503
    retry_after = 5

    def __init__(self) -> None:
        super().__init__("a service callvault needs is not answering; try again in a moment")
