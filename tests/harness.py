"""One harness for the service suites: a service as its runtime builds it (its bootstrap's
`build(policy, clock)`: handlers, EventProcessor, TimerScheduler) minus the broker, on the real
database and a ManualClock. `feed` hands it fetched records the way the Kafka consumer does,
`fire_due` runs the due timers, `outbox_rows` reads back what it would publish;
`migrated_database` gives a suite a database of its own, migrated with the service's
migrations, and `suite_fixtures` its conftest's database, engine, clock and service.
For the suites on the broker, `RunningService` is a service as `aftersales run` starts it, on
`quick_runtime`'s short polls, and `Publisher` sends what the shop platform would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from sqlalchemy import MetaData, event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aftersales.registry import SERVICES, definition
from aftersales_dev.devenv import skip_history, temporary_database
from aftersales_dev.events import encode, topic_of
from shared.clock import Clock, ManualClock
from shared.db import create_engine, session_factory
from shared.messaging.consumer import EventProcessor
from shared.messaging.relay import CONTENT_TYPE
from shared.messaging.runtime import ServiceDefinition, ServiceRuntime, ensure_topics
from shared.messaging.scheduler import TimerScheduler
from shared.migrations import upgrade
from shared.policy import Policy
from shared.settings import Settings

__all__ = [
    "Publisher",
    "Record",
    "RunningService",
    "ServiceHarness",
    "broker_settings",
    "broker_suite_settings",
    "engine_at",
    "fresh_schema",
    "migrated_database",
    "quick_runtime",
    "suite_fixtures",
]


@dataclass(frozen=True)
class Record:
    """A fetched Kafka record as the EventProcessor sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class ServiceHarness:
    """One service instance over `engine`; `restart()` builds a new one (same database).

    `key_of` and `topic_of` (by default the topic of the event's type) name the key and the
    topic of an event fed without them.
    Offsets count per topic and partition in `offsets` (pass one dict to share them).
    """

    def __init__(
        self,
        build: Callable[[Policy, Clock], ServiceDefinition],
        engine: AsyncEngine,
        clock: ManualClock,
        policy: Policy | None = None,
        *,
        key_of: Callable[[Mapping[str, Any]], str | None],
        topic_of: Callable[[Mapping[str, Any]], str] = topic_of,
        offsets: dict[tuple[str, int], int] | None = None,
    ) -> None:
        self.build, self.engine, self.clock = build, engine, clock
        self.policy = policy or Policy()
        self.topic_of, self.key_of = topic_of, key_of
        self.offsets: dict[tuple[str, int], int] = defaultdict(int) if offsets is None else offsets
        self.sessions = session_factory(engine)
        self.restart()

    def restart(self) -> None:
        self.definition = self.build(self.policy, self.clock)
        self.processor = self.processor_over(self.sessions)
        self.scheduler = self.scheduler_over(self.sessions)

    def processor_over(
        self, sessions: async_sessionmaker[AsyncSession], handlers: Any = None
    ) -> EventProcessor:
        """The service's event processor over `sessions` (with other handlers when given)."""
        return self.definition.processor(sessions, self.clock, handlers=handlers)

    def scheduler_over(self, sessions: async_sessionmaker[AsyncSession]) -> TimerScheduler:
        """The service's timer scheduler over `sessions`, as many timers at once as it fires."""
        return self.definition.scheduler(sessions, self.clock)

    def record(
        self, event: Mapping[str, Any] | bytes, *, key: str | None = None, topic: str | None = None
    ) -> Record:
        """A new record at the next offset of its topic (partition 0)."""
        if isinstance(event, bytes):
            value = event
            assert topic is not None, "raw bytes need a topic"
        else:
            value = encode(event)
            topic = topic or self.topic_of(event)
            key = key if key is not None else self.key_of(event)
        offset = self.offsets[(topic, 0)]
        self.offsets[(topic, 0)] = offset + 1
        return Record(topic, 0, offset, key.encode() if key is not None else None, value)

    async def feed(
        self, *events: Mapping[str, Any] | bytes | Record, topic: str | None = None
    ) -> list[Record]:
        """Process the events as ONE fetched batch (one transaction), in the order given."""
        batch = [e if isinstance(e, Record) else self.record(e, topic=topic) for e in events]
        await self.processor.process(batch)
        return batch

    async def fire_due(self) -> int:
        return await self.scheduler.run_all_due()

    async def outbox_rows(self, *where: Any) -> list[dict[str, Any]]:
        """The outbox rows (all, or those matching `where`) in commit order, each with its
        CloudEvent decoded under `event`."""
        t = self.definition.tables.outbox
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t).where(*where).order_by(t.c.id))).mappings()
            return [{**row, "event": json.loads(row["payload"])} for row in rows]

    @property
    def outbox_table(self) -> Any:
        return self.definition.tables.outbox


@asynccontextmanager
async def migrated_database(database_url: str, name: str, *services: str) -> AsyncIterator[str]:
    """A database `name` of its own for the session, migrated with each service's migrations."""
    async with temporary_database(database_url, name) as url:
        for service in services:
            # Alembic's env runs its own event loop: keep it off this one.
            await asyncio.to_thread(upgrade, service, url)
        yield url


@asynccontextmanager
async def engine_at(url: str, pool_size: int = 5) -> AsyncIterator[AsyncEngine]:
    """An engine over `url`, disposed of afterwards."""
    engine = create_engine(url, pool_size=pool_size)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def broker_suite_settings(
    database_url: str, bootstrap: str, name: str, *services: str
) -> AsyncIterator[Settings]:
    """A broker suite's settings over a fresh database migrated for `services`, dropped after."""
    async with migrated_database(database_url, name, *services) as url:
        yield broker_settings(url, bootstrap)


def suite_fixtures(
    service: str, make: Callable[[AsyncEngine, ManualClock], Any], start: datetime
) -> tuple[Any, Any, Any, Any]:
    """A service suite's fixtures, for its conftest: `service_database` (the URL of a database
    of its own, migrated once per session), `service_engine` (over it), `clock` (a ManualClock
    at `start`, per test) and `svc` (`make` over both). Each conftest's fixtures are its own
    directory's, so the names can repeat."""

    @pytest.fixture(scope="session")
    async def service_database(database_url: str) -> AsyncIterator[str]:
        async with migrated_database(database_url, f"{service}_it", service) as url:
            yield url

    @pytest.fixture(scope="session")
    async def service_engine(service_database: str) -> AsyncIterator[AsyncEngine]:
        async with engine_at(service_database) as engine:
            yield engine

    @pytest.fixture
    def clock() -> ManualClock:
        return ManualClock(start)

    @pytest.fixture
    def svc(service_engine: AsyncEngine, clock: ManualClock) -> Any:
        return make(service_engine, clock)

    return service_database, service_engine, clock, svc


def broker_settings(database_url: str, bootstrap: str, **more: Any) -> Settings:
    """Settings of the services in a broker suite: no idempotent producer (SPEC: nothing may
    depend on it), three partitions per topic, `more` on top."""
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=database_url,
        kafka_idempotence=False,
        kafka_topic_partitions=3,
        **more,
    )


@asynccontextmanager
async def fresh_schema(
    engine: AsyncEngine, schema: str, metadata: MetaData
) -> AsyncIterator[AsyncEngine]:
    """`metadata`'s tables (schema `schema`) created in a new schema of their own, for one
    test: the engine returned maps the schema there (schema_translate_map)."""
    copy = f"{schema}_t_{uuid.uuid4().hex[:10]}"
    mapped = engine.execution_options(schema_translate_map={schema: copy})
    async with mapped.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{copy}"'))
        await conn.run_sync(metadata.create_all)
    try:
        yield mapped
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{copy}" CASCADE'))


def quick_runtime(
    definition: ServiceDefinition, settings: Settings, clock: Clock, **options: Any
) -> ServiceRuntime:
    """A service's runtime with short polls and backoff, so a broker suite waits little."""
    quick: dict[str, Any] = {
        "max_records": 100,
        "relay_poll_interval": 0.05,
        "timer_poll_interval": 0.1,
        "retry_backoff": 0.1,
    }
    return ServiceRuntime(definition, settings, clock, **{**quick, **options})


@asynccontextmanager
async def every_service_running(
    settings: Settings, clock: Clock, policy: Policy, *, timer_poll_interval: float
) -> AsyncIterator[list[ServiceRuntime]]:
    """Every service of the registry started on the broker of `settings`, stopped at the end."""
    bootstrap = settings.kafka_bootstrap_servers
    runtimes = []
    for service in SERVICES:
        built = definition(service, policy, clock, settings)
        # The services' own names (their events' sources must be theirs), their consumer
        # groups started at the end of the shared broker's history.
        await ensure_topics(settings, built.all_topics)
        await skip_history(bootstrap, f"aftersales-{built.name}", built.topics)
        runtimes.append(
            ServiceRuntime(built, settings, clock, timer_poll_interval=timer_poll_interval)
        )
    for runtime in runtimes:
        await runtime.start()
    try:
        yield runtimes
    finally:
        for runtime in runtimes:
            await runtime.stop()


class Publisher:
    """Publishes records as the shop platform does: keyed, with the content type, each one
    acknowledged before the next."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=False, acks="all", linger_ms=0
        )

    async def send(self, topic: str, key: str, value: bytes) -> RecordMetadata:
        headers = [("content-type", CONTENT_TYPE.encode())]
        return await self.producer.send_and_wait(topic, value, key=key.encode(), headers=headers)

    async def __aenter__(self) -> Self:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()


class RunningService:
    """A service on the broker as `aftersales run <name>` starts it, with a ManualClock: one
    runtime at a time, started and stopped at will (`starts` counts the starts)."""

    def __init__(
        self,
        build: Callable[[Policy, Clock], ServiceDefinition],
        settings: Settings,
        clock: ManualClock,
        policy: Policy | None = None,
    ) -> None:
        self.build, self.settings, self.clock = build, settings, clock
        self.policy = policy or Policy()
        self.runtime: ServiceRuntime | None = None
        self.starts = 0

    def new_runtime(self) -> ServiceRuntime:
        return quick_runtime(self.build(self.policy, self.clock), self.settings, self.clock)

    async def start(self) -> ServiceRuntime:
        assert self.runtime is None, "already running"
        self.runtime = self.new_runtime()
        await self.runtime.start()
        self.starts += 1
        return self.runtime

    async def stop(self) -> None:
        if self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            await runtime.stop()

    @asynccontextmanager
    async def serving(self, group: str, inputs: Iterable[str] | None = None) -> AsyncIterator[Self]:
        """Started for a module of tests: its topics made, its consumer `group` moved past what
        other tests left on its `inputs` (by default, every topic it reads), stopped after."""
        definition = self.new_runtime().definition
        await ensure_topics(self.settings, definition.all_topics)
        bootstrap = self.settings.kafka_bootstrap_servers
        await skip_history(bootstrap, group, definition.topics if inputs is None else inputs)
        await self.start()
        try:
            yield self
        finally:
            await self.stop()


# The notifier's gateways and keys, which Settings() reads from the environment.
NOTIFIER_ENV = (
    "AFTERSALES_ENCRYPTION_KEY",
    "AFTERSALES_DEV_MODE",
    "AFTERSALES_SMS_GATEWAY_URL",
    "AFTERSALES_IM_GATEWAY_URL",
    "AFTERSALES_SMTP_URL",
    "AFTERSALES_WEBHOOK_URL",
    "AFTERSALES_WEBHOOK_SECRET",
)


def no_notifier_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's notifier gateways and keys out of the Settings() a test builds."""
    for name in NOTIFIER_ENV:
        monkeypatch.delenv(name, raising=False)


@contextmanager
def statements_by_kind(engine: AsyncEngine) -> Iterator[Counter[str]]:
    """Counts the statements sent through `engine` meanwhile: `lock` (advisory locks), `read`
    (other selects), `write` (inserts, updates, deletes)."""
    seen: Counter[str] = Counter()

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        verb = statement.lstrip().split()[0].upper()
        if verb == "SELECT":
            seen["lock" if "pg_advisory_xact_lock" in statement else "read"] += 1
        elif verb in ("INSERT", "UPDATE", "DELETE"):
            seen["write"] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
