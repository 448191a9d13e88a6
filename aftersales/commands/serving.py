"""`aftersales migrate`, `run`, `topics` and `console`: the services and the console served."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aftersales.commands.database import require_database
from aftersales.registry import SERVICES, definition, environment, preflight, service_names
from shared import heap
from shared.logs import quiet

if TYPE_CHECKING:
    from shared.messaging.runtime import ServiceRuntime
    from shared.policy import Policy

log = logging.getLogger("aftersales.cli")


def migrate(args: argparse.Namespace) -> int:
    from shared.migrations import upgrade

    env = environment()
    require_database(env.settings.database_url, wait_s=env.settings.aftersales_startup_wait_seconds)
    for name in service_names(args.service):
        print(f"migrating {name} (schema {name})", file=sys.stderr)
        upgrade(name, env.settings.database_url)
    return 0


def run(args: argparse.Namespace) -> int:
    env = environment()
    port = args.port if args.port is not None else env.settings.aftersales_http_port
    names = service_names(*services_to_run(args.service))
    require_database(env.settings.database_url, wait_s=env.settings.aftersales_startup_wait_seconds)
    asyncio.run(serve(names, port=port, own_process=True))
    return 0


def services_to_run(named: Sequence[str]) -> Sequence[str]:
    if named:
        return named
    from_image = os.environ.get("AFTERSALES_SERVICE", "").split()
    if not from_image:
        raise ValueError(
            f"name the services to run ({', '.join(SERVICES)} or all), or set AFTERSALES_SERVICE"
        )
    return from_image


async def serve(
    names: Sequence[str],
    *,
    port: int,
    until: asyncio.Event | None = None,
    own_process: bool = False,
) -> None:
    """Run services until SIGTERM/SIGINT (or `until`), then shut down gracefully.
    `own_process`: the services are the process's whole work (not embedded, as in a test)."""
    from aftersales.http import require_free_port
    from shared.messaging.runtime import ServiceRuntime
    from shared.migrations import check_current

    require_free_port(port)
    env = environment()
    for name in names:
        preflight(name, env.settings)
        await check_current(name, env.settings.database_url)
    runtimes = [
        ServiceRuntime(
            definition(name, env.policy, env.clock, env.settings), env.settings, env.clock
        )
        for name in names
    ]
    stop = until or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        with quiet("aiokafka"):  # an unreachable broker is the command's one line
            if not await start_together(runtimes, stop):
                log.info("stopped while waiting for the Kafka broker")
                return
        await _serve_until(stop, runtimes, port, env.policy, own_process)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _serve_until(
    stop: asyncio.Event,
    runtimes: Sequence[ServiceRuntime],
    port: int,
    policy: Policy,
    own_process: bool,
) -> None:
    """The started runtimes served (health, metrics, the read API) until `stop`, then stopped
    together."""
    from aftersales.http import http_server

    server = http_server(runtimes, port, policy)
    server_task = asyncio.create_task(server.serve())
    if own_process:
        heap.settle()  # start-up's objects frozen, young ones collected less often
    log.info(
        "serving",
        extra={"services": ",".join(r.definition.name for r in runtimes), "http_port": port},
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        # Together: with `run all`, no service goes on fetching while another one stops.
        stopped = await asyncio.gather(*(r.stop() for r in runtimes), return_exceptions=True)
        server.should_exit = True
        await server_task
        for result in stopped:
            if isinstance(result, BaseException):
                raise result


async def start_together(
    runtimes: Sequence[ServiceRuntime], stop: asyncio.Event | None = None
) -> bool:
    """Start every runtime at once: each one's consumer group join takes seconds, so `run all`
    is ready in about the time of the slowest, not the sum. When one fails to start, those
    that started are stopped again and the first failure is raised. False: `stop` was set
    while the broker was waited for, and nothing was started."""
    from shared.messaging.topics import ensure_topics_once_reachable

    if not runtimes:
        return True
    # Every topic once, before the services race to create the ones they share; a broker not
    # up yet is waited for (AFTERSALES_STARTUP_WAIT_SECONDS).
    settings = runtimes[0].settings
    wanted = sorted({topic for r in runtimes for topic in r.definition.all_topics})
    if not await ensure_topics_once_reachable(
        settings, wanted, wait_s=settings.aftersales_startup_wait_seconds, stop=stop
    ):
        return False
    started = await asyncio.gather(*(r.start() for r in runtimes), return_exceptions=True)
    failures = [result for result in started if isinstance(result, BaseException)]
    if not failures:
        return True
    for runtime, result in zip(runtimes, started, strict=True):
        if not isinstance(result, BaseException):
            await runtime.stop()
    raise failures[0]


def topics(args: argparse.Namespace) -> int:
    from shared.messaging.runtime import ensure_topics

    env = environment()
    topics: set[str] = set()
    for name in SERVICES:
        topics.update(definition(name, env.policy, env.clock).all_topics)
    with quiet("aiokafka"):
        asyncio.run(ensure_topics(env.settings, sorted(topics)))
    print("\n".join(sorted(topics)))
    return 0


def console(args: argparse.Namespace) -> int:
    from aftersales.console.server import console_config, serve_console
    from shared.settings import load_settings

    # Settings only: the console needs no policy file and no database.
    config = console_config(os.environ, load_settings(), list(SERVICES))
    if not os.environ.get("AFTERSALES_CONSOLE_TOKEN"):
        print(f"development token: {config.token}", file=sys.stderr)
    asyncio.run(serve_console(config, args.port))
    return 0
