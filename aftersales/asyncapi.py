"""AsyncAPI 3.0 documents of every service, generated from the code (topics, handlers, models).

`aftersales asyncapi` writes them to docs/asyncapi/; `aftersales asyncapi --check` fails when the
committed documents differ from what the code says (CI runs it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.clock import SystemClock
from shared.contracts import EVENT_TYPES, dead_letter_topic
from shared.contracts.events import CUSTOMER_KEYED_TYPES, PLATFORM_TOPIC_TYPES
from shared.messaging.runtime import ServiceDefinition
from shared.policy import Policy

VERSION = "1.0.0"
CONTENT_TYPE = "application/cloudevents+json"

# Where the platform writes each input type (SPEC section 2).
PLATFORM_TOPICS: dict[str, str] = {
    event_type: topic
    for topic, types in PLATFORM_TOPIC_TYPES.items()
    for event_type in sorted(types)
}


def _key_description(event_type: str) -> str:
    if event_type in CUSTOMER_KEYED_TYPES:
        return "customer_id"
    if event_type == "event.deadlettered":
        return "the original message's key"
    return "order_id"


def type_topics(definitions: Iterable[ServiceDefinition]) -> dict[tuple[str, str], None]:
    """Every (topic, type) pair that exists: the platform's and every service's outputs."""
    pairs: dict[tuple[str, str], None] = {(t, e): None for e, t in PLATFORM_TOPICS.items()}
    for definition in definitions:
        for topic, types in definition.publishes.items():
            pairs.update({(topic, e): None for e in types})
        pairs[(dead_letter_topic(definition.name), "event.deadlettered")] = None
    return pairs


def document(
    definition: ServiceDefinition, known: Mapping[tuple[str, str], None]
) -> dict[str, Any]:
    receives: dict[str, list[str]] = {}
    for topic in definition.topics:
        handled = sorted(e for (t, e) in known if t == topic and e in definition.handlers)
        if handled:
            receives[topic] = handled
    sends: dict[str, list[str]] = {t: sorted(types) for t, types in definition.publishes.items()}
    sends[dead_letter_topic(definition.name)] = ["event.deadlettered"]
    types = sorted({e for group in (*receives.values(), *sends.values()) for e in group})
    models: list[tuple[type[BaseModel], Literal["serialization"]]] = [
        (EVENT_TYPES[e], "serialization") for e in types
    ]
    refs, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    messages: dict[str, Any] = {}
    for event_type in types:
        data_ref = refs[(EVENT_TYPES[event_type], "serialization")]
        envelope = f"{event_type}.envelope"
        schemas[envelope] = _envelope(event_type, data_ref)
        messages[event_type] = {
            "name": event_type,
            "title": event_type,
            "summary": (EVENT_TYPES[event_type].__doc__ or event_type).strip().splitlines()[0],
            "contentType": CONTENT_TYPE,
            "payload": {"$ref": f"#/components/schemas/{envelope}"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": _key_description(event_type)},
                    "bindingVersion": "0.5.0",
                }
            },
        }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for action, groups in (("receive", receives), ("send", sends)):
        for topic, event_types in sorted(groups.items()):
            channel = channels.setdefault(topic, {"address": topic, "messages": {}})
            for e in event_types:
                channel["messages"][e] = {"$ref": f"#/components/messages/{e}"}
            operations[f"{action}.{topic}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{topic}"},
                "messages": [{"$ref": f"#/channels/{topic}/messages/{e}"} for e in event_types],
                **(
                    {
                        "bindings": {
                            "kafka": {
                                "groupId": {
                                    "type": "string",
                                    "enum": [f"aftersales-{definition.name}"],
                                },
                                "bindingVersion": "0.5.0",
                            }
                        }
                    }
                    if action == "receive"
                    else {}
                ),
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"aftersales {definition.name} service",
            "version": VERSION,
            "description": (
                f"What the {definition.name} service reads and writes. Every message is a "
                "CloudEvents 1.0 event in structured JSON mode; emitted events carry "
                "`correlationid` (the case) and `causationid` (the event that caused them)."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": "${KAFKA_BOOTSTRAP_SERVERS}",
                "protocol": "kafka",
                "description": "The deployment's Kafka cluster (SASL_SSL in production).",
            }
        },
        "channels": dict(sorted(channels.items())),
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def _envelope(event_type: str, data_ref: Mapping[str, Any]) -> dict[str, Any]:
    text = {"type": "string", "minLength": 1}
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {**text, "maxLength": 128},
            "source": text,
            "type": {"const": event_type},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "correlationid": text,
            "causationid": text,
            "data": dict(data_ref),
        },
    }


def render_all(names: Iterable[str] | None = None) -> dict[str, str]:
    """service name -> the JSON text of its document."""
    from aftersales.registry import SERVICES, definition

    policy, clock = Policy(), SystemClock()
    definitions = [definition(name, policy, clock) for name in (names or SERVICES)]
    known = type_topics(definitions)
    return {
        d.name: json.dumps(document(d, known), indent=2, ensure_ascii=False) + "\n"
        for d in definitions
    }


def write_or_check(directory: Path, *, check: bool) -> list[str]:
    """Write the documents, or (check) list the ones that are missing or stale."""
    return write_documents(directory, render_all(), check=check)


def write_documents(directory: Path, rendered: Mapping[str, str], *, check: bool) -> list[str]:
    """Write `<name>.json` of each rendered document, or (check) list the ones that are
    missing or stale."""
    stale: list[str] = []
    for name, text in rendered.items():
        path = directory / f"{name}.json"
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(str(path))
        if not check:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return stale
