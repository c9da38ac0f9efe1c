"""``callvault connect KIND``: the telephony connectors, one subcommand each.

A connector needs ``CALLVAULT_KAFKA_BOOTSTRAP``, the S3 settings and
``CALLVAULT_LANDING_BUCKET`` - never callvault's database or keys. Exit codes of the one-shot
commands follow sysexits: 0 queued or sent (or seen before), 65 the input is unusable,
75 the local backlog is full (try again later; the file is left where it is).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from ..domain.errors import ConfigError, NotAudio, SchemaViolation

Command = Callable[..., Any]
EX_DATAERR, EX_TEMPFAIL = 65, 75
_DIRECTIONS: dict[str, Literal["inbound", "outbound"]] = {
    "inbound": "inbound",
    "outbound": "outbound",
}


def _metrics_port_option(func: Any) -> Any:
    return click.option(
        "--metrics-port",
        type=int,
        default=0,
        show_default=True,
        help="Serve this connector's Prometheus metrics on this port (0: off).",
    )(func)


def _state_dir_option(func: Any) -> Any:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Backlog and sent-ledger directory "
        "(default: $CALLVAULT_CONNECTOR_STATE_DIR/<system>).",
    )(func)


def _pbx_id_option(default: str) -> Callable[[Command], Command]:
    return click.option(
        "--pbx-id",
        default=default,
        show_default=True,
        help="Prefix of every call id (<pbx-id>:<the system's id>); one per telephony system.",
    )


def _notice_option(func: Any) -> Any:
    return click.option(
        "--notice/--no-notice",
        default=True,
        show_default=True,
        help="Whether the dialplan plays the recording notice before recording starts.",
    )(func)


@contextmanager
def _publisher(
    system: str, state_dir: Path | None, metrics_port: int, **overrides: Any
) -> Iterator[Any]:
    """The publisher of one connector, its backlog and metrics; closed on the way out.
    ``overrides`` replace settings of the environment (the mounted webhooks' principal)."""
    from ..adapters.connectors.settings import load_connector_settings
    from ..adapters.logs import configure
    from ..bootstrap import connector

    try:
        settings = load_connector_settings(**overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    configure(settings.log_format, settings.log_level)
    publisher = connector(settings, system, state_dir)
    publisher.metrics.serve(metrics_port, settings.metrics_addr)
    try:
        yield publisher
    finally:
        publisher.close()


def _until_signalled() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _watch(
    scan: Callable[[], int], drain: Callable[[], object], *, once: bool, interval: float
) -> None:
    """A spool watcher's passes: scan, then send what it queued; once, or every ``interval``
    seconds until SIGTERM or SIGINT."""
    if once:
        scan()
        drain()
        return
    stop = _until_signalled()
    while not stop.is_set():
        scan()
        drain()
        stop.wait(interval)


def _zone(name: str | None) -> Any:
    if name is None:
        return datetime.now().astimezone().tzinfo
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {name!r}", param_hint="--timezone") from None


@click.group()
def connect() -> None:
    """Telephony connectors: finished recordings become call.ended events."""


@connect.command(
    "asterisk-mixmonitor",
    # options before FILE only: a caller id that looks like an option (`1 --no-notice`) stays an
    # argument even where a dialplan forgot the `--` that ends the options
    context_settings={"allow_interspersed_args": False},
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("uniqueid")
@click.argument("linkedid")
@click.argument("caller")
@click.argument("callee")
@click.argument("direction")
@_pbx_id_option("asterisk")
@_notice_option
@_state_dir_option
def asterisk_mixmonitor(
    file: Path,
    uniqueid: str,
    linkedid: str,
    caller: str,
    callee: str,
    direction: str,
    pbx_id: str,
    notice: bool,
    state_dir: Path | None,
) -> None:
    """MixMonitor's post-command: queue FILE, send it, delete it once Kafka has it.

    Options come first, then `--`, then the arguments; CALLER and CALLEE are a phone number,
    a tel:/sip: URI or a withheld spelling, anything else is sent as withheld."""
    from ..adapters.connectors.asterisk import mixmonitor_call
    from ..adapters.connectors.publisher import BacklogFull

    with _publisher("asterisk", state_dir, 0) as publisher:
        try:
            call = mixmonitor_call(
                file,
                uniqueid,
                linkedid,
                caller,
                callee,
                direction,
                pbx_id=pbx_id,
                notice_played=notice,
            )
            publisher.submit(call)
        except (NotAudio, SchemaViolation) as exc:
            click.echo(f"not sent: {exc}", err=True)
            sys.exit(EX_DATAERR)
        except BacklogFull as exc:
            click.echo(f"not queued, try again later: {exc}", err=True)
            sys.exit(EX_TEMPFAIL)
        publisher.drain()


@connect.command("freepbx-spool")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_pbx_id_option("freepbx")
@_notice_option
@click.option("--timezone", help="Zone of the times in file names (default: this host's).")
@click.option(
    "--other-kinds",
    type=click.Choice(["skip", "inbound", "outbound"]),
    default="skip",
    show_default=True,
    help="Recordings that are neither in/queue/ring-group nor out/external (internal, "
    "ondemand ...): leave them, or file them with this direction.",
)
@click.option(
    "--settle",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds without writes after which a recording is finished.",
)
@click.option(
    "--interval", type=float, default=5.0, show_default=True, help="Seconds between scans."
)
@click.option("--once", is_flag=True, help="One pass, then exit.")
@_state_dir_option
@_metrics_port_option
def freepbx_spool(
    root: Path,
    pbx_id: str,
    notice: bool,
    timezone: str | None,
    other_kinds: str,
    settle: float,
    interval: float,
    once: bool,
    state_dir: Path | None,
    metrics_port: int,
) -> None:
    """Watch FreePBX's monitor/YYYY/MM/DD spool under ROOT."""
    from ..bootstrap import asterisk_spool

    with _publisher("asterisk", state_dir, metrics_port) as publisher:
        watcher = asterisk_spool(
            root,
            publisher,
            pbx_id=pbx_id,
            zone=_zone(timezone),
            other_kinds=_DIRECTIONS.get(other_kinds),
            notice_played=notice,
            settle_seconds=settle,
        )
        _watch(watcher.scan, publisher.drain, once=once, interval=interval)


@connect.command("freeswitch-esl")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="FreeSWITCH's event socket host."
)
@click.option(
    "--port", type=int, default=8021, show_default=True, help="FreeSWITCH's event socket port."
)
@click.option(
    "--password-env",
    default="CALLVAULT_FREESWITCH_ESL_PASSWORD",
    show_default=True,
    help="Environment variable holding the event socket password (never on the command line).",
)
@click.option(
    "--recordings-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="FreeSWITCH's recordings directory ($${recordings_dir}): a Record-File-Path "
    "elsewhere is neither read nor deleted.",
)
@_pbx_id_option("freeswitch")
@_notice_option
@_state_dir_option
@_metrics_port_option
def freeswitch_esl(
    host: str,
    port: int,
    password_env: str,
    recordings_dir: Path,
    pbx_id: str,
    notice: bool,
    state_dir: Path | None,
    metrics_port: int,
) -> None:
    """Follow FreeSWITCH's event socket: every RECORD_STOP is sent to callvault."""
    import os

    from ..bootstrap import freeswitch_events

    password = os.environ.get(password_env)
    if not password:
        raise click.UsageError(f"set {password_env} to the event socket password")
    with _publisher("freeswitch", state_dir, metrics_port) as publisher:
        watcher = freeswitch_events(
            publisher,
            host=host,
            port=port,
            password=password,
            pbx_id=pbx_id,
            recordings_dir=recordings_dir,
            notice_played=notice,
        )
        watcher.run(_until_signalled())


@connect.command("rtpengine-spool")
@click.argument("recording_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_pbx_id_option("kamailio")
@_notice_option
@click.option(
    "--interval", type=float, default=2.0, show_default=True, help="Seconds between scans."
)
@click.option("--once", is_flag=True, help="One pass, then exit.")
@_state_dir_option
@_metrics_port_option
def rtpengine_spool(
    recording_dir: Path,
    pbx_id: str,
    notice: bool,
    interval: float,
    once: bool,
    state_dir: Path | None,
    metrics_port: int,
) -> None:
    """Watch rtpengine's --recording-dir (pcap method): finished calls become stereo WAVs."""
    from ..bootstrap import rtpengine_spool

    with _publisher("rtpengine", state_dir, metrics_port) as publisher:
        spool = rtpengine_spool(recording_dir, publisher, pbx_id=pbx_id, notice_played=notice)
        _watch(spool.scan, publisher.drain, once=once, interval=interval)


@connect.command("drain")
@click.argument("system", type=click.Choice(["asterisk", "freeswitch", "rtpengine", "webhooks"]))
@click.option("--follow", is_flag=True, help="Keep draining every --interval seconds.")
@click.option(
    "--interval", type=float, default=5.0, show_default=True, help="Seconds between drains."
)
@_state_dir_option
@_metrics_port_option
def drain(
    system: str, follow: bool, interval: float, state_dir: Path | None, metrics_port: int
) -> None:
    """Send what a connector's backlog still holds (after Kafka or S3 was away); for the
    webhooks, also delete the provider copies that are due."""
    with _publisher(system, state_dir, metrics_port) as publisher:
        copies = _provider_copies(publisher) if system == "webhooks" else None
        stop = _until_signalled()
        while True:
            sent = publisher.drain()
            click.echo(f"sent {sent} call(s), {publisher.backlog_size()} waiting")
            if copies is not None:
                click.echo(f"deleted {copies.run()} provider copies")
            if not follow or stop.wait(interval):
                return


def _provider_copies(publisher: Any) -> Any:
    from ..bootstrap import provider_copies

    config = _user_error(webhook_config)
    if config is None or not config.delete_provider_copies:
        return None
    return provider_copies(config, publisher)


SETTLE_SECONDS = 60.0  # provider copies whose deletion failed are retried without a webhook


@contextmanager
def _settling(settle: Callable[[], None]) -> Iterator[None]:
    """Run ``settle`` every :data:`SETTLE_SECONDS` in a daemon thread while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(SETTLE_SECONDS):
            settle()

    threading.Thread(target=loop, name="webhooks-settle", daemon=True).start()
    try:
        yield
    finally:
        stop.set()


@connect.command("webhooks")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address.")
@click.option("--port", type=int, default=8088, show_default=True, help="Listen port.")
@_state_dir_option
@_metrics_port_option
def webhooks(host: str, port: int, state_dir: Path | None, metrics_port: int) -> None:
    """Serve the Twilio, Telnyx and Vonage webhooks (secrets from CALLVAULT_TWILIO_*,
    CALLVAULT_TELNYX_*, CALLVAULT_VONAGE_*); `callvault serve` can mount the same routes."""
    import uvicorn
    from fastapi import FastAPI

    from ..adapters.connectors.webhooks import build_webhooks

    config = _user_error(webhook_config)
    if config is None:
        raise click.ClickException(
            "no provider configured: set CALLVAULT_TWILIO_AUTH_TOKEN, CALLVAULT_TELNYX_PUBLIC_KEY "
            "or CALLVAULT_VONAGE_SIGNATURE_SECRET"
        )
    with _publisher("webhooks", state_dir, metrics_port) as publisher:
        hooks = build_webhooks(config, publisher, state_dir=publisher.state_dir)
        app = FastAPI(title="callvault telephony webhooks")
        app.include_router(hooks.router)
        with _settling(hooks.settle):
            uvicorn.run(app, host=host, port=port, log_config=None)


def webhook_config() -> Any:
    """The providers' settings (``WebhookConfig``), or ``None`` when no provider is set up."""
    from ..adapters.connectors.settings import WebhookSettings
    from ..adapters.connectors.webhooks import WebhookConfig

    hooks = WebhookSettings()
    if not (hooks.twilio_auth_token or hooks.telnyx_public_key or hooks.vonage_signature_secret):
        return None
    key_file = hooks.vonage_private_key_file
    config = WebhookConfig(
        public_base_url=hooks.webhook_public_base_url,
        allowed_hosts=hooks.allowed_hosts(),
        twilio_account_sid=hooks.twilio_account_sid,
        twilio_auth_token=_secret(hooks.twilio_auth_token),
        telnyx_public_key=hooks.telnyx_public_key,
        vonage_signature_secret=_secret(hooks.vonage_signature_secret),
        vonage_application_id=hooks.vonage_application_id,
        vonage_private_key=key_file.read_text() if key_file else None,
        telnyx_api_key=_secret(hooks.telnyx_api_key),
        delete_provider_copies=hooks.webhook_delete_provider_copies,
        twilio_api=hooks.twilio_api_url,
        telnyx_api=hooks.telnyx_api_url,
        vonage_api=hooks.vonage_api_url,
    )
    missing = config.accounts().missing_for_deletion(config.providers())
    if config.delete_provider_copies and missing:
        raise ConfigError(
            "invalid settings - deleting recordings at the provider needs "
            + ", ".join(missing)
            + " (or CALLVAULT_WEBHOOK_DELETE_PROVIDER_COPIES=false, and delete them yourself)"
        )
    return config


def mounted_credentials(console: Any) -> dict[str, Any]:
    """The telephony principal (and S3 user) under which ``callvault serve`` publishes what the
    webhooks it mounts receive (``WebhookSettings.mounted_credentials``); empty when no
    provider is set up."""
    from ..adapters.connectors.settings import WebhookSettings

    if webhook_config() is None:
        return {}
    credentials: dict[str, Any] = WebhookSettings().mounted_credentials(console)
    return credentials


@contextmanager
def mounted_webhooks(credentials: dict[str, Any]) -> Iterator[list[Any]]:
    """The webhook routes ``callvault serve`` mounts beside the console, publishing with
    ``credentials`` (:func:`mounted_credentials`): none unless a provider's secret is set."""
    from ..adapters.connectors.webhooks import build_webhooks

    config = webhook_config()
    if config is None:
        yield []
        return
    with _publisher("webhooks", None, 0, **credentials) as publisher:
        hooks = build_webhooks(config, publisher, state_dir=publisher.state_dir)
        with _settling(hooks.settle):
            yield [hooks.router]


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def _user_error(read: Callable[[], Any]) -> Any:
    """``read()``, with a settings error said in one line instead of a traceback."""
    try:
        return read()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
