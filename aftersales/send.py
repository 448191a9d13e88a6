"""`aftersales send`: publish CloudEvents written by hand (or by a script) to the topics the
services read, checked as the services check them and keyed as the platform keys them.

Every event is validated before anything is sent: one that a service would dead-letter is
refused here with the same reason, and then none is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from shared.contracts import CONTENT_TYPE, CloudEvent, InvalidEvent, parse_event
from shared.contracts.envelope import check_key, event_key
from shared.contracts.events import EVENT_DEADLETTERED, OUTPUTS, PLATFORM_TOPIC_TYPES
from shared.settings import Settings

# Exit codes besides 0 (docs/operations.md, Settings and commands): 2 nothing was sent
# (unreadable or invalid input, the broker unreachable); 1 the broker refused an event after
# those before it were sent.
EXIT_REFUSED = 1

# The platform's types only: an event the services publish (a refund.issued finance pays, a
# refund.requested the ledger pays) sent by hand would bypass the ledger and its cap.
_TOPIC_OF_TYPE: dict[str, str] = {
    t: topic for topic, types in PLATFORM_TOPIC_TYPES.items() for t in types
}


class SendRefused(ValueError):
    """Input that is not an event the services would take: nothing is sent."""


@dataclass(frozen=True)
class Outgoing:
    """One checked event: the bytes as given, where they go and under which key."""

    event: CloudEvent
    topic: str
    key: str
    value: bytes


def topic_of(event_type: str) -> str:
    """The one topic a platform event type belongs on (SPEC 2); "" for a type of no topic (not
    one of the contract's: parsing refuses it). The services' own types (SPEC 3) are refused."""
    if event_type == EVENT_DEADLETTERED:
        raise SendRefused(
            "event.deadlettered is written by the services; to send a dead letter's record "
            "again use `aftersales dlq replay SERVICE`"
        )
    if event_type in OUTPUTS:
        raise SendRefused(
            f"{event_type} is published by the services, never sent by hand (a refund would "
            "bypass the ledger); send the platform's event that causes it, or use `aftersales "
            "dlq replay` or `aftersales outbox retry`"
        )
    return _TOPIC_OF_TYPE.get(event_type, "")


def _type_of(value: bytes) -> str:
    """The event's type when it is one of the contract's, else "" (parsing then says why)."""
    try:
        found = json.loads(value).get("type")
    except (ValueError, AttributeError):
        return ""
    return found if isinstance(found, str) else ""


def split_values(raw: bytes) -> list[bytes]:
    """The JSON values of the input, as the bytes given: one event, several one after another,
    or one per line. What does not parse is kept whole so that validation names the fault."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [raw]
    decoder = json.JSONDecoder()
    values: list[bytes] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return values or [b""]
        try:
            _, end = decoder.raw_decode(text, position)
        except ValueError:
            values.append(text[position:].encode("utf-8"))
            return values
        values.append(text[position:end].encode("utf-8"))
        position = end


def check(raw: bytes, *, origin: str) -> list[Outgoing]:
    """Every event of the input, validated as the consumer of its topic validates it, or
    SendRefused naming the first that is not (its position, the reason and the field)."""
    values = split_values(raw)
    checked: list[Outgoing] = []
    for number, value in enumerate(values, start=1):
        where = origin if len(values) == 1 else f"event {number} of {origin}"
        try:
            # Bound to its type's topic from the start, as its consumer checks it: a type
            # sent by the wrong source is refused before its data is looked at.
            topic = topic_of(_type_of(value))
            event = parse_event(value, topic=topic)
            key = event_key(event)
            check_key(key.encode("utf-8"))
        except InvalidEvent as exc:
            raise SendRefused(
                f"{where} is not a valid event ({exc.reason}: {exc.detail}); nothing was sent"
            ) from None
        except SendRefused as exc:
            raise SendRefused(f"{where}: {exc}; nothing was sent") from None
        checked.append(Outgoing(event=event, topic=topic, key=key, value=value))
    return checked


async def publish(settings: Settings, outgoing: list[Outgoing], say: Callable[[str], None]) -> int:
    """Send the checked events in order, one line each; stops at the first the broker refuses."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from shared.messaging.kafka import client_security

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="aftersales-send",
        enable_idempotence=settings.kafka_idempotence,
        acks="all",
        **client_security(settings),
    )
    try:
        await producer.start()
        for number, item in enumerate(outgoing, start=1):
            try:
                sent = await producer.send_and_wait(
                    item.topic,
                    item.value,
                    key=item.key.encode("utf-8"),
                    headers=[("content-type", CONTENT_TYPE.encode())],
                )
            except KafkaConnectionError:
                raise
            except KafkaError as exc:
                raise BrokerRefused(
                    f"the broker refused {item.event.type} {item.event.id} on {item.topic} "
                    f"({type(exc).__name__}); {number - 1} event(s) before it were sent"
                ) from None
            say(
                f"sent {item.event.type} {item.event.id} to {item.topic} "
                f"(key {item.key}, partition {sent.partition}, offset {sent.offset})"
            )
    finally:
        await producer.stop()
    return 0


class BrokerRefused(Exception):
    """The broker refused an event after the ones before it were sent (exit 1)."""
