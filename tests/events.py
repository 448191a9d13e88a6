"""The one CloudEvent builder of the test suites: the envelope every test event has, unique ids,
and the `source` a type needs on this system's own topics."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from shared.contracts.events import SERVICE_TOPIC_TYPES, service_source


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def source_for(event_type: str, platform: str) -> str:
    """A publishing service's source for an internal type, else `platform` (the shop's): on
    this system's own topics only the services that publish a type may send it."""
    for published in SERVICE_TOPIC_TYPES.values():
        if event_type in published:
            return service_source(min(published[event_type]))
    return platform


def cloud_event(
    type_: str,
    data: dict[str, Any],
    at: datetime | str,
    *,
    id: str | None = None,
    source: str | None = None,
    platform: str = "/shop-platform/test",
    id_prefix: str = "evt",
) -> dict[str, Any]:
    """A structured-mode CloudEvent as the platform (or, for an internal type, the service that
    publishes it) sends it; `source` given as is, e.g. to test a wrong one."""
    return {
        "specversion": "1.0",
        "id": id or unique(f"{id_prefix}-{type_}"),
        "source": source if source is not None else source_for(type_, platform),
        "type": type_,
        "time": at if isinstance(at, str) else at.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }
