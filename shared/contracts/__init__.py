"""The event contract (SPEC sections 1-3): topics, CloudEvents envelope, every event model."""

from . import ids, topics
from .envelope import (
    CONTENT_TYPE,
    DATA_CONTENT_TYPE,
    MAX_EVENT_BYTES,
    CloudEvent,
    InvalidEvent,
    deterministic_id,
    dump_event,
    event_key,
    new_event,
    parse_event,
)
from .events import *  # noqa: F403  (the event types, models and helper sets; see events.__all__)
from .events import __all__ as _event_names
from .primitives import MAX_AMOUNT, Currency, Id, Money, Quantity, Score, SignedMoney, Timestamp
from .topics import dead_letter_topic

__all__ = [
    "CONTENT_TYPE",
    "DATA_CONTENT_TYPE",
    "MAX_AMOUNT",
    "MAX_EVENT_BYTES",
    "CloudEvent",
    "Currency",
    "Id",
    "InvalidEvent",
    "Money",
    "Quantity",
    "Score",
    "SignedMoney",
    "Timestamp",
    "dead_letter_topic",
    "deterministic_id",
    "dump_event",
    "event_key",
    "ids",
    "new_event",
    "parse_event",
    "topics",
    *_event_names,
]
