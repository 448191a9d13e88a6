"""aftersales_dev/devenv.py: the local PostgreSQL cluster and Kafka broker (make run, tests)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from aftersales_dev.devenv import (
    LocalBroker,
    LocalPostgres,
    find_postgres_bindir,
    free_port,
    wait_for_port,
)


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


# --------------------------------------------------------------------------------------------
# helpers


def test_wait_for_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        wait_for_port("127.0.0.1", server.getsockname()[1], timeout=2)
    with pytest.raises(TimeoutError, match="did not accept connections"):
        wait_for_port("127.0.0.1", free_port(), timeout=0.2)


# --------------------------------------------------------------------------------------------
# PostgreSQL


@pytest.fixture
def postgres() -> Iterator[LocalPostgres]:
    if find_postgres_bindir() is None:
        pytest.skip("no PostgreSQL server binaries (run `make install`)")
    with LocalPostgres() as pg:
        yield pg


async def test_local_postgres_starts_and_restarts_keeping_data(postgres: LocalPostgres) -> None:
    assert postgres.url.startswith("postgresql+asyncpg://postgres@127.0.0.1:")
    assert postgres.url.endswith("/aftersales")
    conn = await asyncpg.connect(_plain(postgres.url))
    try:
        assert await conn.fetchval("SELECT current_database()") == "aftersales"
        await conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
        await conn.execute("INSERT INTO kept VALUES (1, 'survives a restart')")
    finally:
        await conn.close()

    url = postgres.url
    await asyncio.to_thread(postgres.restart)
    assert postgres.url == url

    conn = await asyncpg.connect(_plain(postgres.url))
    try:
        assert await conn.fetchval("SELECT note FROM kept WHERE id = 1") == "survives a restart"
    finally:
        await conn.close()


def test_local_postgres_stop_removes_temporary_data() -> None:
    if find_postgres_bindir() is None:
        pytest.skip("no PostgreSQL server binaries (run `make install`)")
    pg = LocalPostgres().start()
    base = pg.base
    assert base is not None and (base / "data" / "PG_VERSION").exists()
    pg.stop()
    assert not base.exists()
    assert not pg.is_running


async def test_database_url_fixture(database_url: str) -> None:
    assert database_url.startswith("postgresql+asyncpg://")
    conn = await asyncpg.connect(_plain(database_url))
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------------
# Kafka (Tansu)


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def _round_trip(bootstrap: str, topic: str, payload: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks=1)
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=20)
    finally:
        await consumer.stop()
    assert message.value == payload
    assert message.key == b"k"


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as b:
        yield b


async def test_local_broker_round_trip_and_restart(broker: LocalBroker) -> None:
    bootstrap = broker.bootstrap_servers
    assert bootstrap.startswith("127.0.0.1:")
    topic = f"devenv-{uuid.uuid4().hex[:8]}"
    await _create_topic(bootstrap, topic)
    await _round_trip(bootstrap, topic, b"before restart")

    await asyncio.to_thread(broker.restart)
    assert broker.bootstrap_servers == bootstrap
    assert broker.is_running
    assert topic not in await _topics(bootstrap)  # in-memory: a restart forgets everything

    await _create_topic(bootstrap, topic)
    await _round_trip(bootstrap, topic, b"after restart")


def test_local_broker_stop() -> None:
    broker = LocalBroker().start()
    run_dir = broker.run_dir
    assert run_dir is not None and broker.log_path.exists()
    host, port = broker.bootstrap_servers.split(":")
    broker.stop()
    assert not broker.is_running
    assert not run_dir.exists()
    with pytest.raises(TimeoutError):
        wait_for_port(host, int(port), timeout=0.2)


async def test_kafka_bootstrap_fixture(kafka_bootstrap: str) -> None:
    topic = f"devenv-fixture-{uuid.uuid4().hex[:8]}"
    await _create_topic(kafka_bootstrap, topic)
    await _round_trip(kafka_bootstrap, topic, b"hello")
