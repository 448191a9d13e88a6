"""Alembic, one environment per service, each confined to its own schema."""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config


def migrations_of(service: str) -> Path:
    """A service's alembic directory: `migrations/` beside the package that the distribution
    registers for it (entry points `aftersales.migrations`, pyproject.toml), so that the library
    names no service. Only that package is imported: the migration Job runs every service's
    migrations from one image, which lacks the other services' extras."""
    found = entry_points(group="aftersales.migrations", name=service)
    if not found:
        raise ValueError(f"no migrations registered for service {service!r}")
    package = next(iter(found)).load()
    assert package.__file__ is not None
    return Path(package.__file__).parent / "migrations"


def alembic_config(service: str, database_url: str) -> Config:
    location = migrations_of(service)
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["service"] = service
    return config


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, database_url), revision)


class SchemaNotCurrent(RuntimeError):
    """The database schema is not at the migration head of this code."""


def head(service: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(service, "postgresql://")).get_current_head()


def known_revisions(service: str) -> set[str]:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config(service, "postgresql://"))
    return {script.revision for script in scripts.walk_revisions()}


async def check_current(service: str, database_url: str) -> None:
    """Refuse to run a service whose schema lacks migrations its code needs.

    A schema at a revision this code does not know is newer (the migration Job of a rollout ran
    first, and migrations only add): the old pods keep running until they are replaced.
    """
    from sqlalchemy.exc import ProgrammingError
    from sqlalchemy.ext.asyncio import create_async_engine

    expected = head(service)
    engine = create_async_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            current = await conn.scalar(
                text(f'SELECT version_num FROM "{service}".alembic_version')  # noqa: S608 (a service name from SERVICES, not input)
            )
    except ProgrammingError:
        current = None
    finally:
        await engine.dispose()
    if current == expected:
        return
    if current is not None and current not in known_revisions(service):
        logging.getLogger("aftersales.migrations").warning(
            "schema is newer than this code (a rollout in progress?)",
            extra={"service": service, "schema_revision": current, "code_head": expected},
        )
        return
    raise SchemaNotCurrent(
        f"the {service} schema is at migration {current or '(none)'} but this code needs "
        f"{expected}: run `aftersales migrate` first"
    )


def run_env(metadata: MetaData) -> None:
    """The body of every service's migrations/env.py."""
    schema = metadata.schema
    assert schema is not None, "a service's metadata must name its schema"

    def include_name(name: str | None, type_: str, parent_names: object) -> bool:
        return type_ != "schema" or name == schema

    # Online and offline (SQL script) runs alike: the service's schema, its own version table.
    def migrate(**options: Any) -> None:
        context.configure(
            target_metadata=metadata, version_table_schema=schema, include_schemas=True, **options
        )
        with context.begin_transaction():
            context.run_migrations()

    def run(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        migrate(connection=connection, include_name=include_name, compare_type=True)

    async def run_async() -> None:
        engine = async_engine_from_config(
            context.config.get_section(context.config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
        async with engine.connect() as connection:
            await connection.run_sync(run)
            await connection.commit()
        await engine.dispose()

    if context.is_offline_mode():
        migrate(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True)
    else:
        asyncio.run(run_async())


# --- steps every service's migrations share (the messaging tables are the same everywhere) ---


def add_outbox_parking(schema: str) -> None:
    """Migration 0002 of every service: outbox rows can be parked (`parked_at`, `parked_error`),
    with an index of the parked rows the relay looks up to hold their keys back."""
    import sqlalchemy as sa
    from alembic import op

    op.add_column(
        "outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True), schema=schema
    )
    op.add_column("outbox", sa.Column("parked_error", sa.Text(), nullable=True), schema=schema)
    op.create_index(
        "ix_outbox_parked",
        "outbox",
        ["key", "id"],
        unique=False,
        schema=schema,
        postgresql_where=sa.text("parked_at IS NOT NULL AND published_at IS NULL"),
    )


def drop_outbox_parking(schema: str) -> None:
    from alembic import op

    op.drop_index("ix_outbox_parked", table_name="outbox", schema=schema)
    op.drop_column("outbox", "parked_error", schema=schema)
    op.drop_column("outbox", "parked_at", schema=schema)


def add_journal(schema: str) -> None:
    """Migration 0003 of every service: the journal of events taken in and queued out, by case
    (`shared.messaging.journal`), which the read API's timelines and KPIs come from."""
    import sqlalchemy as sa
    from alembic import op
    from sqlalchemy.dialects.postgresql import JSONB

    op.create_table(
        "journal",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("customer_id", sa.Text(), nullable=True),
        sa.Column("case_type", sa.Text(), nullable=True),
        sa.Column("case_id", sa.Text(), nullable=True),
        sa.Column("detail", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=schema,
    )
    for column in ("order_id", "case_id", "customer_id", "occurred_at"):
        op.create_index(f"ix_journal_{column}", "journal", [column], schema=schema)


def drop_journal(schema: str) -> None:
    from alembic import op

    op.drop_table("journal", schema=schema)


def add_timer_retries(schema: str) -> None:
    """Migration 0004 of every service (0005 of the notifier's): a failed timer waits for its
    retry in `retry_at`, its `due_at` left as it was set (the instant its handler knows it by).
    Timers retried before keep the instant of their retry as their due time."""
    import sqlalchemy as sa
    from alembic import op

    op.add_column(
        "timers", sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True), schema=schema
    )


def drop_timer_retries(schema: str) -> None:
    from alembic import op

    op.drop_column("timers", "retry_at", schema=schema)
