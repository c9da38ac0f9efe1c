"""``callvault user add|list|disable|enable`` and ``callvault token create|revoke``: the
console's accounts."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

ROLES = ("qa", "complaints", "dpo", "admin")
TENANTS_HELP = "A tenant whose recordings the user sees (repeat it; '*' for every tenant)."


def _by() -> str:
    """Who acted, for the audit trail: the command line and the system user running it."""
    return f"cli:{getpass.getuser()}"


@contextmanager
def _accounts() -> Iterator[Any]:
    """The console's accounts over callvault's database; console refusals become one line
    and an exit code like every other failure (``entrypoints.cli.common``)."""
    from ...app.console import errors
    from .common import EXIT_FAILED, EXIT_NOT_FOUND, container, fail, user_errors

    with user_errors(), container() as built:
        if built.settings.migrate_on_start:
            built.migrate_schema()
        try:
            yield built.accounts
        except errors.NotFound as exc:
            fail(str(exc), EXIT_NOT_FOUND)
        except errors.ConsoleError as exc:
            fail(str(exc), EXIT_FAILED)


@click.group()
def user() -> None:
    """Console users: add, list, disable, enable, tenants (every change audited)."""


@user.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    required=True,
    help="qa: quality and training; complaints; dpo: every purpose and the registers; "
    "admin: users only.",
)
@click.option("--tenant", "tenants", multiple=True, required=True, help=TENANTS_HELP)
@click.option("--no-password", is_flag=True, help="The user signs in through OpenID Connect only.")
def user_add(name: str, role: str, tenants: tuple[str, ...], no_password: bool) -> None:
    """Add a user; the password is read from standard input (one line)."""
    from ...app.console.model import Role

    password = None
    if not no_password:
        if sys.stdin.isatty():
            password = click.prompt("password", hide_input=True, confirmation_prompt=True)
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    with _accounts() as accounts:
        created = accounts.add_user(name, Role(role), password, tenants, by=_by())
    scope = ", ".join(sorted(created.tenants))
    click.echo(f"user {created.username} added with role {created.role}, tenants {scope}")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def user_list(as_json: bool) -> None:
    """Users with role, state, sign-in and tenants."""
    from .common import echo_json

    with _accounts() as accounts:
        rows = [
            {
                "username": account.username,
                "role": str(account.role),
                "state": "disabled" if account.disabled else "active",
                "sign_in": "password" if account.password_hash else "oidc",
                "tenants": sorted(account.tenants),
                "created_at": account.created_at,
            }
            for account in accounts.users()
        ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        line = f"{row['username']:<24}{row['role']:<12}{row['state']:<10}{row['sign_in']:<10}"
        click.echo(line + ",".join(row["tenants"]))


@user.command("disable")
@click.argument("name")
def user_disable(name: str) -> None:
    """Disable a user and revoke their API tokens."""
    with _accounts() as accounts:
        accounts.set_disabled(name, True, by=_by())
    click.echo(f"user {name} disabled")


@user.command("enable")
@click.argument("name")
def user_enable(name: str) -> None:
    """Enable a disabled user again (their revoked tokens stay revoked)."""
    with _accounts() as accounts:
        accounts.set_disabled(name, False, by=_by())
    click.echo(f"user {name} enabled")


@user.command("tenants")
@click.argument("name")
@click.option("--tenant", "tenants", multiple=True, required=True, help=TENANTS_HELP)
def user_tenants(name: str, tenants: tuple[str, ...]) -> None:
    """Set the tenants whose recordings a user sees (replacing the ones they had)."""
    with _accounts() as accounts:
        accounts.set_tenants(name, tenants, by=_by())
    click.echo(f"user {name}: tenants {', '.join(sorted(set(tenants)))}")


@click.group()
def token() -> None:
    """API tokens: create (printed once), revoke."""


@token.command("create")
@click.argument("name")
def token_create(name: str) -> None:
    """Print a new API token for user NAME (its id goes to standard error). In the console a
    person makes tokens only for themselves; here the operator, who holds callvault's database
    and keys anyway, may make one for anyone - in the audit trail either way."""
    with _accounts() as accounts:
        token_id, text = accounts.create_token(name, by=_by())
    click.echo(f"token id {token_id} (revoke with: callvault token revoke {token_id})", err=True)
    click.echo(text)


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke an API token at once."""
    with _accounts() as accounts:
        accounts.revoke_token(token_id, by=_by())
    click.echo(f"token {token_id} revoked")
