"""The one place that wires settings, policy, clock and services together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shared.clock import Clock, SystemClock
from shared.messaging.runtime import ServiceDefinition
from shared.policy import Policy, load_policy
from shared.settings import Settings, load_settings


class ServiceModule(Protocol):
    def build(
        self, policy: Policy, clock: Clock, settings: Settings | None = None
    ) -> ServiceDefinition: ...


# Imported when asked for, not when this module is: an image installs only its own service's
# extras (the notifier's httpx, aiosmtplib and jinja2 are not in the returns image).
def _returns() -> ServiceModule:
    from services.returns import bootstrap

    return bootstrap


def _complaints() -> ServiceModule:
    from services.complaints import bootstrap

    return bootstrap


def _followup() -> ServiceModule:
    from services.followup import bootstrap

    return bootstrap


def _notifier() -> ServiceModule:
    from services.notifier import bootstrap

    return bootstrap


def _refunds() -> ServiceModule:
    from services.refunds import bootstrap

    return bootstrap


SERVICES: dict[str, Callable[[], ServiceModule]] = {
    "returns": _returns,
    "complaints": _complaints,
    "followup": _followup,
    "notifier": _notifier,
    "refunds": _refunds,
}


@dataclass(frozen=True)
class Environment:
    settings: Settings
    policy: Policy
    clock: Clock


def environment(clock: Clock | None = None) -> Environment:
    """Settings and policy, validated now so a bad value stops start-up with a clear error."""
    settings = load_settings()
    policy = load_policy(settings.aftersales_policy_file)
    return Environment(settings=settings, policy=policy, clock=clock or SystemClock())


def service_names(*selection: str) -> list[str]:
    """The services named (each once, in SERVICES order); `all` (or nothing) is every one."""
    wanted = set(selection or ("all",))
    unknown = sorted(wanted - {*SERVICES, "all"})
    if unknown:
        known = ", ".join(SERVICES)
        raise ValueError(f"unknown service {unknown[0]!r}; known: {known}, all")
    return [name for name in SERVICES if "all" in wanted or name in wanted]


def preflight(name: str, settings: Settings) -> None:
    """A service's own start-up checks, when its bootstrap module has `preflight(settings)`
    (the notifier: its encryption key and gateway URLs). Raises ValueError with a clear
    message; `definition` stays free of them, so describing a service needs no secrets."""
    check = getattr(SERVICES[name](), "preflight", None)
    if check is not None:
        check(settings)


def definition(
    name: str, policy: Policy, clock: Clock, settings: Settings | None = None
) -> ServiceDefinition:
    """A service's definition; `settings` reach the services that need their own (the
    notifier's gateways and key), else they read the environment."""
    return SERVICES[name]().build(policy, clock, settings)
