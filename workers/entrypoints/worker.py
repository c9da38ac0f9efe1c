"""``callvault worker``: the Faust application - thin agents that hand each Kafka record to
the inputs, and background loops for the outbox relay, the follow-up dispatcher, the retention
scheduler, the gauges and reconciliation. No logic lives here.

A transient failure that outlives its retry budget stops the worker with exit code 75 without
acknowledging the event, so a supervisor's restart redelivers it; a background loop's error
never stops the worker (the next round tries again)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

import faust
import structlog

from ..adapters import probes
from ..adapters.kafka.security import KafkaSecurity
from ..adapters.logs import configure
from ..adapters.metrics import Metrics
from ..app.background import maintain_partitions, refresh_gauges
from ..app.handlers.keys import verify_keys
from ..app.handlers.reconcile import reconcile
from ..app.handlers.retention import refuse_other_policy
from ..app.messagebus import Delivery
from ..app.ports.wakeups import Channel, Wakeups
from ..bootstrap import App, bootstrap
from ..domain import messages as m
from ..domain.errors import ConfigError, TransientError
from ..settings import Settings

log = structlog.get_logger("callvault.worker")
EXIT_TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL: try again later
ROLES = ("ingest", "retention", "holds", "dsr", "scheduler", "outbox")
_INPUTS = {  # role -> (logical topic, Inputs method)
    "ingest": ("calls_ended", "call_ended"),
    "holds": ("holds_commands", "hold_command"),
    "dsr": ("dsr_requests", "dsr_request"),
}
GIL_SWITCH_SECONDS = 0.0005
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 256 * 1024
THREADS = 32  # handlers block on I/O; Faust's loop hands them to these threads
HEARTBEAT_SECONDS = 5.0
PARTITIONS_SECONDS = 600.0  # partitions are made months ahead; rows past them counted
# The relay and the follow-up loops wait for a commit's word (``Wakeups``) and poll only this
# often, for what no word announces: a follow-up whose backoff ran out (the first backoff is 1 s),
# a parked follow-up retried by an operator, a word lost while the listener reconnected. The
# relay polls each second (a lost word delays events people wait for); each of the follow-up
# loops every 2 s, so with the default four, at different instants, a due row waits ~0.5 s.
RELAY_FALLBACK_SECONDS = 1.0
FOLLOWUPS_FALLBACK_SECONDS = 2.0
# A woken or busy loop first lets more work gather: at 100 stored calls a second, one word per
# commit would otherwise make a relay round - a claim, a Kafka flush, a commit - for each
# event; after this pause one round publishes the few that came in.
GATHER_SECONDS = 0.05


def run_worker(settings: Settings, roles: tuple[str, ...]) -> None:
    configure(settings.log_format, settings.log_level)
    roles = roles or ROLES
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ConfigError(
            f"unknown role(s) in --only: {', '.join(sorted(unknown))}; known: {', '.join(ROLES)}"
        )
    container = bootstrap(settings)
    metrics = container.metrics
    if settings.migrate_on_start:
        # Idempotent and locked: a worker started before (or instead of) `callvault migrate`
        # still finds its tables, buckets and topics (a changed policy is not applied here).
        report = container.migrate(apply_policy=False)
        log.info("migrated", migrations=report.migrations_applied, topics=report.topics_created)
    # Handlers spend most of their time waiting on sockets, and each wait ends by taking the
    # GIL back; the event loop's own work would otherwise keep it for up to 5 ms each time.
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    _return_large_buffers()
    refuse_other_policy(container.ctx)
    _check_keys(container)  # a wrong key stops the worker here
    readiness = container.readiness(conditions={"partitions": partial(_assigned, metrics)})
    _serve_metrics(settings, metrics, readiness.start())

    def stop_for(_: BaseException) -> NoReturn:
        """A failure outlived its retries. Exit at once, without Faust's graceful stop (which
        would acknowledge the event in hand): the event stays uncommitted and is redelivered
        when a supervisor restarts the worker. Every effect is already durable in PostgreSQL
        (the outbox included), so nothing is lost by not cleaning up."""
        os._exit(EXIT_TEMPFAIL)  # the agent has logged which event and why

    app = build_app(container, roles, on_fatal=stop_for)
    app.timer(HEARTBEAT_SECONDS)(_heartbeat(readiness))
    log.info("worker_starting", roles=list(roles), metrics_port=settings.metrics_port)
    worker = faust.Worker(app, quiet=True, redirect_stdouts=False, override_logging=False)
    worker.spinner = None  # a terminal spinner would corrupt JSON log lines
    try:
        worker.execute_from_commandline()
    finally:
        container.close()


def _check_keys(container: App) -> None:
    """The keys match the database; a token (or database) that does not answer is retried for
    the retry budget, then the worker exits 75 for its supervisor to start it again."""
    try:
        container.retry.call(lambda: verify_keys(container.ctx, register=False), "key check")
    except TransientError as exc:
        log.error("keys_unreachable", error=str(exc))
        sys.exit(EXIT_TEMPFAIL)


def _return_large_buffers() -> None:
    """Upload parts (8 MiB) are allocated and freed over and over by many threads. glibc
    raises its mmap threshold after the first such free and then serves them from per-thread
    heaps that keep their pages; a fixed threshold keeps large buffers mmapped, so a freed
    part goes back to the system at once and a large recording does not grow the worker."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: its allocator has other rules
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def build_app(
    container: App,
    roles: tuple[str, ...] = ROLES,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> faust.App:
    settings = container.settings
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.kafka.split(",")],
        autodiscover=False,
        store="memory://",
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_replication_factor=settings.topic_replication,
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # Fail over within seconds when a worker dies (Faust's default waits a minute).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        producer_acks=-1,
        broker_credentials=faust_credentials(container.kafka_security),
    )
    executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="callvault")
    run = _runner(executor)
    inputs = container.inputs
    topics = settings.topics()
    for role in roles:
        if role in _INPUTS:
            logical, method = _INPUTS[role]
            topic = app.topic(topics[logical], key_type=bytes, value_type=bytes)
            # Several events at once: handlers are idempotent, Faust commits an offset only
            # when every event before it is done, and events with one key take turns.
            app.agent(topic, name=f"callvault.{role}", concurrency=settings.concurrency)(
                _agent(getattr(inputs, method), run, on_fatal or _raise, KeyTurns())
            )
    _background(app, container, roles, run)
    _readiness(app, container.metrics, any(role in _INPUTS for role in roles))
    return app


def faust_credentials(security: KafkaSecurity) -> faust.auth.Credentials | None:
    """The same connection options as every kafka-python client (:func:`kafka_security`),
    in Faust's form."""
    if security.sasl_mechanism is not None:
        password = security.password.get_secret_value() if security.password else None
        return faust.SASLCredentials(
            username=security.username,
            password=password,
            ssl_context=security.ssl_context,
            mechanism=security.sasl_mechanism,
        )
    if security.ssl_context is not None:
        return faust.SSLCredentials(security.ssl_context)
    return None


def _assigned(metrics: Metrics) -> bool:
    """The worker holds its partitions (``callvault_worker_ready``)."""
    return metrics.registry.get_sample_value("callvault_worker_ready") == 1


def _heartbeat(readiness: probes.Readiness) -> Callable[[], Any]:
    """A timer on the event loop: ``/healthz`` fails once it stops ticking."""

    async def heartbeat() -> None:
        readiness.beat()

    return heartbeat


def _serve_metrics(settings: Settings, metrics: Metrics, readiness: probes.Readiness) -> None:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``CALLVAULT_METRICS_PORT``."""
    try:
        probes.serve(settings.metrics_addr, settings.metrics_port, metrics.registry, readiness)
    except OSError as exc:
        raise ConfigError(
            f"CALLVAULT_METRICS_PORT: cannot serve metrics on {settings.metrics_addr}:"
            f"{settings.metrics_port} ({exc.strerror}); is another worker using it?"
        ) from None


Runner = Callable[[Callable[[], Any]], Any]


def _runner(executor: ThreadPoolExecutor) -> Runner:
    async def run(action: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, action)

    return run


class KeyTurns:
    """Events with the same Kafka key are handled one after the other, in the order they were
    read (the order of their partition), while events with other keys run at once.

    The concurrent actors of one agent share its stream, so without this a hold's release could
    overtake its placement. An actor queues for its key's turn before it first awaits, and
    :class:`asyncio.Lock` serves waiters first in, first out."""

    def __init__(self) -> None:
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._queued: Counter[bytes] = Counter()

    @asynccontextmanager
    async def turn(self, key: bytes | None) -> AsyncIterator[None]:
        if key is None:
            yield
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._queued[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._queued[key] -= 1
            if not self._queued[key]:
                del self._queued[key], self._locks[key]


def _agent(
    handle: Callable[[Delivery], str],
    run: Runner,
    on_fatal: Callable[[BaseException], None],
    turns: KeyTurns,
) -> Callable[[Any], AsyncIterator[str]]:
    async def agent(stream: Any) -> AsyncIterator[str]:
        async for event in stream.events():
            async with turns.turn(event.message.key):
                outcome = await _handle(event.message, handle, run, on_fatal)
            yield outcome

    return agent


async def _handle(
    message: Any,
    handle: Callable[[Delivery], str],
    run: Runner,
    on_fatal: Callable[[BaseException], None],
) -> str:
    delivery = Delivery(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value or b"",
        headers=_headers(message.headers),
    )
    try:
        outcome: str = await run(partial(handle, delivery))
    except TransientError as error:
        log.critical(
            "worker_exiting_after_retries",
            reason=str(error),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
        on_fatal(error)  # the worker exits; this event stays uncommitted
        raise
    return outcome


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    """A record's headers as (name, value) pairs, whatever shape Faust hands them in."""
    items = raw.items() if isinstance(raw, dict) else (raw or ())
    return tuple((str(name), bytes(value or b"")) for name, value in items)


def _raise(error: BaseException) -> None:
    raise error


def _readiness(app: faust.App, metrics: Metrics, consumes: bool) -> None:
    """``callvault_worker_ready`` is 1 once the worker holds its partitions (or at once when
    it consumes nothing), so tests and probes wait for it instead of sleeping."""

    async def on_rebalanced(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        metrics.ready.set(1)

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        metrics.ready.set(0)

    async def ready() -> None:
        metrics.ready.set(1)

    app.on_rebalance_complete.connect(on_rebalanced)
    app.on_partitions_revoked.connect(on_revoked)
    if not consumes:
        app.task(ready)


def _background(app: faust.App, container: App, roles: tuple[str, ...], run: Runner) -> None:
    settings = container.settings
    every = settings.scheduler_interval.as_timedelta().total_seconds()
    gauges = settings.metrics_interval.as_timedelta().total_seconds()
    bus = container.messagebus
    if "outbox" in roles:
        woken = _woken_by(container.wakeups, "outbox")
        relay = container.relay.publish_pending
        _loop(app, "outbox", RELAY_FALLBACK_SECONDS, relay, run, Draining(woken))
    if "retention" in roles:
        for n in range(settings.concurrency):
            woken = _woken_by(container.wakeups, "followups")
            drain = container.dispatcher.drain
            fallback = FOLLOWUPS_FALLBACK_SECONDS
            _loop(app, f"followups-{n}", fallback, drain, run, Draining(woken))
    if "scheduler" in roles:
        _loop(app, "scheduler", every, lambda: _announce_all(container), run)
        _loop(app, "stalled", 30.0, lambda: bus.handle(m.ResumeStalledPurges()), run)
        _loop(app, "hold-drift", 60.0, lambda: bus.handle(m.RepairHoldDrift()), run)
        _loop(app, "exports", 60.0, lambda: bus.handle(m.RemoveExpiredExports()), run)
        _loop(app, "forget", 3600.0, lambda: bus.handle(m.ForgetErasedSubjects()), run)
        _loop(app, "partitions", PARTITIONS_SECONDS, lambda: _partitions(container), run)
        _loop(app, "sweep", 3600.0, lambda: bus.handle(m.SweepCopies()), run)
        checkpoints = settings.audit_checkpoint_interval.as_timedelta().total_seconds()
        _loop(app, "audit", checkpoints, lambda: bus.handle(m.CheckpointAudit()), run)
        _loop(
            app,
            "gauges",
            gauges,
            lambda: refresh_gauges(container.ctx, container.database, container.database),
            run,
        )
        interval = settings.reconcile_interval.as_timedelta().total_seconds()
        _loop(app, "reconcile", interval, lambda: reconcile(container.ctx), run)
    lag_topics = [settings.topics()[_INPUTS[r][0]] for r in roles if r in _INPUTS]
    if lag_topics:  # consumer lag of this worker's inputs (Faust has no lag metric)
        lag = container.consumer_lag(lag_topics)
        _loop(app, "lag", gauges, lag.refresh, run)


def _partitions(container: App) -> None:
    maintain_partitions(container.ctx, container.database)


def _announce_all(container: App) -> int:
    """Announce due recordings batch after batch until none is left."""
    total = 0
    while (outcome := container.messagebus.handle(m.AnnounceDue())) != "announced:0":
        total += int(outcome.split(":")[1])
    return total


Waker = Callable[[], asyncio.Event]


def _woken_by(wakeups: Wakeups, channel: Channel) -> Waker:
    """An event, made on the running loop, that each commit with work for ``channel`` sets -
    from the listener's thread, through the loop's thread-safe door."""

    def subscribe() -> asyncio.Event:
        woken, running = asyncio.Event(), asyncio.get_running_loop()

        def wake() -> None:
            running.call_soon_threadsafe(woken.set)

        wakeups.subscribe(channel, wake)
        return woken

    return subscribe


@dataclass(frozen=True)
class Draining:
    """How a loop that drains a queue runs: woken by ``woken_by``'s event as well as every so
    often, again while its action (which returns how much it did) finds work, and each time
    ``gather`` seconds later, so that one round takes what came in meanwhile."""

    woken_by: Waker
    gather: float = GATHER_SECONDS


def _loop(
    app: faust.App,
    name: str,
    seconds: float,
    action: Callable[[], object],
    run: Runner,
    draining: Draining | None = None,
) -> None:
    """Run ``action`` now and then every ``seconds`` (a draining loop: see :class:`Draining`;
    another loop's result means nothing - a consumer lag of 6 is no work left to do); an error
    is logged and the loop goes on."""

    async def loop() -> None:
        woken = draining.woken_by() if draining else asyncio.Event()
        gather = draining.gather if draining else 0.0
        while True:
            woken.clear()  # before the step: word of a commit during it wakes the next wait
            busy = False
            try:
                result = await run(action)
                busy = draining is not None and isinstance(result, int) and result > 0
            except asyncio.CancelledError:
                raise
            except TransientError as error:
                log.warning("background_step_failed", step=name, error=str(error))
            except Exception as error:
                log.exception("background_step_bug", step=name, error_type=type(error).__name__)
            if not busy:
                with suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        await woken.wait()
            await asyncio.sleep(gather)

    loop.__name__ = loop.__qualname__ = f"callvault_{name.replace('-', '_')}"
    app.task(loop)
