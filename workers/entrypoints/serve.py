"""``callvault serve``: the web console, its JSON API and the telephony webhooks."""

from __future__ import annotations

import click
import structlog

from ..settings import load_settings

log = structlog.get_logger("callvault.serve")


@click.command()
@click.option("--host", help="Listen address (default CALLVAULT_HTTP_ADDR, 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default CALLVAULT_HTTP_PORT, 8080).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the web console and the JSON API (stateless: run several behind a balancer)."""
    import uvicorn

    from ..adapters.http.app import build_app
    from ..adapters.http.composition import session_secret
    from ..adapters.logs import configure
    from ..app.handlers.keys import verify_keys
    from ..bootstrap import bootstrap
    from .cli.common import user_errors
    from .connect import mounted_credentials, mounted_webhooks

    with user_errors():
        settings = load_settings()
        configure(settings.log_format, settings.log_level)
        container = bootstrap(settings)
        if settings.migrate_on_start:
            container.migrate_schema()
        verify_keys(container.ctx, register=False)  # a wrong key stops the console here
        console = container.console
        secret = session_secret(settings, container.keys)
        # holds are applied through the database; only registered requests go to Kafka
        # the webhooks, if mounted, publish calls as the telephony principal, not the console's
        webhooks_as = mounted_credentials(settings)
        readiness = container.readiness(kafka=False).start()
    address, listen_port = host or settings.http_addr, port or settings.http_port
    log.info("console_serving", addr=address, port=listen_port)
    try:
        with mounted_webhooks(webhooks_as) as webhooks:
            app = build_app(settings, console, secret, extra_routers=webhooks, readiness=readiness)
            uvicorn.run(
                app,
                host=address,
                port=listen_port,
                log_config=None,  # ours: logs.configure (JSON, personal data masked)
                access_log=False,  # the audit trail records what matters; URLs carry none
                server_header=False,
                proxy_headers=False,  # the app trusts CALLVAULT_FORWARDED_ALLOW_IPS only
            )
    finally:
        container.close()
