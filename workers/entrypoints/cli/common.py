"""What every command shares: settings, the composition root, output and error handling.

Every failure a user can cause is one line on stderr that names the fix, with its own exit
code (listed in ``callvault --help``); never a traceback unless ``CALLVAULT_DEBUG=1``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

import click

from ...bootstrap import App, bootstrap
from ...domain.errors import (
    AccessRefused,
    ConfigError,
    NotFound,
    PermanentError,
    SchemaMissing,
    TransientError,
)
from ...domain.retention import IsoDuration, rfc3339
from ...settings import Settings, load_settings

EXIT_FAILED = 1  # the check a command makes failed (a broken audit chain, a bad signature)
EXIT_USAGE = 2  # a bad argument or option (click's own)
EXIT_CONFIG = 3  # a setting is missing or wrong
EXIT_UNREACHABLE = 4  # Kafka, PostgreSQL or the object store did not answer
EXIT_NOT_MIGRATED = 5  # the database has no callvault schema yet
EXIT_NOT_FOUND = 6  # the request, hold or dead letter named does not exist
EXIT_REFUSED = 7  # a service refused the request (permissions, a missing bucket, bad data)
EXIT_BUG = 70  # sysexits EX_SOFTWARE: a bug; CALLVAULT_DEBUG=1 shows the traceback

EXIT_CODES_HELP = """\b
Exit codes:
  0   success
  1   the check failed (broken audit chain, invalid certificate, findings)
  2   bad argument or option
  3   a setting is missing or wrong (CALLVAULT_*)
  4   Kafka, PostgreSQL or the object store is unreachable
  5   the database is not migrated (run: callvault migrate)
  6   the request, hold or dead letter does not exist
  7   a service refused the request
  70  internal error (CALLVAULT_DEBUG=1 shows the traceback)
  75  a worker stopped after retries (the supervisor restarts it)"""


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"callvault: {message}", err=True)
    sys.exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the project's error classes into one clear line and an exit code."""
    try:
        yield
    except ConfigError as exc:
        fail(
            f"{exc} (set the variable in the environment, e.g. from .local/stack.env)", EXIT_CONFIG
        )
    except SchemaMissing as exc:
        fail(f"not set up yet: {exc}", EXIT_NOT_MIGRATED)
    except NotFound as exc:
        fail(str(exc), EXIT_NOT_FOUND)
    except AccessRefused as exc:
        fail(str(exc), EXIT_REFUSED)
    except TransientError as exc:
        fail(
            f"{exc} - is the service running? (`make up` starts the local stack)", EXIT_UNREACHABLE
        )
    except PermanentError as exc:
        fail(f"refused: {exc.message}", EXIT_REFUSED)
    except (
        click.ClickException,
        click.exceptions.Exit,
        click.Abort,
        SystemExit,
        KeyboardInterrupt,
    ):
        raise
    except Exception as exc:
        if os.environ.get("CALLVAULT_DEBUG") == "1":
            raise
        fail(
            f"internal error ({type(exc).__name__}); CALLVAULT_DEBUG=1 shows the traceback",
            EXIT_BUG,
        )


def _given() -> App | None:
    """A callvault the caller built already (tests pass one over fakes: ``obj=container``)."""
    context = click.get_current_context(silent=True)
    return context.find_object(App) if context is not None else None


# A person at a terminal waits seconds, not a service's minutes, to learn that Kafka,
# PostgreSQL or the object store is away (an explicit CALLVAULT_* setting still wins).
INTERACTIVE = {
    "connect_timeout": IsoDuration.parse("PT5S"),
    "retry_budget": IsoDuration.parse("PT10S"),
}


def settings() -> Settings:
    """The settings of a command run from a terminal (``worker`` and ``serve`` use their own)."""
    given = _given()
    if given is not None:
        return given.settings
    loaded = load_settings()
    defaults = {k: v for k, v in INTERACTIVE.items() if k not in loaded.model_fields_set}
    return loaded.model_copy(update=defaults)


@contextmanager
def container() -> Iterator[App]:
    """callvault built through the composition root for one command, closed after it."""
    given = _given()
    if given is not None:
        yield given
        return
    built = bootstrap(settings())
    try:
        yield built
    finally:
        built.close()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=_plain, ensure_ascii=False))


def when(moment: datetime | None) -> str:
    return rfc3339(moment) if moment else "-"


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


def confirm(question: str, yes: bool) -> None:
    if not yes and not click.confirm(question, default=False):
        raise click.Abort()
