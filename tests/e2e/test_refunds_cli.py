"""`aftersales refunds ORDER_ID`, `aftersales report refunds` and `aftersales run` with several
services, as an operator runs them: subprocesses against a migrated database."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from aftersales_dev.devenv import temporary_database
from services.refunds.domain.model import OrderLedger
from services.refunds.repository import RefundsRepository
from shared.db import create_engine, session_factory
from tests.unit.refunds import T0, facts, request

from .test_cli import migrate, run_cli


@pytest.fixture(scope="module")
async def ledger_database(database_url: str) -> AsyncIterator[str]:
    async with temporary_database(database_url, "cli_refunds") as url:
        code, output = await migrate(url)
        assert code == 0, output
        ledger = OrderLedger("o-cli")
        paid = facts([("l1", 1, 25000)], 1200, [("balance", 6200), ("card", 20000)], "o-cli")
        ledger.record_paid(paid, "balance", T0)
        full = [("goods", 25000), ("outbound_shipping", 1200)]
        complaint = request("cp-1", full, case_type="complaint", order_id="o-cli")
        ledger.request(complaint, "balance", T0)
        ledger.request(request("rt-1", full, order_id="o-cli"), "balance", T0 + timedelta(hours=1))
        engine = create_engine(url, pool_size=1)
        async with session_factory(engine)() as session, session.begin():
            await RefundsRepository(session).save(ledger, T0)
        await engine.dispose()
        yield url


async def test_the_ledger_of_an_order_shows_what_was_paid_given_and_cut(ledger_database: str):
    code, output = await run_cli(ledger_database, "refunds", "o-cli")
    assert code == 0, output
    assert "paid (CNY, every amount in minor units): goods 25000, outbound shipping 1200" in output
    assert "balance: charged 6200, refunded 6200" in output
    assert "card: charged 20000, refunded 20000" in output
    assert "asked 26200, issued 0; settled" in output
    assert "cut 26200: goods and outbound shipping of this order were already refunded" in output
    assert "already_refunded -26200" in output


async def test_an_unknown_order_is_one_clear_line(ledger_database: str):
    code, output = await run_cli(ledger_database, "refunds", "o-never")
    assert code == 2
    assert output.strip() == "aftersales: the refund ledger knows no order 'o-never'"


async def test_the_refund_report_per_day_and_case_type(ledger_database: str):
    code, output = await run_cli(
        ledger_database,
        "report",
        "refunds",
        "--since",
        "2026-05-01",
        "--until",
        "2026-05-01",
        "--format",
        "json",
    )
    assert code == 0, output
    rows = {row["case_type"]: row for row in json.loads(output)}
    assert rows["complaint"]["issued"] == 26200 and rows["complaint"]["cut"] == 0
    assert rows["return"]["issued"] == 0 and rows["return"]["cut"] == 26200
    assert rows["return"]["settled"] == 1 and rows["return"]["on_time_by_settlement"] == 1
    code, output = await run_cli(ledger_database, "report", "refunds", "--format", "csv")
    assert code == 0, output
    parsed = list(csv.DictReader(io.StringIO(output)))
    assert [row["case_type"] for row in parsed] == ["complaint", "return"]
    code, output = await run_cli(ledger_database, "report", "refunds", "--since", "2026-06-01")
    assert (code, output.strip()) == (0, "no refunds issued in the period")
    code, output = await run_cli(
        ledger_database, "report", "refunds", "--since", "2026-06-02", "--until", "2026-06-01"
    )
    assert (code, output.strip()) == (2, "aftersales: --since must not be after --until")


async def test_run_names_several_services_and_refuses_an_unknown_one(ledger_database: str):
    code, output = await run_cli(ledger_database, "run", "returns", "refundz")
    assert code == 2
    assert output.strip().startswith("aftersales: unknown service 'refundz'; known: ")
    assert "refunds" in output
