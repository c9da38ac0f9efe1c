"""``callvault serve``, ``callvault user add|list|disable|enable`` and
``callvault token create|revoke``: the console and its accounts."""

from __future__ import annotations

import sys
from typing import Any

import click
import structlog

from .domain.errors import ConfigError
from .settings import Settings, load_settings

log = structlog.get_logger("callvault.serve")
ROLES = ("qa", "complaints", "dpo", "admin")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def console_from_container(container: Any) -> Any:
    """The console over the worker's own wiring (PostgreSQL, S3, Kafka)."""
    from .adapters.console_outbound import BusHoldCommands, ExportPackager
    from .adapters.http.composition import assemble
    from .adapters.postgres_console import PostgresConsole

    settings: Settings = container.settings
    return assemble(
        PostgresConsole(container.db),
        container.objects,
        BusHoldCommands(
            lambda: container.kafka, settings.topic_holds_commands, settings.source_uri
        ),
        ExportPackager(container.ctx),
        settings,
        container.ctx.clock,
    )


@click.command()
@click.option("--host", help="Listen address (default CALLVAULT_HTTP_ADDR, 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default CALLVAULT_HTTP_PORT, 8080).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the web console and the JSON API (stateless: run several behind a balancer)."""
    import uvicorn

    from .adapters.http.app import build_app
    from .app.handlers.keys import verify_keys
    from .bootstrap import bootstrap
    from .logs import configure
    from .migrate import migrate_database

    settings = _settings()
    configure(settings.log_format, settings.log_level)
    if settings.migrate_on_start:
        migrate_database(settings.dsn)
    container = bootstrap(settings)
    try:
        verify_keys(container.ctx, register=False)  # a wrong key stops the console here
    except ConfigError as exc:
        container.close()
        raise click.ClickException(str(exc)) from None
    app = build_app(settings, console_from_container(container))
    address, listen_port = host or settings.http_addr, port or settings.http_port
    log.info("console_serving", addr=address, port=listen_port)
    try:
        uvicorn.run(
            app,
            host=address,
            port=listen_port,
            log_config=None,  # ours: logs.configure (JSON, personal data masked)
            access_log=False,  # the audit trail records what matters; URLs carry no personal data
            server_header=False,
            proxy_headers=False,
        )
    finally:
        container.close()


def _accounts() -> Any:
    from .adapters.postgres_console import PostgresConsole
    from .app.console.accounts import Accounts
    from .app.context import utc_now
    from .bootstrap import bootstrap
    from .migrate import migrate_database

    settings = _settings()
    if settings.migrate_on_start:
        migrate_database(settings.dsn)
    ports = PostgresConsole(bootstrap(settings).db)
    return Accounts(ports, ports, ports, key=settings.key("hash_key"), clock=utc_now)


def _run(action: Any) -> Any:
    from .app.console.errors import ConsoleError

    try:
        return action()
    except ConsoleError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def user() -> None:
    """Console users: add, list, disable, enable."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--no-password", is_flag=True, help="The user signs in through OpenID Connect only.")
def user_add(name: str, role: str, no_password: bool) -> None:
    """Add a user; the password is read from standard input (one line)."""
    from .app.console.model import Role

    password = None
    if not no_password:
        if sys.stdin.isatty():
            password = click.prompt("password", hide_input=True, confirmation_prompt=True)
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    accounts = _accounts()
    created = _run(lambda: accounts.add_user(name, Role(role), password))
    click.echo(f"user {created.username} added with role {created.role}")


@user.command("list")
def user_list() -> None:
    """Users with role and state."""
    for account in _accounts().users():
        state = "disabled" if account.disabled else "active"
        sign_in = "password" if account.password_hash else "oidc"
        click.echo(f"{account.username:<24}{account.role:<12}{state:<10}{sign_in}")


@user.command("disable")
@click.argument("name")
def user_disable(name: str) -> None:
    """Disable a user and revoke their API tokens."""
    accounts = _accounts()
    _run(lambda: accounts.set_disabled(name, True))
    click.echo(f"user {name} disabled")


@user.command("enable")
@click.argument("name")
def user_enable(name: str) -> None:
    accounts = _accounts()
    _run(lambda: accounts.set_disabled(name, False))
    click.echo(f"user {name} enabled")


@click.group()
def token() -> None:
    """API tokens: create (printed once), revoke."""


@token.command("create")
@click.argument("name")
def token_create(name: str) -> None:
    """Print a new API token for user NAME (its id goes to standard error)."""
    accounts = _accounts()
    token_id, text = _run(lambda: accounts.create_token(name))
    click.echo(f"token id {token_id} (revoke with: callvault token revoke {token_id})", err=True)
    click.echo(text)


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    accounts = _accounts()
    _run(lambda: accounts.revoke_token(token_id))
    click.echo(f"token {token_id} revoked")
