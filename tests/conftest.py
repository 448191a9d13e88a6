"""Shared session fixtures: a Kafka broker and a PostgreSQL database for the whole run.

* ``database_url``: ``$DATABASE_URL`` when set; else a throwaway local PostgreSQL cluster
  (aftersales_dev/devenv.py); else a testcontainers PostgreSQL when a Docker engine is reachable;
  else the test is skipped. Always a ``postgresql+asyncpg://`` URL.
* ``kafka_bootstrap``: ``$KAFKA_BOOTSTRAP_SERVERS`` when set; with ``AFTERSALES_TEST_KAFKA=
  testcontainers`` (``make test-kafka``) Apache Kafka in a container, the tests skipped where no
  Docker engine is reachable; else a local in-memory Tansu broker.
* ``local_broker``: that local broker object (for restart tests; a restart empties it).

Tests under tests/e2e are marked ``e2e``, under tests/integration ``integration``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from aftersales_dev.devenv import LocalBroker, LocalPostgres, find_postgres_bindir
from tests.harness import engine_at

# The round-trip tests are made there, over each suite's strategies: their asserts explained too.
pytest.register_assert_rewrite("tests.unit.stored_documents")

TESTS_DIR = Path(__file__).resolve().parent
_MARKS_BY_DIR = {"e2e": "e2e", "integration": "integration"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            top = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        if (mark := _MARKS_BY_DIR.get(top)) is not None:
            item.add_marker(mark)


def asyncpg_url(url: str) -> str:
    """``postgresql://`` / ``postgres://`` (or ``+psycopg2`` etc.) to ``postgresql+asyncpg://``."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.split("+")[0] in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    return url


def _docker_reachable() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    if url := os.environ.get("DATABASE_URL"):
        yield asyncpg_url(url)
        return
    if find_postgres_bindir() is not None:
        with LocalPostgres() as postgres:
            yield postgres.url
        return
    if _docker_reachable():
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # older testcontainers
            from testcontainers.postgres import PostgresContainer
        with PostgresContainer("postgres:15-alpine", dbname="aftersales", driver=None) as pg:
            yield asyncpg_url(pg.get_connection_url())
        return
    pytest.skip(
        "no PostgreSQL available: set DATABASE_URL, install PostgreSQL server binaries "
        "(`make install` does it as root on Debian), or start a Docker engine"
    )


@pytest.fixture(scope="session")
def _session_broker() -> Iterator[LocalBroker]:
    with LocalBroker() as broker:
        yield broker


# `make test-kafka`: the suite against Apache Kafka in a container instead of the local broker.
APACHE_KAFKA = "AFTERSALES_TEST_KAFKA"
APACHE_KAFKA_IMAGE = os.environ.get("AFTERSALES_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")
NO_DOCKER = (
    "make test-kafka: no Docker engine reachable (start one, or set DOCKER_HOST): "
    "the suite against Apache Kafka was not run"
)


def _apache_kafka_wanted() -> bool:
    return os.environ.get(APACHE_KAFKA) == "testcontainers"


@pytest.fixture(scope="session")
def _apache_kafka() -> Iterator[str]:
    """Apache Kafka (KRaft, one node) in a container, for the session."""
    if not _docker_reachable():
        pytest.skip(NO_DOCKER)
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer(APACHE_KAFKA_IMAGE).with_kraft() as kafka:
        yield kafka.get_bootstrap_server()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return servers
    if _apache_kafka_wanted():
        apache: str = request.getfixturevalue("_apache_kafka")
        return apache
    broker: LocalBroker = request.getfixturevalue("_session_broker")
    return broker.bootstrap_servers


@pytest.fixture(scope="session")
def local_broker(request: pytest.FixtureRequest, kafka_bootstrap: str) -> LocalBroker:
    """The session's local broker. ``restart()`` on it loses every topic and message."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or _apache_kafka_wanted():
        pytest.skip("the broker is not the local one (KAFKA_BOOTSTRAP_SERVERS, make test-kafka)")
    broker: LocalBroker = request.getfixturevalue("_session_broker")
    return broker


@pytest.fixture(scope="session")
async def database_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """One engine over the test database, for the suites that give each test a fresh schema
    of its own on it (`tests.harness.fresh_schema`)."""
    async with engine_at(database_url) as engine:
        yield engine
