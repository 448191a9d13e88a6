"""Fixtures of the notifier integration tests.

* a fresh copy of the `notifier` schema per test (the service's own tables, mapped to a
  random schema name with SQLAlchemy's schema_translate_map), on the session's database;
* a real HTTP gateway (``http.server`` in a thread) that records every request and answers
  with scripted status codes;
* a real SMTP server (aiosmtpd on 127.0.0.1, a free port) that records every message and can
  refuse recipients temporarily;
* a `Harness`: the shared service harness (tests/harness.py) over the service's real
  EventProcessor and TimerScheduler, wired as the service wires them, with a ManualClock.

After every test the harness scans every outbox payload and every captured log record for the
buyers' phone numbers, e-mail addresses and names: none may appear in clear.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aftersales_dev.devenv import free_port
from services.notifier import tables
from services.notifier.bootstrap import definition
from services.notifier.channels import Channel, channels_from_settings
from services.notifier.handlers import NotifierHandlers
from shared.clock import ManualClock
from shared.contracts import dead_letter_topic
from shared.crypto import FieldCipher, cipher_from_env
from shared.policy import Policy
from shared.settings import Settings
from tests.harness import ServiceHarness, fresh_schema, no_notifier_environment
from tests.integration.notifier.kit import (
    ACK,
    EMAIL,
    EMAIL_2,
    KEY,
    NAME,
    NAME_2,
    PERSONAL,
    PHONE,
    PHONE_2,
    T0,
    coupon,
    decision,
    envelope,
    order_paid,
    refund,
    requested,
    uid,
)


@pytest.fixture(autouse=True)
def _no_notifier_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    no_notifier_environment(monkeypatch)


# --- the HTTP gateway ---------------------------------------------------------------------


@dataclass
class GatewayRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    raw: bytes = b""


@dataclass
class Gateway:
    """A real HTTP server: POST /<channel> records the JSON and answers the next scripted code."""

    url: str = ""
    requests: list[GatewayRequest] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses, then 200
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str, *statuses: int) -> None:
        with self.lock:
            self.script[path] = list(statuses)

    def received(self, path: str | None = None, status: int | None = None) -> list[GatewayRequest]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (path is None or r.path == path) and (status is None or r.status == status)
            ]


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    state = Gateway()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if state.delay:
                time.sleep(state.delay)
            with state.lock:
                pending = state.script.get(self.path) or []
                status = pending.pop(0) if pending else 200
                state.requests.append(
                    GatewayRequest(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        json.loads(raw),
                        status,
                        raw,
                    )
                )
            try:
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass

    server = Server(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# --- the SMTP server ------------------------------------------------------------------------


@dataclass
class Mailbox:
    url: str = ""
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse_rcpt: list[str] = field(default_factory=list)  # SMTP replies for the next RCPTs

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.content, policy=email_policy.default),
            )
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    box.url = f"smtp://127.0.0.1:{port}?from=aftersales@shop.example"
    yield box
    controller.stop()


# --- the database -----------------------------------------------------------------------------


@pytest.fixture
async def engine(database_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The `notifier` schema mapped to a fresh schema of this test."""
    async with fresh_schema(database_engine, tables.metadata.schema, tables.metadata) as mapped:
        yield mapped


# --- the harness ------------------------------------------------------------------------------


class Harness(ServiceHarness):
    """The notifier as its bootstrap wires it (its handlers, the erasure's, lock keys, timer
    concurrency) on the shared service harness, with a ManualClock; an event consumed goes
    on topic `in` unless told, with key `k`."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        settings: Settings,
        policy: Policy | None = None,
        channels: dict[str, Channel] | None = None,
        cipher: FieldCipher | None = None,
    ) -> None:
        policy = policy or Policy()
        self.cipher = cipher or cipher_from_env(settings.aftersales_encryption_key or KEY)
        self.handlers = NotifierHandlers(
            policy,
            self.cipher,
            channels if channels is not None else channels_from_settings(settings),
        )
        super().__init__(
            lambda _policy, _clock: definition(self.handlers),
            engine,
            ManualClock(T0),
            policy,
            key_of=lambda _event: "k",
            topic_of=lambda _event: "in",
        )

    async def consume(self, *events: dict[str, Any] | bytes, topic: str = "in") -> None:
        """One consumer batch (one transaction), like a fetch from the broker."""
        await self.feed(*events, topic=topic)

    async def fire(self) -> int:
        """Fire every due timer (the scheduler's loop, at the clock's current instant)."""
        return await self.fire_due()

    async def advance(self, **delta: float) -> int:
        self.clock.advance(timedelta(**delta))
        return await self.fire()

    # --- read-back ---

    async def rows(self, table: Any, *where: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(table).where(*where))
            return [dict(row) for row in result.mappings()]

    async def delivery(self, delivery_id: str) -> dict[str, Any]:
        rows = await self.rows(tables.deliveries, tables.deliveries.c.delivery_id == delivery_id)
        assert rows, f"no delivery {delivery_id}"
        return rows[0]

    async def outbox(self, event_type: str | None = None) -> list[dict[str, Any]]:
        t = tables.messaging.outbox
        async with self.engine.connect() as conn:
            result = await conn.execute(select(t.c.payload, t.c.topic).order_by(t.c.id))
            events = [json.loads(row.payload) | {"_topic": row.topic} for row in result]
        return [e for e in events if event_type is None or e["type"] == event_type]

    async def dead_letters_topic(self) -> list[dict[str, Any]]:
        return [
            e
            for e in await self.outbox("event.deadlettered")
            if e["_topic"] == dead_letter_topic("notifier")
        ]

    async def raw_outbox_text(self) -> str:
        t = tables.messaging.outbox
        async with self.engine.connect() as conn:
            payloads = (await conn.execute(select(t.c.payload))).scalars().all()
        return "\n".join(bytes(p).decode("utf-8") for p in payloads)


def settings_for(**kw: Any) -> Settings:
    base: dict[str, Any] = {"aftersales_encryption_key": KEY}
    base.update(kw)
    return Settings(**base)


# Loggers of the test's own fake servers (aiosmtpd logs the envelope it receives).
_TEST_INFRA_LOGGERS = ("mail.log",)


def assert_no_personal_data(text_: str, where: str) -> None:
    for value in PERSONAL:
        assert value not in text_, f"personal data {value[:3]}... found in {where}"


def scan_logs(caplog: pytest.LogCaptureFixture) -> int:
    """Scan what every phase of the test logged; returns how many records were scanned."""
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    for record in records:
        if record.name.startswith(_TEST_INFRA_LOGGERS):
            continue
        parts = [record.getMessage()]
        parts += [str(v) for k, v in vars(record).items() if k not in ("msg", "args")]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        assert_no_personal_data(" ".join(parts), f"log record {record.name}: {record.msg!r}")
    return len(records)


@pytest.fixture
def caplog_all(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
async def make_harness(
    engine: AsyncEngine, caplog_all: pytest.LogCaptureFixture
) -> AsyncIterator[Any]:
    made: list[Harness] = []

    def make(**kw: Any) -> Harness:
        settings = kw.pop("settings", None) or settings_for()
        harness = Harness(engine, settings=settings, **kw)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.handlers.close()
    # Every test: no phone number, e-mail address or name in any event or log line.
    for harness in made:
        assert_no_personal_data(await harness.raw_outbox_text(), "the outbox")
    assert scan_logs(caplog_all) > 0


@pytest.fixture
def sms_harness(make_harness: Any, gateway: Gateway) -> Harness:
    """A harness whose text messages go to the test gateway."""
    return make_harness(settings=settings_for(aftersales_sms_gateway_url=f"{gateway.url}/sms"))


@pytest.fixture
def kit() -> Any:
    """The builders and constants of kit.py, for the test modules (they cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        T0=T0,
        KEY=KEY,
        PHONE=PHONE,
        EMAIL=EMAIL,
        NAME=NAME,
        PHONE_2=PHONE_2,
        EMAIL_2=EMAIL_2,
        NAME_2=NAME_2,
        ACK=ACK,
        uid=uid,
        envelope=envelope,
        order_paid=order_paid,
        requested=requested,
        decision=decision,
        refund=refund,
        coupon=coupon,
        settings=settings_for,
    )
