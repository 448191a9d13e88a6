"""Settings errors that never show a password, the consumer's stuck-work signals (the gauge
`aftersales_consecutive_failed_batches` and /health/ready degraded) and the session limits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import DBAPIError

from aftersales.http import health_app
from shared.db import SessionLimits
from shared.messaging.runtime import ConsumerHealth
from shared.settings import Settings, load_settings, masked_url


@pytest.mark.parametrize(
    "url",
    ["mysql://bob:s3cret@db.example:3306/shop", "sqlite+aiosqlite://bob:s3cret@/x"],
)
def test_a_wrong_database_url_is_one_line_with_the_password_masked(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ValueError) as info:
        load_settings()
    message = str(info.value)
    assert "s3cret" not in message and "\n" not in message
    assert message.startswith("invalid settings: DATABASE_URL: must be a postgresql+asyncpg://")
    assert "bob:***@" in message


def test_masked_url_keeps_everything_but_the_password() -> None:
    assert masked_url("postgresql://u:p@h:5/d?x=1") == "postgresql://u:***@h:5/d?x=1"
    assert masked_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_every_session_gets_the_limits_of_the_settings() -> None:
    settings = Settings(database_statement_timeout_ms=1234, database_lock_timeout_ms=0)
    server = settings.database_limits().server_settings()
    assert server["statement_timeout"] == "1234" and server["lock_timeout"] == "0"
    assert SessionLimits().server_settings()["idle_in_transaction_session_timeout"] == "120000"
    assert {"tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count"} <= set(server)


def test_max_poll_interval_comes_from_the_environment_and_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAFKA_MAX_POLL_INTERVAL_MS", raising=False)
    assert Settings().kafka_max_poll_interval_ms == 300_000
    monkeypatch.setenv("KAFKA_MAX_POLL_INTERVAL_MS", "60000")
    assert load_settings().kafka_max_poll_interval_ms == 60_000
    monkeypatch.setenv("KAFKA_MAX_POLL_INTERVAL_MS", "10")
    with pytest.raises(ValueError) as info:
        load_settings()
    assert str(info.value).startswith("invalid settings: KAFKA_MAX_POLL_INTERVAL_MS:")


def test_inbox_ids_are_kept_at_least_as_long_as_the_topics_keep_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A purge must not forget an event id while its record may still be delivered again (the
    topics keep records 7 days by default): the event would be applied twice."""
    monkeypatch.setenv("AFTERSALES_RETENTION_INBOX_DAYS", "7")
    assert load_settings().aftersales_retention_inbox_days == 7
    monkeypatch.setenv("AFTERSALES_RETENTION_INBOX_DAYS", "3")
    with pytest.raises(ValueError) as info:
        load_settings()
    assert str(info.value).startswith("invalid settings: AFTERSALES_RETENTION_INBOX_DAYS:")


class Refused(Exception):
    sqlstate = "22021"


def gauge(service: str, sqlstate: str) -> float | None:
    return REGISTRY.get_sample_value(
        "aftersales_consecutive_failed_batches", {"service": service, "sqlstate": sqlstate}
    )


def test_the_gauge_counts_failed_batches_in_a_row_and_drops_to_zero() -> None:
    now = [100.0]
    health = ConsumerHealth("gauge_test", stuck_after=300, monotonic=lambda: now[0])
    health.failed(Refused("invalid byte sequence"))
    health.failed(Refused("invalid byte sequence"))
    assert gauge("gauge_test", "22021") == 2
    health.failed(ConnectionResetError("gone"))  # another kind: the count moves with it
    assert (gauge("gauge_test", "22021"), gauge("gauge_test", "")) == (0, 3)
    health.succeeded()
    assert (gauge("gauge_test", "22021"), gauge("gauge_test", "")) == (0, 0)


def test_stuck_only_after_the_configured_time() -> None:
    now = [0.0]
    health = ConsumerHealth("stuck_test", stuck_after=300, monotonic=lambda: now[0])
    assert health.stuck() is None
    health.failed(Refused("x"))
    now[0] = 299.0
    assert health.stuck() is None
    now[0] = 301.0
    health.failed(Refused("invalid byte sequence for encoding"))
    stuck = health.stuck()
    assert stuck is not None and stuck["failed_batches"] == 2 and stuck["sqlstate"] == "22021"
    assert stuck["error"].startswith("SQLSTATE 22021")
    health.succeeded()
    assert health.stuck() is None


class FakeRuntime:
    def __init__(self, name: str, health: ConsumerHealth) -> None:
        self.name = name
        self.health = health

    async def ready(self) -> dict[str, bool]:
        return {"database": True, "broker": True}


def get(app: Any, path: str) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "path": path}, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_readiness_is_degraded_with_the_reason_while_work_is_stuck() -> None:
    health = ConsumerHealth("ready_test", stuck_after=0)
    app = health_app([FakeRuntime("ready_test", health)])  # type: ignore[list-item]
    assert get(app, "/health/ready") == (
        200,
        {"status": "ready", "checks": {"ready_test": {"database": True, "broker": True}}},
    )
    health.failed(Refused("invalid byte sequence"))
    status, body = get(app, "/health/ready")
    assert status == 503 and body["status"] == "degraded"
    assert body["stuck"]["ready_test"]["sqlstate"] == "22021"
    health.succeeded()
    assert get(app, "/health/ready")[0] == 200


def test_a_database_error_in_the_log_line_shows_no_parameters() -> None:
    from shared.messaging.errors import describe_failure

    class Orig(Exception):
        sqlstate = "22000"

    orig = Orig(
        "invalid input for query argument $1: 'Zhang 13812345678' (date value out of range)"
    )
    exc = DBAPIError("INSERT ...", {"p": "Zhang 13812345678"}, orig)
    line = describe_failure(exc)
    assert line == "SQLSTATE 22000: invalid input for query argument $1 (date value out of range)"


def test_a_fetched_batch_is_bounded_by_bytes_as_well_as_by_count() -> None:
    from aftersales.registry import definition
    from shared.clock import SystemClock
    from shared.messaging.runtime import ServiceRuntime
    from shared.policy import Policy

    settings = Settings(
        kafka_fetch_max_bytes=3 * 1024 * 1024, kafka_max_partition_fetch_bytes=2**21
    )
    runtime = ServiceRuntime(
        definition("returns", Policy(), SystemClock(), settings), settings, SystemClock()
    )
    [subscriber] = runtime.broker.subscribers
    # FastStream keeps the aiokafka consumer's arguments here until it starts it.
    args = subscriber._connection_args  # type: ignore[attr-defined]
    assert (args["fetch_max_bytes"], args["max_partition_fetch_bytes"]) == (3 * 2**20, 2**21)
