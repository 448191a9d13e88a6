"""The CloudEvents `source` a test event needs: on this system's own topics only the services
that publish a type may send it (shared.contracts.events.SERVICE_TOPIC_TYPES)."""

from __future__ import annotations

from shared.contracts.events import SERVICE_TOPIC_TYPES, service_source


def source_for(event_type: str, platform: str) -> str:
    """A publishing service's source for an internal type, else `platform` (the shop's)."""
    for published in SERVICE_TOPIC_TYPES.values():
        if event_type in published:
            return service_source(min(published[event_type]))
    return platform
