"""The ``callvault`` command: one click group per team - integrators (publish, demo),
compliance (hold, dsr, audit, certificates) and operators (worker, migrate, status,
reconcile, deadletter). Every command is a thin call into the application, built through the
one composition root."""

from __future__ import annotations

import os

import click

from ... import __version__
from ...adapters.logs import configure
from ..connect import connect
from ..serve import serve
from .accounts import token, user
from .common import EXIT_CODES_HELP
from .compliance import audit, dsr, hold, public_key, verify_certificate
from .integrators import demo, publish
from .keys import keys
from .ops import deadletter, followups, migrate, partitions, reconcile, status, worker


@click.group(epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="callvault")
def cli() -> None:
    """callvault: phone-call recordings kept lawful under the GDPR.

    Settings come from CALLVAULT_* environment variables (for the local stack:
    set -a; . .local/stack.env; set +a)."""
    # Commands print their results on stdout and a failure as one line on stderr; log lines
    # (errors unless CALLVAULT_LOG_LEVEL says otherwise; the libraries' own only with
    # CALLVAULT_DEBUG=1) go to stderr too. `worker` and `serve` reconfigure for services.
    debug = os.environ.get("CALLVAULT_DEBUG") == "1"
    configure(
        os.environ.get("CALLVAULT_LOG_FORMAT", "console"),
        os.environ.get("CALLVAULT_LOG_LEVEL", "DEBUG" if debug else "ERROR"),
        libraries="DEBUG" if debug else "CRITICAL",
    )


for command in (
    worker,
    migrate,
    partitions,
    status,
    reconcile,
    deadletter,
    followups,
    publish,
    demo,
    hold,
    dsr,
    audit,
    public_key,
    verify_certificate,
    keys,
    connect,
    serve,
    user,
    token,
):
    cli.add_command(command)


def main() -> None:
    cli()
