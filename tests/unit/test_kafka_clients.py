"""Ops tools and the lag reader use the services' Kafka security settings; masked dead
letters are never replayed."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.contracts import DeadLettered, DeadLetterOrigin
from shared.messaging import deadletters, lag
from shared.messaging.deadletters import (
    list_dead_letters,
    masked_reason,
    replay_dead_letters,
    too_old,
)
from shared.messaging.lag import ConsumerLag
from shared.settings import Settings

SASL_SSL = Settings(
    kafka_bootstrap_servers="kafka-0:9093",
    kafka_security_protocol="SASL_SSL",
    kafka_sasl_mechanism="SCRAM-SHA-512",
    kafka_sasl_username="aftersales",
    kafka_sasl_password="s3cret",
)


class Refused(Exception):
    """What the fake clients raise at start: the test only looks at how they were built."""


def recording(built: list[dict[str, Any]]) -> type:
    class Client:
        def __init__(self, *topics: str, **options: Any) -> None:
            built.append(options)

        async def start(self) -> None:
            raise Refused

        async def stop(self) -> None:
            pass

        async def close(self) -> None:
            pass

    return Client


def recorded_clients(
    monkeypatch: pytest.MonkeyPatch, module: object, *names: str
) -> list[dict[str, Any]]:
    """Replace the module's Kafka clients by recording fakes: the options each was built with."""
    built: list[dict[str, Any]] = []
    for name in names:
        monkeypatch.setattr(module, name, recording(built))
    return built


def assert_sasl_ssl(options: dict[str, Any]) -> None:
    assert options["bootstrap_servers"] == "kafka-0:9093"
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "aftersales"
    assert options["sasl_plain_password"] == "s3cret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


async def test_dlq_list_and_replay_connect_with_the_services_security(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = recorded_clients(monkeypatch, deadletters, "AIOKafkaConsumer", "AIOKafkaProducer")
    with pytest.raises(Refused):
        await list_dead_letters(SASL_SSL, "returns", None, 10)
    with pytest.raises(Refused):
        await replay_dead_letters(SASL_SSL, "returns", None, 10)
    assert len(built) == 2
    for options in built:
        assert_sasl_ssl(options)


async def test_the_lag_reader_connects_with_the_services_security(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = recorded_clients(monkeypatch, lag, "AIOKafkaConsumer", "AIOKafkaAdminClient")
    reader = ConsumerLag(service="returns", settings=SASL_SSL, group_id="g", topics=["orders"])
    with pytest.raises(Refused):
        await reader.refresh()
    assert len(built) == 2  # the admin client and the consumer
    for options in built:
        assert_sasl_ssl(options)


def letter(value: str) -> DeadLettered:
    return DeadLettered(
        service="complaints",
        reason="handler_error",
        detail="x",
        origin=DeadLetterOrigin(topic="complaints", partition=0, offset=3),
        value=value,
        value_encoding="utf-8",
        value_truncated=False,
        received_at=datetime(2024, 5, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ('{"type": "order.paid", "data": {"customer": {"name": "Z****"}}}', "order.paid carries"),
        ('{"type": "complaint.opened", "data": {"description": "call 138****5678"}}', "masked"),
        (
            '{"type": "complaint.opened", "data": {"description": "mail a***@example.com"}}',
            "masked",
        ),
        ('{"type": "complaint.opened", "data": {"description": "broken lid"}}', None),
        ('{"type": "order.shipped", "data": {"tracking_no": "SF1234567890123"}}', None),
        ("not json at all", None),
        ("[" * 100_000 + "]" * 100_000, None),  # nested too deep for the JSON parser
    ],
)
def test_a_masked_copy_is_refused_for_replay(value: str, refused: str | None) -> None:
    why = masked_reason(letter(value))
    assert (why is None) if refused is None else (refused in (why or ""))


def test_a_dead_letter_older_than_the_inbox_period_is_refused_for_replay() -> None:
    item = letter('{"type": "order.shipped", "data": {}}')  # received 2024-05-01
    settings = Settings(aftersales_retention_inbox_days=30)
    assert too_old(item, settings, now=datetime(2024, 5, 31, tzinfo=UTC)) is None
    why = too_old(item, settings, now=datetime(2024, 5, 31, 0, 1, tzinfo=UTC))
    assert why is not None and "more than 30 days ago" in why
