"""The Faust application: thin agents that hand each record to the pipeline, and timers for
the outbox relay, the retention scheduler and the gauges. No logic lives here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust
import structlog

from .bootstrap import Container
from .lag import ConsumerLag
from .pipeline import TRANSIENT, Delivery
from .services.ops import Reconciler

log = structlog.get_logger("callvault.agents")

ROLES = ("ingest", "retention", "holds", "dsr", "scheduler", "outbox")
_INPUTS = {  # role -> (logical topic, pipeline entry point name)
    "ingest": ("calls_ended", "on_call_ended"),
    "retention": ("retention_due", "on_retention_due"),
    "holds": ("holds_commands", "on_hold_command"),
    "dsr": ("dsr_requests", "on_dsr_request"),
}


def build_app(
    container: Container,
    roles: tuple[str, ...] = ROLES,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> faust.App:
    """The Faust app for ``roles``. ``on_fatal`` is told when a handler's transient failure
    outlived its retries: the worker must stop so that the uncommitted event is redelivered."""
    settings = container.settings
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        autodiscover=False,
        store="memory://",
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_replication_factor=1,
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # Fail over within seconds when a worker dies (Faust's default waits a minute).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        producer_acks=-1,
    )
    topics = settings.topics()
    pipeline = container.pipeline
    for role in roles:
        if role in _INPUTS:
            logical, entry = _INPUTS[role]
            topic = app.topic(topics[logical], key_type=bytes, value_type=bytes)
            # Several events at once: handlers are idempotent and lock per call, and Faust
            # commits an offset only when every event before it is done.
            app.agent(topic, name=f"callvault.{role}", concurrency=settings.concurrency)(
                _agent(getattr(pipeline, entry), on_fatal or _raise)
            )
    _add_timers(app, container, roles)
    return app


def _agent(
    handle: Callable[[Delivery], str], on_fatal: Callable[[BaseException], None]
) -> Callable[[Any], AsyncIterator[str]]:
    async def agent(stream: Any) -> AsyncIterator[str]:
        async for event in stream.events():
            message = event.message
            delivery = Delivery(
                message.topic, message.partition, message.offset, message.key, message.value or b""
            )
            try:
                outcome = await asyncio.to_thread(handle, delivery)
            except TRANSIENT as error:
                log.critical(
                    "worker_exiting_after_retries",
                    reason=type(error).__name__,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                )
                on_fatal(error)  # the worker exits; this event stays uncommitted
                raise
            yield outcome

    return agent


def _raise(error: BaseException) -> None:
    raise error


def _add_timers(app: faust.App, container: Container, roles: tuple[str, ...]) -> None:
    settings = container.settings
    seconds = settings.scheduler_interval.as_timedelta().total_seconds()
    gauges = settings.metrics_interval.as_timedelta().total_seconds()
    if "outbox" in roles:
        relay = container.relay
        app.timer(0.2, name="callvault.outbox")(_periodic(relay.publish_pending))
    if "scheduler" in roles:
        scheduler = container.scheduler
        app.timer(seconds, name="callvault.scheduler")(_periodic(scheduler.announce_due))
        app.timer(gauges, name="callvault.gauges")(_periodic(scheduler.refresh_gauges))
        app.timer(60.0, name="callvault.exports")(_periodic(scheduler.remove_expired_exports))
        app.task(_once(scheduler.apply_policies))
        reconcile = settings.reconcile_interval.as_timedelta().total_seconds()
        reconciler = Reconciler(container.ctx)
        app.task(_periodic(reconciler.run))  # once at start-up, then every interval
        app.timer(reconcile, name="callvault.reconcile")(_periodic(reconciler.run))
    lag_topics = [settings.topics()[_INPUTS[role][0]] for role in roles if role in _INPUTS]
    if lag_topics:  # consumer lag of this worker's inputs (Faust has no lag metric)
        lag = ConsumerLag(
            settings.kafka_bootstrap, settings.app_id, lag_topics, container.ctx.metrics
        )
        app.timer(gauges, name="callvault.lag")(_periodic(lag.refresh))


def _periodic(action: Callable[[], object]) -> Callable[[], Any]:
    async def tick() -> None:
        try:
            await asyncio.to_thread(action)
        except TRANSIENT as error:  # the next tick tries again
            log.warning(
                "periodic_task_failed", task=action.__qualname__, error_type=type(error).__name__
            )

    return tick


def _once(action: Callable[[], object]) -> Callable[[], Any]:
    async def run() -> None:
        result = await asyncio.to_thread(action)
        log.info("startup_task_done", task=action.__qualname__, result=result)

    return run
