"""``callvault worker``: metrics endpoint, the Faust worker, clean shutdown on SIGTERM."""

from __future__ import annotations

import os
from typing import NoReturn

import faust
import structlog
from prometheus_client import start_http_server

from .agents import ROLES, build_app
from .bootstrap import bootstrap, object_store
from .logs import configure
from .metrics import Metrics
from .migrate import migrate
from .settings import Settings

log = structlog.get_logger("callvault.worker")
EXIT_TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL: try again later


def run_worker(settings: Settings, roles: tuple[str, ...]) -> None:
    configure(settings.log_format, settings.log_level)
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise SystemExit(
            f"unknown role(s): {', '.join(sorted(unknown))}; known: {', '.join(ROLES)}"
        )
    if settings.migrate_on_start:
        # Idempotent and locked: a worker started before (or instead of) `callvault migrate`
        # still finds its tables, buckets and topics.
        report = migrate(settings, object_store(settings))
        log.info("migrated", migrations=report.migrations_applied, topics=report.topics_created)
    metrics = Metrics()
    start_http_server(settings.metrics_port, addr=settings.metrics_addr, registry=metrics.registry)
    container = bootstrap(settings, metrics)

    def stop_for(_: BaseException) -> NoReturn:
        """A failure outlived its retries. Exit at once, without Faust's graceful stop (which
        would acknowledge the event in hand): the event stays uncommitted and is redelivered
        when a supervisor restarts the worker. Every effect is already durable in PostgreSQL
        (the outbox included), so nothing is lost by not cleaning up."""
        os._exit(EXIT_TEMPFAIL)  # the agent has logged which event and why

    app = build_app(container, roles or ROLES, on_fatal=stop_for)
    log.info("worker_starting", roles=list(roles or ROLES), metrics_port=settings.metrics_port)
    worker = faust.Worker(
        app,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,  # ours: logs.configure
    )
    worker.spinner = None  # a terminal spinner would corrupt JSON log lines
    try:
        worker.execute_from_commandline()
    finally:
        container.close()
