"""The order the fault run publishes its flows' records in (faults/flows.py): the flows
interleaved and shuffled (pairs that must stay in order kept so), a share published twice,
poison records mixed in (see POISON_KINDS and the flows' docstring)."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.contracts import topics

from . import events as ev
from .flows import Flow, Message

# Kinds of poison, in turn: the first three on keys of their own, the hostile ones on the key
# of a real flow's order, so the flow's later events share their partition and key and must
# still be applied (the record must not stop the flow, nor change its outcome).
POISON_KINDS = (
    "malformed_json",
    "negative_amount",
    "unknown_type",
    "oversized",
    "internal_type",
    "nul_text",  # U+0000 in a text field: invalid_text (SPEC section 1)
    "unpaired_surrogate",  # a lone surrogate escape: invalid_text, its dead letter still written
    "edge_timestamp",  # a deadline past what Python and PostgreSQL store: timestamp_out_of_range
    "control_flood",  # ~200 KiB of control characters: over 1 MiB escaped, its dead letter is cut
    "oversized_key",  # a 100 000-character key: invalid_key, the letter keeps it cut
)
# Over the 256 KiB a valid event may have (SPEC section 1).
OVERSIZED_TEXT = 300 * 1024
CONTROL_FLOOD = bytes(range(1, 32)) * (200 * 1024 // 31)


def poison(
    run_id: str, n: int, rng: random.Random, flow_orders: Sequence[str] = ()
) -> list[Message]:
    """Records every consumer of their topic must dead-letter (and go on)."""
    messages = []
    at = datetime.fromisoformat("2026-01-05T10:00:00+08:00")
    for i in range(n):
        kind = POISON_KINDS[i % len(POISON_KINDS)]
        order_id = f"{run_id}-X{i}"
        hostile_key = rng.choice(flow_orders) if flow_orders else order_id
        if kind == "malformed_json":
            topic = rng.choice(
                (topics.ORDERS, topics.SIGNATURES, topics.RETURNS, topics.COMPLAINTS)
            )
            value = b'{"specversion": "1.0", "id": "' + f"{run_id}-bad-{i}".encode() + b'", "ty'
            messages.append(Message(topic, order_id, value, None, None, 0.0, False, kind))
        elif kind == "negative_amount":
            event = ev.order_paid(
                order_id,
                f"{run_id}-XC{i}",
                id=f"{run_id}-neg-{i}",
                at=at,
                lines=[ev.line("L1", category="home", quantity=1, paid_amount=-100)],
            )
            messages.append(_poison(topics.ORDERS, order_id, ev.encode(event), event, kind))
        elif kind == "unknown_type":
            event = ev.cloudevent(
                "complaint.reopened",
                {"order_id": order_id, "complaint_id": f"{order_id}-K"},
                at,
                id=f"{run_id}-unknown-{i}",
            )
            messages.append(_poison(topics.COMPLAINTS, order_id, ev.encode(event), event, kind))
        elif kind == "unpaired_surrogate":
            # Valid JSON (an escaped lone surrogate) that no UTF-8 text, nor PostgreSQL, holds.
            event = ev.order_shipped(hostile_key, id=f"{run_id}-surrogate-{i}", at=at)
            event["data"]["carrier"] = "S\ud800F"
            value = json.dumps(event, ensure_ascii=True).encode()  # as the escape \\ud800
            messages.append(_poison(topics.ORDERS, hostile_key, value, event, kind))
        elif kind == "nul_text":
            # U+0000, which PostgreSQL text cannot hold, in a field a service may store.
            event = ev.order_shipped(hostile_key, id=f"{run_id}-nul-{i}", at=at)
            event["data"]["tracking_no"] = "SF\u0000" + hostile_key
            messages.append(_poison(topics.ORDERS, hostile_key, ev.encode(event), event, kind))
        elif kind == "edge_timestamp":
            # 10000-01-01 in UTC: the complaint's deadlines cannot be stored.
            event = ev.complaint_opened(
                f"{run_id}-XK{i}",
                hostile_key,
                f"{run_id}-XC{i}",
                "logistics_delay",
                id=f"{run_id}-edge-{i}",
                at=at,
            )
            event["data"]["opened_at"] = "9999-12-31T20:00:00-12:00"
            messages.append(_poison(topics.COMPLAINTS, hostile_key, ev.encode(event), event, kind))
        elif kind == "control_flood":
            messages.append(
                Message(topics.ORDERS, hostile_key, CONTROL_FLOOD, None, None, 0.0, False, kind)
            )
        elif kind == "oversized_key":
            event = ev.order_shipped(order_id, id=f"{run_id}-longkey-{i}", at=at)
            key = order_id + "k" * 100_000
            messages.append(_poison(topics.ORDERS, key, ev.encode(event), event, kind))
        elif kind == "oversized":
            event = ev.order_shipped(hostile_key, id=f"{run_id}-oversized-{i}", at=at)
            event["data"]["carrier"] = "x" * OVERSIZED_TEXT
            messages.append(_poison(topics.ORDERS, hostile_key, ev.encode(event), event, kind))
        else:
            # An internal type (only the refund ledger writes it) on a platform topic.
            event = ev.cloudevent(
                "refund.issued",
                {"order_id": hostile_key, "refund_id": f"{run_id}-forged-{i}", "amount": 100000},
                at,
                id=f"{run_id}-internal-{i}",
            )
            messages.append(_poison(topics.ORDERS, hostile_key, ev.encode(event), event, kind))
    return messages


def _poison(topic: str, key: str, value: bytes, event: Mapping[str, Any], reason: str) -> Message:
    return Message(topic, key, value, event["id"], event["type"], 0.0, False, reason)


def plan(
    flows: list[Flow],
    *,
    seed: int,
    duplicate_rate: float,
    poison_records: int,
    run_id: str,
) -> list[Message]:
    """Every record in publication order: flows interleaved, shuffled, duplicated, poisoned."""
    rng = random.Random(seed + 1)  # noqa: S311 - reproducible test data
    messages: list[Message] = []
    jitter = 0.03
    for flow in flows:
        base = rng.uniform(0, 0.04) if flow.early else rng.uniform(0, 1 - jitter)
        positions = [base + rng.uniform(0, jitter) for _ in flow.events]
        # Keep the required pairs in order by swapping their positions where needed.
        for i, j in flow.before:
            if positions[i] > positions[j]:
                positions[i], positions[j] = positions[j], positions[i]
        for event, position in zip(flow.events, positions, strict=True):
            messages.append(
                Message(
                    ev.topic_of(event),
                    ev.key_of(event),
                    ev.encode(event),
                    event["id"],
                    event["type"],
                    position,
                )
            )
    duplicates = []
    for message in messages:
        if rng.random() < duplicate_rate:
            # Mostly soon after (often the same fetched batch), sometimes much later.
            later = rng.uniform(0, 0.002) if rng.random() < 0.5 else rng.uniform(0, 0.5)
            duplicates.append(
                Message(
                    message.topic,
                    message.key,
                    message.value,
                    message.event_id,
                    message.event_type,
                    message.position + later,
                    duplicate=True,
                )
            )
    bad = poison(run_id, poison_records, rng, [flow.order_id for flow in flows])
    for message in bad:
        message.position = rng.uniform(0, 1)
    messages = messages + duplicates + bad
    messages.sort(key=lambda m: m.position)
    return messages
