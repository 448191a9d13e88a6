"""The topics the services read and write, created when missing (SPEC section 9)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

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
