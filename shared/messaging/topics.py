"""The topics the services read and write, created when missing (SPEC section 9)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from shared.reachable import once_reachable
from shared.settings import Settings

from .kafka import client_security

log = logging.getLogger("aftersales.runtime")


async def ensure_topics(settings: Settings, topics: Iterable[str]) -> None:
    """Create missing topics (SPEC section 9); existing ones are left as they are."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="aftersales-admin",
        **client_security(settings),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=t,
                        num_partitions=settings.kafka_topic_partitions,
                        replication_factor=settings.kafka_topic_replication,
                    )
                    for t in missing
                ]
            )
            # Errors come back per topic, not raised; one created meanwhile is fine.
            failures = [
                (error[0], error[1], error[2] if len(error) > 2 else "")
                for error in response.topic_errors
                if error[1] not in (0, TopicAlreadyExistsError.errno)
            ]
            if failures:
                raise RuntimeError(
                    "cannot create topics: "
                    + "; ".join(f"{topic} (error {code}: {text})" for topic, code, text in failures)
                )
            log.info("topics created", extra={"topics": ",".join(missing)})
    finally:
        await admin.close()


async def ensure_topics_once_reachable(
    settings: Settings,
    topics: Iterable[str],
    *,
    wait_s: float,
    stop: asyncio.Event | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> bool:
    """`ensure_topics`, tried again while the broker cannot be reached, for up to `wait_s`
    seconds: a broker restarting beside the service (a rolling upgrade, both started at once)
    is waited for, instead of the service exiting to be restarted with a growing back-off.
    Past the wait the last KafkaConnectionError is raised (the command's one line, exit 2).
    False when `stop` is set meanwhile (SIGTERM while waiting): nothing more to do."""
    wanted = list(topics)
    return await once_reachable(
        lambda: ensure_topics(settings, wanted),
        what="the Kafka broker",
        passing=lambda exc: isinstance(exc, KafkaConnectionError),
        wait_s=wait_s,
        stop=stop,
        sleep=sleep,
        monotonic=monotonic,
    )
