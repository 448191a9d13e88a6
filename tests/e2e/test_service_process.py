"""`aftersales run returns` as Kubernetes runs it: a real process, probed over HTTP, stopped
with SIGTERM in the middle of a backlog, restarted, and counted afterwards.

The acceptance test of graceful shutdown: nothing is lost and nothing is processed twice. One
fresh database; the session's broker. The returns service reads fixed topics with a fixed
consumer group, so the group's offsets are first moved past earlier tests' events, and every
count below keeps to this test's own order ids.

The database is reached through a small TCP proxy in this test, so a database outage can be
staged for the running process: /health/ready must turn 503 while /health/live stays 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from sqlalchemy.engine import make_url

from aftersales_dev.devenv import free_port, plain_dsn, skip_history, temporary_database
from aftersales_dev.events import encode
from shared.contracts import topics
from shared.contracts.ids import refund_id
from shared.db import lock_id
from shared.messaging.relay import CONTENT_TYPE
from shared.messaging.runtime import ensure_topics
from shared.migrations import upgrade
from shared.settings import Settings
from tests.topic_reader import TopicReader

from .returns.events import order_paid, outbound_signed, return_requested, return_signed

pytestmark = pytest.mark.timeout(180)

ORDERS = 250  # complete return flows: 4 input events and 1 refund each
GRACE = 30.0  # seconds a stopping process may take (the pods' grace period is 45)
GROUP = "aftersales-returns"  # the service's consumer group
INPUTS = (topics.ORDERS, topics.SIGNATURES, topics.RETURNS)
D = timedelta(days=1)


def aftersales() -> str:
    script = Path(sys.executable).with_name("aftersales")
    assert script.exists(), f"{script} not found: install the project (make install)"
    return str(script)


# --- a database of its own, reached through a proxy that can be cut -------------------------


class Proxy:
    """A TCP proxy to PostgreSQL. `cut()` drops every connection and refuses new ones (as a
    database outage looks from the service); `restore()` lets them through again."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = free_port()
        self.open = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.open = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.open = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[tuple[str, Proxy]]:
    """A fresh database migrated for returns; its URL through the proxy, and the proxy."""
    async with temporary_database(database_url, "proc") as created:
        await asyncio.to_thread(upgrade, "returns", created)
        url = make_url(created)
        proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
        await proxy.start()
        try:
            yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), proxy
        finally:
            await proxy.stop()


async def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


# --- the service process ---------------------------------------------------------------------


class ServiceProcess:
    """`aftersales run SERVICE --port N` with the settings an operator would give it."""

    def __init__(
        self, database_url: str, bootstrap: str, log_path: Path, service: str = "returns"
    ) -> None:
        self.service = service
        self.port = free_port()
        self.log_path = log_path
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AFTERSALES_", "KAFKA_", "OTEL_", "DATABASE_URL"))
        }
        self.env.update(
            DATABASE_URL=database_url,
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            KAFKA_IDEMPOTENCE="false",
            KAFKA_TOPIC_PARTITIONS="3",
            AFTERSALES_LOG_FORMAT="json",
        )
        self.process: asyncio.subprocess.Process | None = None
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    async def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                aftersales(),
                "run",
                self.service,
                "--port",
                str(self.port),
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(path)

    async def wait_ready(self, timeout: float = 30.0) -> float:
        """Poll /health/ready until 200; returns the seconds it took."""
        assert self.process is not None
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.returncode is not None:
                raise AssertionError(f"exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.TransportError):
                if (await self.get("/health/ready")).status_code == 200:
                    return time.monotonic() - started
            await asyncio.sleep(0.1)
        raise AssertionError(f"not ready within {timeout}s:\n{self.log()}")

    def sigterm(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    async def kill(self) -> None:
        """SIGKILL: no batch finished, nothing drained."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def terminate(
        self, timeout: float = GRACE, *, signal_it: bool = True
    ) -> tuple[int, float]:
        """SIGTERM (unless sent already); the exit code and the seconds it took to exit."""
        assert self.process is not None
        started = time.monotonic()
        if signal_it:
            self.sigterm()
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"still running {timeout}s after SIGTERM:\n{self.log()}") from None
        return code, time.monotonic() - started

    async def close(self) -> None:
        await self.http.aclose()
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_entries(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries


# --- the platform's side ---------------------------------------------------------------------


class Reader(TopicReader):
    """Reads the refund requests and decisions topics from the beginning, in the background."""

    def __init__(self, bootstrap: str, keys: set[str]) -> None:
        super().__init__(
            bootstrap, topics.REFUND_REQUESTS, topics.RETURN_DECISIONS, group="proc-reader"
        )
        self.keys = {k.encode() for k in keys}
        self.events: dict[str, list[dict[str, Any]]] = {
            topics.REFUND_REQUESTS: [],
            topics.RETURN_DECISIONS: [],
        }

    def receive(self, record: ConsumerRecord[Any, Any]) -> None:
        if record.key in self.keys:
            assert dict(record.headers)["content-type"] == CONTENT_TYPE.encode()
            event = json.loads(record.value)
            assert event["data"]["order_id"] == record.key.decode()
            self.events[record.topic].append(event)

    @property
    def refunds(self) -> list[dict[str, Any]]:
        return self.events[topics.REFUND_REQUESTS]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events[topics.RETURN_DECISIONS] if e["type"] == event_type]


async def until_async(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout}s")
        await asyncio.sleep(0.05)


async def until(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout}s")
        await asyncio.sleep(0.05)


async def send(producer: AIOKafkaProducer, topic: str, events: list[dict[str, Any]]) -> None:
    sent = [
        await producer.send(
            topic,
            encode(e),
            key=e["data"]["order_id"].encode(),
            headers=[("content-type", CONTENT_TYPE.encode())],
        )
        for e in events
    ]
    await asyncio.gather(*sent)


async def stream(
    producer: AIOKafkaProducer, topic: str, events: list[dict[str, Any]], per_second: float
) -> None:
    """The events in small chunks at a steady rate, so the service is busy for a while."""
    chunk = 10
    for i in range(0, len(events), chunk):
        await send(producer, topic, events[i : i + chunk])
        await asyncio.sleep(chunk / per_second)


# --- the test --------------------------------------------------------------------------------


async def test_sigterm_during_processing_loses_nothing_and_repeats_nothing(
    database: tuple[str, Proxy], kafka_bootstrap: str, tmp_path: Path
) -> None:
    url, proxy = database
    timings: dict[str, float] = {}
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap, database_url=url, kafka_topic_partitions=3
    )
    await ensure_topics(settings, (*INPUTS, topics.REFUND_REQUESTS, topics.RETURN_DECISIONS))
    await skip_history(kafka_bootstrap, GROUP, INPUTS)

    run = uuid.uuid4().hex[:8]
    flows = [(f"O-proc-{run}-{i:03d}", f"R-proc-{run}-{i:03d}") for i in range(ORDERS)]
    reader = Reader(kafka_bootstrap, {o for o, _ in flows})
    await reader.start()
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=False, acks="all", linger_ms=5
    )
    await producer.start()
    first = ServiceProcess(url, kafka_bootstrap, tmp_path / "first.log")
    second = ServiceProcess(url, kafka_bootstrap, tmp_path / "second.log")
    publishing: asyncio.Task[None] | None = None
    try:
        # 1. Start; the three endpoints over HTTP.
        await first.start()
        timings["first ready"] = await first.wait_ready()
        live = await first.get("/health/live")
        assert live.status_code == 200 and live.json() == {"status": "live"}
        ready = await first.get("/health/ready")
        assert ready.json() == {
            "status": "ready",
            "checks": {"returns": {"database": True, "broker": True}},
        }
        metrics = await first.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "# TYPE aftersales_events_total counter" in metrics.text
        assert "# TYPE faststream_received_messages_total counter" in metrics.text

        # 2. A backlog: every order paid, signed for and asked back (each return approved);
        # then the returned parcels signed for at the warehouse in a steady stream, each one
        # making a refund due. SIGTERM once the first refunds are out, mid-stream, and while a
        # batch is surely in flight: the test holds the advisory lock the consumer takes for
        # one order, so the batch with that order's signature waits inside its transaction.
        started = time.monotonic()
        now = datetime.now(UTC) - timedelta(minutes=1)
        await send(producer, topics.ORDERS, [order_paid(o, at=now - 4 * D) for o, _ in flows])
        await send(
            producer, topics.SIGNATURES, [outbound_signed(o, at=now - 2 * D) for o, _ in flows]
        )
        await send(producer, topics.RETURNS, [return_requested(o, r, at=now) for o, r in flows])
        await until(lambda: len(reader.of_type("return.approved")) >= ORDERS, 60, "approvals")
        timings["approvals"] = time.monotonic() - started
        held_order = flows[ORDERS // 5][0]
        holder = await asyncpg.connect(plain_dsn(url))
        await holder.execute("SELECT pg_advisory_lock($1)", lock_id(f"returns:{held_order}"))
        publishing = asyncio.create_task(
            stream(
                producer,
                topics.SIGNATURES,
                [return_signed(o, r, at=now) for o, r in flows],
                per_second=100,
            )
        )
        await until(lambda: len(reader.refunds) >= 1, 30, "the first refunds")
        timings["first refunds"] = time.monotonic() - started
        await until_async(
            lambda: holder.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            ),
            30,
            "a batch waiting for the held order",
        )
        first.sigterm()
        await asyncio.sleep(1.5)
        assert first.process is not None and first.process.returncode is None, (
            "exited with a batch in flight:\n" + first.log()
        )
        await holder.execute("SELECT pg_advisory_unlock($1)", lock_id(f"returns:{held_order}"))
        await holder.close()
        code, timings["first exit after the batch was let go"] = await first.terminate(
            signal_it=False
        )
        assert code == 0, first.log()
        refunds_by_first = len(reader.refunds)
        assert refunds_by_first < ORDERS, "the backlog was done before SIGTERM: proves nothing"
        messages = [(e.get("msg"), e.get("service")) for e in first.log_entries()]
        assert ("shutting down", None) in messages
        assert ("service stopped", "returns") in messages
        assert not [e for e in first.log_entries() if e.get("level") in ("error", "critical")]
        # What the first process committed, it also published before it exited.
        [[unpublished, refunds_committed]] = await query(
            url,
            "SELECT count(*) FILTER (WHERE published_at IS NULL),"
            " count(*) FILTER (WHERE event_type = 'refund.requested') FROM returns.outbox",
        )
        assert unpublished == 0
        await until(
            lambda: len(reader.refunds) >= refunds_committed, 15, "the first process's refunds"
        )
        # The batch in flight at SIGTERM was finished, committed and published.
        assert held_order in {e["data"]["order_id"] for e in reader.refunds}

        # 3. A second process finishes the backlog.
        await second.start()
        timings["second ready"] = await second.wait_ready()
        await publishing
        await until(lambda: len(reader.refunds) >= ORDERS, 60, f"{ORDERS} refunds")
        await until(lambda: len(reader.of_type("return.completed")) >= ORDERS, 15, "completions")
        timings["backlog done"] = time.monotonic() - started
        metrics = await second.get("/metrics")
        assert re.search(
            r'^aftersales_events_total\{outcome="processed",service="returns",'
            r'type="parcel.signed"\} [1-9]',
            metrics.text,
            re.MULTILINE,
        ), metrics.text
        assert "faststream_received_messages_total{" in metrics.text

        # 4. The database goes away: not ready (503), still live (200); and back. Only once
        # the relay has marked everything published: a batch sent but not yet marked when the
        # database goes is sent again afterwards (at least once, by design), which step 5
        # would count as a second refund.
        async def outbox_drained() -> bool:
            unpublished = "SELECT count(*) AS n FROM returns.outbox WHERE published_at IS NULL"
            return (await query(url, unpublished))[0]["n"] == 0

        await until_async(outbox_drained, 15, "every outbox row marked published")
        proxy.cut()
        not_ready = await second.get("/health/ready")
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"]["returns"] == {"database": False, "broker": True}
        assert (await second.get("/health/live")).status_code == 200
        proxy.restore()
        assert (await second.get("/health/ready")).status_code == 200

        code, timings["second stop"] = await second.terminate()
        assert code == 0, second.log()
        await asyncio.sleep(0.5)  # anything late would be on the topic by now
    finally:
        if publishing is not None and not publishing.done():
            publishing.cancel()
        await first.close()
        await second.close()
        await producer.stop()
        await reader.stop()

    # 5. Exactly one refund per order, on the topic and in the outbox; nothing processed twice.
    expected = {refund_id("return", r): o for o, r in flows}
    on_topic = [e["data"]["refund_id"] for e in reader.refunds]
    assert sorted(on_topic) == sorted(expected), "a refund missing or issued twice"
    for event in reader.refunds:
        assert event["data"]["order_id"] == expected[event["data"]["refund_id"]]
        assert event["data"]["amount"] == 9950
    completed = [e["data"]["return_id"] for e in reader.of_type("return.completed")]
    assert sorted(completed) == sorted(r for _, r in flows)
    rows = await query(
        url,
        "SELECT event_id, payload, published_at FROM returns.outbox"
        " WHERE event_type = 'refund.requested'",
    )
    in_outbox = sorted(json.loads(row["payload"])["data"]["refund_id"] for row in rows)
    assert in_outbox == sorted(expected)
    assert all(row["published_at"] is not None for row in rows)
    assert sorted(e["id"] for e in reader.refunds) == sorted(row["event_id"] for row in rows)
    [[inbox]] = await query(url, "SELECT count(*) FROM returns.inbox")
    assert inbox == 4 * ORDERS  # every input event applied once

    print(  # shown with -s / in the report
        f"\n{ORDERS} orders; refunds by the first process: {refunds_by_first}; "
        + ", ".join(f"{k}: {v:.1f}s" for k, v in timings.items())
    )
