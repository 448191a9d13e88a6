"""One service's moving parts: consumer, outbox relay and timer scheduler, run together."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from faststream import AckPolicy
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import REGISTRY
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared import metrics
from shared.clock import Clock
from shared.contracts import CloudEvent, dead_letter_topic
from shared.db import create_engine, session_factory
from shared.policy import Policy
from shared.settings import Settings
from shared.tracing import setup_tracing

from .consumer import BatchCut, EventProcessor, default_lock_keys
from .context import EventHandler, TimerHandler
from .errors import is_transient
from .fetch import draw_in_time_order
from .health import ConsumerHealth
from .kafka import client_security
from .lag import LAG_INTERVAL_SECONDS, ConsumerLag
from .readapi import KpiSource, ReadContext, ReadRoute
from .readroutes import common_routes
from .records import read_header_keys_leniently
from .relay import CONTENT_TYPE, RELAY_HEADERS, OutboxRelay
from .retention import (
    PURGE_INTERVAL_SECONDS,
    Retained,
    RetentionPeriods,
    messaging_retention,
    run_purges,
)
from .scheduler import TimerScheduler
from .tables import MessagingTables
from .topics import ensure_topics

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("aftersales.runtime")

# Seconds a stop gives the relay and the scheduler to finish and the outbox to drain, after the
# batch in flight (the broker's graceful_timeout, 20 s) is done.
STOP_BUDGET = 15.0

# A batch that failed on a passing fault is fetched again after 1, 2, 4 ... seconds, at most
# this long: one instance stuck on a fault retries about once per cap (the alert
# AftersalesTransientRetries is derived from it, see deploy/prometheus/alerts.yaml).
RETRY_BACKOFF_CAP = 30.0

# Shares of KAFKA_MAX_POLL_INTERVAL_MS a batch may spend: processing it event by event (after
# the fast path failed) and waiting before a failed batch is fetched again. Together they stay
# well inside the interval, so a slow batch does not make the consumer leave its group.
BATCH_BUDGET_SHARE = 0.5
BACKOFF_SHARE = 0.25


@dataclass(frozen=True)
class ServiceDefinition:
    """What a service declares; the runtime wires the rest."""

    name: str
    metadata: MetaData
    tables: MessagingTables
    topics: Sequence[str]
    handlers: Mapping[str, EventHandler]
    timer_handlers: Mapping[str, TimerHandler] = field(default_factory=dict)
    lock_keys: Callable[[CloudEvent], Iterable[str]] = default_lock_keys
    # topic -> event types, for the AsyncAPI description and topic creation.
    publishes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # The service's case records and how long they are kept (`retention.case_records`); the
    # messaging tables' technical rows are added by `retained`.
    case_records: Sequence[Retained] = ()
    # The read API (shared/messaging/readapi.py): the service's KPIs, and routes of its own
    # (the refund ledger's ledgers) added to the ones every service answers.
    kpis: KpiSource | None = None
    read_routes: Callable[[ReadContext], Sequence[ReadRoute]] | None = None
    # Called once when the service stops, after its timers: resources kept for the service's
    # life (the notifier's gateway connection pools).
    closers: Sequence[Callable[[], Awaitable[None]]] = ()
    # Transactions firing timers at once, on lock keys apart (`TimerScheduler`).
    timer_concurrency: int = 1

    @property
    def retained(self) -> list[Retained]:
        return [*messaging_retention(self.tables), *self.case_records]

    @property
    def schema(self) -> str:
        assert self.metadata.schema is not None
        return self.metadata.schema

    @property
    def all_topics(self) -> list[str]:
        return sorted({*self.topics, *self.publishes, dead_letter_topic(self.name)})

    def processor(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        handlers: Mapping[str, EventHandler] | None = None,
        **options: Any,
    ) -> EventProcessor:
        """The service's event processor over `sessions`, as the runtime consumes with it (tests
        and the benchmark build theirs here too); `handlers` in place of the service's own."""
        return EventProcessor(
            service=self.name,
            sessions=sessions,
            tables=self.tables,
            handlers=self.handlers if handlers is None else handlers,
            clock=clock,
            lock_keys=self.lock_keys,
            **options,
        )

    def scheduler(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, **options: Any
    ) -> TimerScheduler:
        """The service's timer scheduler over `sessions`, firing as many timers at once as the
        service declares."""
        return TimerScheduler(
            service=self.name,
            sessions=sessions,
            tables=self.tables,
            handlers=self.timer_handlers,
            clock=clock,
            concurrency=self.timer_concurrency,
            **options,
        )


async def _records_as_they_came(msg: StreamMessage[Any]) -> Any:
    """The consumer's decoder: the fetched records as they came. The processor parses them
    itself; FastStream's decoder would parse each record's JSON a first time, for nothing,
    and raise on a body labelled `application/json` that is not JSON, before the processor
    could dead-letter it: the batch would be fetched again and again, its partition stopped."""
    raw = msg.raw_message
    return raw if isinstance(raw, tuple) else (raw,)


def kafka_security(settings: Settings) -> BaseSecurity | None:
    protocol = settings.kafka_security_protocol.upper()
    if protocol == "PLAINTEXT":
        return None
    use_ssl = protocol in {"SSL", "SASL_SSL"}
    context = ssl.create_default_context() if use_ssl else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    username, password = settings.kafka_sasl_username or "", settings.kafka_sasl_password or ""
    mechanism = (settings.kafka_sasl_mechanism or "PLAIN").upper()
    kinds: dict[str, type[Any]] = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }
    if mechanism not in kinds:
        raise ValueError(f"unsupported KAFKA_SASL_MECHANISM {mechanism!r}")
    return kinds[mechanism](
        username=username, password=password, ssl_context=context, use_ssl=use_ssl
    )


class ServiceRuntime:
    def __init__(
        self,
        definition: ServiceDefinition,
        settings: Settings,
        clock: Clock,
        *,
        engine: AsyncEngine | None = None,
        max_records: int = 500,
        relay_poll_interval: float = 0.5,
        timer_poll_interval: float = 1.0,
        retry_backoff: float = 1.0,
        lag_interval: float | None = LAG_INTERVAL_SECONDS,
        purge_interval: float | None = PURGE_INTERVAL_SECONDS,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        self.definition = definition
        self.settings = settings
        self.clock = clock
        self.engine = engine or create_engine(
            settings.database_url, limits=settings.database_limits()
        )
        self._owns_engine = engine is None
        self.sessions = session_factory(self.engine)
        self._retry_backoff = retry_backoff
        poll_interval = settings.kafka_max_poll_interval_ms / 1000
        self._backoff_cap = min(RETRY_BACKOFF_CAP, poll_interval * BACKOFF_SHARE)
        self._purge_interval = purge_interval
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._relay_producer: AIOKafkaProducer | None = None
        # A renewed producer did not start yet: the relay's next round starts it first.
        self._renewing = False
        # Only when OTEL_EXPORTER_OTLP_ENDPOINT is set (or a test gives an exporter).
        self.tracing = setup_tracing(definition.name, span_exporter)
        self.broker = KafkaBroker(
            settings.kafka_bootstrap_servers,
            enable_idempotence=settings.kafka_idempotence,
            acks="all",
            linger_ms=5,
            graceful_timeout=20.0,
            security=kafka_security(settings),
            client_id=f"aftersales-{definition.name}",
            logger=logging.getLogger(f"aftersales.{definition.name}.broker"),
            log_level=logging.DEBUG,
            middlewares=[
                *([self.tracing.middleware] if self.tracing is not None else []),
                KafkaPrometheusMiddleware(
                    registry=REGISTRY, app_name=f"aftersales-{definition.name}"
                ),
            ],  # one line per batch is noise; our own logs say what matters
        )
        self.relay = OutboxRelay(
            service=definition.name,
            sessions=self.sessions,
            tables=definition.tables,
            publish=self._publish,
            clock=clock,
            poll_interval=relay_poll_interval,
            producer=self.kafka_producer,
            renew_producer=self.renew_relay_producer,
            record_headers=self._traced_headers if self.tracing is not None else None,
        )
        self.processor = definition.processor(
            self.sessions,
            clock,
            on_committed=self.relay.wake,
            budget=poll_interval * BATCH_BUDGET_SHARE,
        )
        self.scheduler = definition.scheduler(
            self.sessions, clock, poll_interval=timer_poll_interval, on_committed=self.relay.wake
        )
        self.health = ConsumerHealth(
            definition.name, stuck_after=settings.aftersales_stuck_after_seconds
        )
        self.group_id = f"aftersales-{definition.name}"
        self.lag = (
            ConsumerLag(
                service=definition.name,
                settings=settings,
                group_id=self.group_id,
                topics=definition.topics,
                interval=lag_interval,
            )
            if lag_interval is not None
            else None
        )
        subscriber = self.broker.subscriber(
            *definition.topics,
            group_id=self.group_id,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=100,
            # Bounded by bytes too: 500 records of up to 256 KiB each would be 125 MiB.
            fetch_max_bytes=settings.kafka_fetch_max_bytes,
            max_partition_fetch_bytes=settings.kafka_max_partition_fetch_bytes,
            max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
            auto_offset_reset="earliest",
            # Offsets are committed only after the batch's transaction committed; a failure
            # seeks back so the batch is fetched again (inbox ids make that harmless).
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=_records_as_they_came,
            title=f"{definition.name}/consume",
        )
        subscriber(self._consume)
        # A header key that is not UTF-8 made aiokafka's reader raise in the middle of a fetch
        # (shared/messaging/records.py): read leniently, it stops no partition.
        read_header_keys_leniently()
        # A backlog's batches across the partitions up to one instant, in time order
        # (shared/messaging/fetch.py), not one partition's records after another's.
        draw_in_time_order(
            subscriber, definition.topics, linger=settings.kafka_batch_linger_ms / 1000
        )

    @property
    def name(self) -> str:
        return self.definition.name

    def read_routes(self, policy: Policy) -> list[ReadRoute]:
        """The service's read API, under /<service>/api."""
        return service_read_routes(
            self.definition, self.sessions, self.settings, policy, self.clock
        )

    async def _consume(self, records: Any) -> None:
        # The batch's records as the decoder passes them (the body), not FastStream's message:
        # a parameter it injects from its context runs a function in a worker thread per batch.
        try:
            await self.processor.process(records)
            self.health.succeeded()
        except BatchCut as cut:
            # Progress, not a failure: what was applied is committed; the batch is fetched again
            # at once (nacked: seek back, no error logged) and its applied events are duplicates.
            self.health.succeeded()
            raise NackMessage() from cut
        except Exception as exc:
            # A passing fault, or a batch the processor counts towards its last resort: either
            # way it is fetched again after a backoff, and the gauge shows it.
            self.health.failed(exc)
            transient = is_transient(exc)
            if transient:
                metrics.RETRIES.labels(self.name).inc()
            failures = self.health.failures
            delay = min(self._retry_backoff * 2 ** min(failures - 1, 5), self._backoff_cap)
            log.warning(
                "batch failed; it will be fetched again",
                extra={
                    "service": self.name,
                    "transient": transient,
                    "sqlstate": self.health.sqlstate,
                    "error": self.health.error,
                    "failed_batches": failures,
                    "retry_in_s": delay,
                },
            )
            await asyncio.sleep(delay)
            raise

    async def _publish(self, topic: str, key: bytes | None, payload: bytes) -> Any:
        # The outbox relay sends through an aiokafka producer of its own: FastStream's publish
        # (its middlewares, a correlation id, a command object) cost as much CPU as the send.
        # With tracing on, the relay makes each event's span and trace headers itself.
        producer = self._relay_producer
        if producer is not None:
            headers = RELAY_HEADERS if self.tracing is None else self._traced_headers(topic, key)
            return await producer.send(topic, payload, key=key, headers=headers)
        return await self.broker.publish(
            payload,
            topic,
            key=key,
            headers={"content-type": CONTENT_TYPE},
            no_confirm=True,
        )

    def kafka_producer(self) -> AIOKafkaProducer | None:
        """The relay's own aiokafka producer while the service runs; None before start (then
        the relay publishes through the broker)."""
        return self._relay_producer

    def _traced_headers(self, topic: str, key: bytes | None) -> list[tuple[str, bytes]]:
        assert self.tracing is not None
        return [*RELAY_HEADERS, *self.tracing.trace_headers(topic, key)]

    def _new_relay_producer(self) -> AIOKafkaProducer:
        # Configured as the broker's producer is: idempotent, every replica acknowledges.
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            client_id=f"aftersales-{self.name}-relay",
            enable_idempotence=self.settings.kafka_idempotence,
            acks="all",
            linger_ms=5,
            **client_security(self.settings),
        )

    async def start_relay_producer(self) -> None:
        """Start the relay's own producer; `start` does it after the broker. Before, the
        relay publishes through the broker (once it is connected)."""
        if self._relay_producer is None:
            producer = self._new_relay_producer()
            try:
                await producer.start()
            except BaseException:
                await producer.stop()  # its client and connections, not left for the collector
                raise
            self._relay_producer = producer
            self._renewing = False

    async def renew_relay_producer(self) -> None:
        """A new relay producer after the broker refused records (the relay calls it): aiokafka
        does not take back an idempotent producer's sequence numbers of a batch refused for
        good, so the partition's next batch would be refused as out of order and stop it. A new
        producer id numbers anew. Called again before it has started, it starts it."""
        if self._renewing:
            await self.start_relay_producer()
        elif self._relay_producer is not None and self.settings.kafka_idempotence:
            await self.stop_relay_producer()
            self._renewing = True
            await self.start_relay_producer()

    async def stop_relay_producer(self) -> None:
        if self._relay_producer is not None:
            producer, self._relay_producer = self._relay_producer, None
            await producer.stop()

    async def ensure_topics(self) -> None:
        await ensure_topics(self.settings, self.definition.all_topics)

    async def start(self) -> None:
        await self.ensure_topics()
        await self.broker.start()
        await self.start_relay_producer()
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self.relay.run(self._stop), name=f"{self.name}-relay"),
            asyncio.create_task(self.scheduler.run(self._stop), name=f"{self.name}-timers"),
        ]
        if self.lag is not None:
            self._tasks.append(
                asyncio.create_task(self.lag.run(self._stop), name=f"{self.name}-lag")
            )
        if self._purge_interval is not None:
            purges = run_purges(
                self.name,
                self.sessions,
                self.definition.retained,
                RetentionPeriods.from_settings(self.settings),
                self.clock,
                self._stop,
                self._purge_interval,
            )
            self._tasks.append(asyncio.create_task(purges, name=f"{self.name}-purge"))
        metrics.RUNNING.labels(self.name).set(1)
        log.info("service started", extra={"service": self.name})

    async def stop(self) -> None:
        """Stop fetching, let in-flight batches finish and commit, publish what is left."""
        metrics.RUNNING.labels(self.name).set(0)
        # Subscribers first: the producer must outlive the relay's last publish.
        for subscriber in self.broker.subscribers:
            await subscriber.stop()
        self._stop.set()
        self.relay.wake()
        # The relay's and scheduler's last rounds and the drain share one budget, so a stop
        # takes at most the broker's graceful_timeout (20 s, the batch in flight) + 15 s
        # (+ 5 s for the last spans when tracing): within the pods' 45 s grace period.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_BUDGET
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=max(deadline - loop.time(), 0.1))
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        self._tasks = []
        for close in self.definition.closers:
            try:
                await close()
            except Exception as exc:
                log.warning(
                    "closing failed at stop", extra={"service": self.name, "error": repr(exc)}
                )
        try:
            await asyncio.wait_for(self.relay.drain(), timeout=max(deadline - loop.time(), 1.0))
        except Exception as exc:  # left in the outbox: the next start publishes it
            log.warning(
                "outbox not drained at stop",
                extra={"service": self.name, "error": type(exc).__name__},
            )
        await self.stop_relay_producer()
        await self.broker.stop()
        if self._owns_engine:
            await self.engine.dispose()
        if self.tracing is not None:
            await self.tracing.close()
        log.info("service stopped", extra={"service": self.name})

    async def ready(self, timeout: float = 2.0) -> dict[str, bool]:
        async def database() -> bool:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True

        checks = {"database": database(), "broker": self.broker.ping(timeout)}
        result: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                result[name] = bool(await asyncio.wait_for(check, timeout))
            except Exception:
                result[name] = False
        return result


def service_read_routes(
    definition: ServiceDefinition,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    policy: Policy,
    clock: Clock,
) -> list[ReadRoute]:
    """The routes every service answers, its KPIs and its own routes, under /<service>/api."""
    ctx = ReadContext(
        service=definition.name,
        sessions=sessions,
        tables=definition.tables,
        settings=settings,
        policy=policy,
        clock=clock,
    )
    routes = common_routes(ctx, definition.kpis)
    if definition.read_routes is not None:
        routes.extend(definition.read_routes(ctx))
    return routes
