"""Services refuse a schema that lacks their migrations, and tolerate a newer one (rollouts)."""

import asyncio

import asyncpg
import pytest
from alembic import command

from aftersales.registry import SERVICES
from aftersales_dev.devenv import plain_dsn, temporary_database
from shared.migrations import SchemaNotCurrent, alembic_config, check_current, head, upgrade


@pytest.fixture
async def fresh_database(database_url):
    async with temporary_database(database_url, "mig") as url:
        yield url, plain_dsn(url)


async def test_a_schema_without_migrations_is_refused_with_the_command_to_run(fresh_database):
    url, _ = fresh_database
    with pytest.raises(SchemaNotCurrent, match="run `aftersales migrate` first"):
        await check_current("returns", url)


async def test_the_migrated_schema_and_a_newer_one_are_accepted(fresh_database):
    url, plain = fresh_database
    await asyncio.to_thread(upgrade, "returns", url)
    await check_current("returns", url)
    # The migration Job of the next release ran: old pods must keep starting until replaced.
    conn = await asyncpg.connect(plain)
    await conn.execute("UPDATE returns.alembic_version SET version_num = 'f00dcafe'")
    await conn.close()
    await check_current("returns", url)
    assert head("returns") != "f00dcafe"


@pytest.mark.parametrize("service", list(SERVICES))
async def test_every_service_migrates_to_what_its_tables_declare(fresh_database, service):
    # The shared messaging tables (outbox parking, 0002) reach every service's schema.
    url, _ = fresh_database
    await asyncio.to_thread(upgrade, service, url)
    await asyncio.to_thread(command.check, alembic_config(service, url))
    await asyncio.to_thread(command.downgrade, alembic_config(service, url), "0001")
    await asyncio.to_thread(upgrade, service, url)
