"""The `build` of a service whose handlers need only the policy, wired the same way for each."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy import MetaData

from shared.clock import Clock
from shared.policy import Policy
from shared.settings import Settings

from .context import EventHandler, TimerHandler
from .runtime import ServiceDefinition
from .tables import MessagingTables


class ServiceTables(Protocol):
    """A service's tables module: the metadata of its schema and its messaging tables."""

    metadata: MetaData
    messaging: MessagingTables


class Handlers(Protocol):
    def events(self) -> Mapping[str, EventHandler]: ...

    def timers(self) -> Mapping[str, TimerHandler]: ...


class Build(Protocol):
    def __call__(
        self, policy: Policy, clock: Clock, settings: Settings | None = None
    ) -> ServiceDefinition: ...


def policy_service(
    name: str, schema: ServiceTables, handlers: Callable[[Policy], Handlers], **declared: Any
) -> Build:
    """The service's `build`: it needs no settings of its own (the runtime has them).
    `declared` is the rest of its ServiceDefinition (topics, publishes, kpis, ...)."""

    def build(policy: Policy, clock: Clock, settings: Settings | None = None) -> ServiceDefinition:
        made = handlers(policy)
        return ServiceDefinition(
            name=name,
            metadata=schema.metadata,
            tables=schema.messaging,
            handlers=made.events(),
            timer_handlers=made.timers(),
            **declared,
        )

    return build
