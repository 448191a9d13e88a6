"""The notifier's migration and `aftersales notifier rotate-keys`, in a scratch database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select

from aftersales_dev.devenv import temporary_database
from services.notifier import tables
from services.notifier.contacts import Contact, ContactBook
from services.notifier.keys import rotate
from shared.crypto import cipher_from_env, generate_key
from shared.db import create_engine, session_factory
from shared.migrations import alembic_config, upgrade
from shared.settings import Settings


@pytest.fixture
async def scratch_url(database_url: str) -> AsyncIterator[str]:
    async with temporary_database(database_url, "notifier_scratch") as url:
        yield url


async def test_migration_matches_the_tables_and_rotate_keys(
    scratch_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await asyncio.to_thread(upgrade, "notifier", scratch_url)
    # The initial revision is what autogenerate makes of tables.py: nothing left to generate.
    await asyncio.to_thread(command.check, alembic_config("notifier", scratch_url))

    old, new = generate_key(), generate_key()
    engine = create_engine(scratch_url, pool_size=2)
    try:
        sessions = session_factory(engine)
        now = datetime.now(UTC)
        async with sessions() as session, session.begin():
            book = ContactBook(session, cipher_from_env(f"old:{old}"))
            for i in range(3):
                contact = Contact(f"C{i}", "sms", name="张三", phone="13812345678")
                await book.save(contact, order_id=f"O{i}", paid_at=now, now=now)
        settings = Settings(
            database_url=scratch_url, aftersales_encryption_key=f"new:{new},old:{old}"
        )
        assert await rotate(settings) == 0
        assert "3 contact(s) re-encrypted with key 'new'" in capsys.readouterr().out
        async with sessions() as session:
            rows: list[Any] = (await session.execute(select(tables.contacts))).mappings().all()
            assert {r["key_id"] for r in rows} == {"new"}
            only_new = ContactBook(session, cipher_from_env(f"new:{new}"))
            assert (await only_new.get("C1", now=now)).phone == "13812345678"  # type: ignore[union-attr]
        assert await rotate(settings) == 0
        assert "0 contact(s) re-encrypted" in capsys.readouterr().out
    finally:
        await engine.dispose()
