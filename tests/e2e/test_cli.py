"""`aftersales migrate` as an operator runs it: a subprocess with DATABASE_URL set."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from aftersales.registry import SERVICES
from aftersales_dev.devenv import free_port, plain_dsn, temporary_database


@pytest.fixture
async def fresh_database(database_url: str) -> AsyncIterator[str]:
    """An empty database of its own (no schema at all)."""
    async with temporary_database(database_url, "cli") as url:
        yield url


def aftersales() -> list[str]:
    script = Path(sys.executable).with_name("aftersales")
    if script.exists():
        return [str(script)]
    found = shutil.which("aftersales")
    return [found] if found else [sys.executable, "-m", "aftersales.cli"]


async def migrate(database_url: str) -> tuple[int, str]:
    return await run_cli(database_url, "migrate")


async def run_cli(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AFTERSALES_", "KAFKA_"))}
    env["DATABASE_URL"] = database_url
    env["AFTERSALES_LOG_FORMAT"] = "text"
    env.update(extra)
    process = await asyncio.create_subprocess_exec(
        *aftersales(),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def schema_of(database_url: str) -> dict[str, tuple[set[str], list[str]]]:
    """Tables and alembic revision of every service schema."""
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        out = {}
        for service in SERVICES:
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", service
            )
            versions = await conn.fetch(f'SELECT version_num FROM "{service}".alembic_version')
            out[service] = (
                {row["tablename"] for row in tables},
                [row["version_num"] for row in versions],
            )
    finally:
        await conn.close()
    return out


async def test_migrate_creates_every_schema_and_is_idempotent(fresh_database: str):
    code, output = await migrate(fresh_database)
    assert code == 0, output
    schemas = await schema_of(fresh_database)
    for service, (tables, versions) in schemas.items():
        # The messaging tables every service keeps in its own schema, at one revision.
        assert {"inbox", "outbox", "timers", "alembic_version"} <= tables, service
        assert len(versions) == 1, service
    assert {"orders", "order_ledgers", "return_requests", "outbound_signatures"} <= schemas[
        "returns"
    ][0]

    code, output = await migrate(fresh_database)  # again: nothing to do, still a success
    assert code == 0, output
    assert await schema_of(fresh_database) == schemas


def with_password(url: str, password: str) -> str:
    scheme, _, rest = url.partition("://")
    credentials, _, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0] or "postgres"
    return f"{scheme}://{user}:{password}@{location}"


def host_port(url: str) -> str:
    location = url.partition("://")[2].rpartition("@")[2].split("/", 1)[0]
    return location if ":" in location else f"{location}:5432"


async def test_migrate_fails_on_a_database_that_does_not_exist(fresh_database: str):
    missing = fresh_database.rsplit("/", 1)[0] + "/no_such_database_here"
    code, output = await migrate(missing)
    assert code == 2, output
    assert output.startswith(f"aftersales: cannot reach the database at {host_port(missing)}: ")
    assert 'database "no_such_database_here" does not exist' in output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize(
    "command", [["migrate"], ["run", "returns"], ["report"], ["notifier", "rotate-keys"]]
)
async def test_an_unreachable_database_is_one_clear_line_without_the_password(
    fresh_database: str, command: list[str]
):
    # A port nothing listens on: the server is down.
    down = with_password(fresh_database, "s3cret-pw").replace(
        host_port(fresh_database), "127.0.0.1:1", 1
    )
    code, output = await run_cli(down, *command, env={"AFTERSALES_STARTUP_WAIT_SECONDS": "1"})
    assert code == 2, output
    *waited, last = output.strip().splitlines()
    assert last.startswith("aftersales: cannot reach the database at 127.0.0.1:1: "), output
    assert "Traceback" not in output and "s3cret-pw" not in output, output
    if command[0] in ("migrate", "run"):  # what a pod starts with: a database not up yet waited for
        assert waited and all("the database cannot be reached yet" in line for line in waited)
    else:  # an operator's command answers at once
        assert not waited, output


async def test_outbox_list_and_retry_as_an_operator_runs_them(fresh_database: str):
    code, output = await migrate(fresh_database)
    assert code == 0, output
    conn = await asyncpg.connect(plain_dsn(fresh_database))
    try:
        parked_id = await conn.fetchval(
            "INSERT INTO complaints.outbox (event_id, event_type, topic, key, payload,"
            " parked_at, parked_error) VALUES ('e-big', 'refund.requested', 'aftersales.ledger',"
            " 'o-1', $1, now(), 'MessageSizeTooLargeError: too large') RETURNING id",
            b"x" * 2000,
        )
        await conn.execute(
            "INSERT INTO complaints.outbox (event_id, event_type, topic, key, payload)"
            " VALUES ('e-after', 'coupon.granted', 'aftersales.coupons', 'o-1', $1)",
            b"{}",
        )
        code, output = await run_cli(fresh_database, "outbox", "list", "complaints")
        assert code == 0, output
        assert f"{parked_id}  " in output and "refund.requested -> aftersales.ledger" in output
        assert "key=o-1  2000 bytes  1 held behind  MessageSizeTooLargeError" in output
        assert "1 parked outbox event(s) in complaints" in output

        code, output = await run_cli(
            fresh_database, "outbox", "retry", "complaints", "--id", str(parked_id + 99)
        )
        assert code == 1
        assert (
            f"aftersales: no parked outbox event with id {parked_id + 99} in complaints" in output
        )

        code, output = await run_cli(fresh_database, "outbox", "retry", "complaints", "--all")
        assert code == 0, output
        assert "1 parked outbox event(s) re-queued in complaints" in output
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM complaints.outbox WHERE parked_at IS NOT NULL"
            )
            == 0
        )
    finally:
        await conn.close()


async def test_purge_as_an_operator_runs_it(fresh_database: str):
    code, output = await migrate(fresh_database)
    assert code == 0, output
    conn = await asyncpg.connect(plain_dsn(fresh_database))
    try:
        for return_id, age in (("R-old", "200 days"), ("R-recent", "100 days")):
            await conn.execute(
                "INSERT INTO returns.return_requests (return_id, order_id, status, state,"
                f" created_at, updated_at) VALUES ($1, 'O-1', 'approved', '{{}}',"
                f" now() - interval '{age}', now() - interval '{age}')",
                return_id,
            )
        await conn.execute(
            "INSERT INTO returns.inbox (event_id, event_type, topic, received_at)"
            " VALUES ('e-old', 'order.paid', 'orders', now() - interval '40 days'),"
            " ('e-new', 'order.paid', 'orders', now())"
        )
        code, output = await run_cli(fresh_database, "purge", "returns", "--dry-run")
        assert code == 0, output
        expected = "inbox 1, timers 0, outbox 0, journal 0, return_requests 1"
        assert f"returns: would delete {expected}" in output
        assert await conn.fetchval("SELECT count(*) FROM returns.return_requests") == 2

        code, output = await run_cli(fresh_database, "purge")
        assert code == 0, output
        assert f"returns: deleted {expected}" in output
        assert "notifier: deleted inbox 0, timers 0, outbox 0, journal 0, deliveries 0" in output
        left = await conn.fetch("SELECT return_id FROM returns.return_requests")
        assert [r["return_id"] for r in left] == ["R-recent"]

        # Case records are kept at least 6 months: a shorter period is refused.
        code, output = await run_cli(
            fresh_database, "purge", env={"AFTERSALES_RETENTION_CASE_DAYS": "30"}
        )
        assert code == 2
        assert "aftersales_retention_case_days" in output.lower()
        assert "Traceback" not in output
    finally:
        await conn.close()


def one_line(output: str) -> str:
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    return output.strip()


async def test_version_names_the_installed_package(fresh_database: str):
    from importlib.metadata import version

    code, output = await run_cli(fresh_database, "--version")
    assert code == 0, output
    assert one_line(output) == f"aftersales {version('aftersales')}"


@pytest.mark.parametrize(
    "command",
    [["topics"], ["dlq", "list", "returns"], ["dlq", "replay", "returns"], ["run", "returns"]],
)
async def test_an_unreachable_broker_is_one_line_saying_what_to_check(
    fresh_database: str, command: list[str]
):
    if command[0] == "run":  # past the database, schema and port checks, to the broker
        code, output = await migrate(fresh_database)
        assert code == 0, output
        command = [*command, "--port", str(free_port())]
    down = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "AFTERSALES_LOG_FORMAT": "json",
        "AFTERSALES_STARTUP_WAIT_SECONDS": "1",
    }
    code, output = await run_cli(fresh_database, *command, env=down)
    assert code == 2, output
    *waited, line = output.strip().splitlines()
    assert "Traceback" not in output, output
    assert line.startswith("aftersales: cannot reach the Kafka broker at 127.0.0.1:1: "), line
    assert "KAFKA_BOOTSTRAP_SERVERS" in line
    if command[0] == "run":  # a broker not up yet is waited for, then given up on
        assert waited and all("the Kafka broker cannot be reached yet" in w for w in waited)
    else:
        assert not waited, output


async def run_refunds_before_its_broker(
    database_url: str, broker_port: int, *, wait_s: int
) -> asyncio.subprocess.Process:
    """`aftersales run refunds` (migrated) against a broker port nothing listens on yet."""
    code, output = await migrate(database_url)
    assert code == 0, output
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AFTERSALES_", "KAFKA_"))}
    env.update(
        DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{broker_port}",
        KAFKA_IDEMPOTENCE="false",
        AFTERSALES_LOG_FORMAT="text",
        AFTERSALES_STARTUP_WAIT_SECONDS=str(wait_s),
    )
    return await asyncio.create_subprocess_exec(
        *aftersales(),
        "run",
        "refunds",
        "--port",
        str(free_port()),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_run_waits_for_a_broker_that_starts_after_it(fresh_database: str):
    """A service started beside its broker (both pods at once, a broker restarting) waits
    for it instead of exiting, then serves and stops cleanly."""
    from aftersales_dev.broker import LocalBroker

    broker_port = free_port()
    process = await run_refunds_before_its_broker(fresh_database, broker_port, wait_s=60)
    assert process.stdout is not None
    lines: list[str] = []

    async def read_until(text: str) -> None:
        assert process.stdout is not None
        while text not in (line := (await process.stdout.readline()).decode()):
            assert line, "".join(lines)  # the process ended first
            lines.append(line)

    broker = LocalBroker(port=broker_port)
    try:
        await asyncio.wait_for(read_until("the Kafka broker cannot be reached yet"), 60)
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(read_until("serving"), 90)
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, "".join(lines) + rest.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await asyncio.to_thread(broker.stop)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AFTERSALES_LOG_LEVEL", "loud", "aftersales: AFTERSALES_LOG_LEVEL: 'loud' is not a log"),
        ("AFTERSALES_LOG_FORMAT", "xml", "aftersales: AFTERSALES_LOG_FORMAT: 'xml' is not a log"),
    ],
)
async def test_a_bad_log_setting_is_one_line(
    fresh_database: str, variable: str, value: str, expected: str
):
    code, output = await run_cli(fresh_database, "policy", env={variable: value})
    assert code == 2, output
    assert one_line(output).startswith(expected)


async def test_the_log_format_is_case_insensitive(fresh_database: str):
    code, output = await run_cli(
        fresh_database,
        "migrate",
        env={"AFTERSALES_LOG_FORMAT": "JSON", "AFTERSALES_LOG_LEVEL": "info"},
    )
    assert code == 0, output


async def test_bad_settings_are_one_line_each_naming_the_variable(fresh_database: str):
    bad = {"KAFKA_TOPIC_PARTITIONS": "many", "AFTERSALES_HTTP_PORT": "99999"}
    code, output = await run_cli(fresh_database, "topics", env=bad)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert "Traceback" not in output and len(lines) == 2, output
    assert lines[0].startswith("aftersales: KAFKA_TOPIC_PARTITIONS: ")
    assert lines[1].startswith("aftersales: AFTERSALES_HTTP_PORT: ")
    assert "many" not in output and "99999" not in output


@pytest.mark.parametrize(("action", "says"), [("list", "origin"), ("replay", "original topic")])
async def test_dlq_commands_explain_themselves(fresh_database: str, action: str, says: str):
    code, output = await run_cli(fresh_database, "dlq", "--help")
    assert code == 0 and f"{action}  " in output and "dead" in output.split(action, 1)[1], output
    code, output = await run_cli(fresh_database, "dlq", action, "--help")
    assert code == 0, output
    assert "--reason" in output and "--limit" in output and says in output
    assert "aftersales.deadletter.SERVICE" in output


@pytest.mark.parametrize(
    ("args", "schema"),
    [
        (["report"], "followup"),
        (["report", "refunds"], "refunds"),
        (["refunds", "O-1"], "refunds"),
        (["outbox", "list", "returns"], "returns"),
        (["purge", "complaints"], "complaints"),
        (["notifier", "erase", "C-1"], "notifier"),
    ],
)
async def test_a_command_on_a_schema_not_migrated_is_one_line_saying_to_migrate(
    fresh_database: str, args: list[str], schema: str
):
    code, output = await run_cli(fresh_database, *args)
    assert code == 2
    assert output.strip() == (
        f"aftersales: the {schema} schema is at migration (none) but this code needs "
        f"{output.split('needs ')[1].split(':')[0]}: run `aftersales migrate` first"
    ), output


async def test_bad_arguments_are_one_line_saying_what_to_write(fresh_database: str, tmp_path):
    code, output = await run_cli(fresh_database, "report", "--since", "last week")
    assert code == 2
    assert output.splitlines()[-1] == (
        "aftersales report: error: argument --since: 'last week' is not a date: write YYYY-MM-DD"
    )
    (tmp_path / "a-file").write_text("")
    inside_a_file = tmp_path / "a-file" / "docs"
    code, output = await run_cli(fresh_database, "asyncapi", "--dir", str(inside_a_file))
    assert code == 2
    assert output.strip() == f"aftersales: Not a directory: {inside_a_file}"


async def test_the_help_documents_the_exit_codes(fresh_database: str):
    code, output = await run_cli(fresh_database, "--help")
    assert code == 0
    assert all(f"{n} " in output for n in ("0", "1", "2", "130")) and "exit codes" in output
    code, output = await run_cli(fresh_database, "send", "--help")
    assert code == 0 and "exit codes: 0 sent; 1 the broker refused" in " ".join(output.split())


async def test_run_on_a_port_that_is_taken_is_one_line_before_anything_starts(
    fresh_database: str,
):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, output = await run_cli(
            fresh_database,
            "run",
            "returns",
            "--port",
            str(port),
            env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        )
    assert code == 2
    assert output.strip() == (
        f"aftersales: port {port} for health and metrics is taken (Address already in use): "
        "stop what holds it, or choose another with --port or AFTERSALES_HTTP_PORT"
    )


async def test_a_service_waiting_for_its_broker_stops_at_once_on_sigterm(fresh_database: str):
    process = await run_refunds_before_its_broker(fresh_database, 1, wait_s=120)
    assert process.stdout is not None
    try:
        while "the Kafka broker cannot be reached yet" not in (
            line := (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        ):
            assert line, "ended before waiting for the broker"
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), 10)  # not the 120 s wait
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, rest.decode()
    assert "Traceback" not in rest.decode()
