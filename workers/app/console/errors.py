"""Why a console request was refused; the HTTP layer maps each to its status code.

The message is a text for people, in English with named placeholders (``%(user)s``) filled
from the keyword arguments: ``str(error)`` is the English sentence (API answers), and a page
shows it translated (the message is in the catalogues: workers/i18n)."""

from __future__ import annotations

from ...domain.text import N_


class ConsoleError(Exception):
    status = 400

    def __init__(self, message: str, **values: object) -> None:
        super().__init__(message % values if values else message)
        self.message = message
        self.values = values


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
        super().__init__(N_("range not satisfiable"))
        self.size = size


class Throttled(ConsoleError):
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(N_("too many failed sign-ins; try again later"))
        self.retry_after = retry_after


class Unavailable(ConsoleError):
    """PostgreSQL or the object store did not answer (a transient failure): try again."""

    status = 503
    retry_after = 5

    def __init__(self) -> None:
        super().__init__(N_("a service callvault needs is not answering; try again in a moment"))
