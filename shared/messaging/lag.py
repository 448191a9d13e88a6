"""Consumer lag per partition: how far a service's committed offsets are behind the end of the
topics it reads, as the gauge `aftersales_consumer_lag{service,topic,partition}`.

Read from the broker (the group's committed offsets against each partition's end), not from the
consumer in the process: every instance reports the same figures for every partition, whichever
it was assigned, so a partition nobody is consuming still shows its lag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared import metrics
from shared.settings import Settings

from .errors import is_transient
from .kafka import client_security

log = logging.getLogger("aftersales.lag")

# How often the lag is read (two requests to the broker per service).
LAG_INTERVAL_SECONDS = 15.0


class ConsumerLag:
    def __init__(
        self,
        *,
        service: str,
        settings: Settings,
        group_id: str,
        topics: Sequence[str],
        interval: float = LAG_INTERVAL_SECONDS,
    ) -> None:
        self.service = service
        self._settings = settings
        self._group_id = group_id
        self._topics = list(topics)
        self._interval = interval
        self._reported: set[tuple[str, str]] = set()
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            options = {
                "bootstrap_servers": self._settings.kafka_bootstrap_servers,
                "client_id": f"aftersales-{self.service}-lag",
                **client_security(self._settings),
            }
            admin = AIOKafkaAdminClient(**options)
            consumer = AIOKafkaConsumer(enable_auto_commit=False, **options)
            await admin.start()
            try:
                await consumer.start()
            except BaseException:
                await admin.close()
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def refresh(self) -> dict[TopicPartition, int]:
        """Read the lag of every partition now and set the gauges; returns it."""
        admin, consumer = await self._clients()
        await consumer.topics()  # refreshes the cluster metadata
        tps = [
            TopicPartition(topic, partition)
            for topic in self._topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return {}
        committed = await admin.list_consumer_group_offsets(self._group_id, partitions=tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        lag: dict[TopicPartition, int] = {}
        for tp in tps:
            done = committed.get(tp)
            # No committed offset yet: the group starts from the earliest record.
            position = done.offset if done is not None and done.offset >= 0 else starts[tp]
            lag[tp] = max(ends[tp] - position, 0)
        reported = {(tp.topic, str(tp.partition)) for tp in lag}
        for topic, partition in self._reported - reported:  # a topic shrank or went away
            metrics.CONSUMER_LAG.remove(self.service, topic, partition)
        for tp, behind in lag.items():
            metrics.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(behind)
        self._reported = reported
        return lag

    async def close(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.refresh()
                except Exception as exc:  # a gauge must never stop the service
                    log.warning(
                        "consumer lag not read",
                        extra={"service": self.service, "error": type(exc).__name__},
                    )
                    if not is_transient(exc):
                        await self.close()  # start afresh next time
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self._interval)
                except TimeoutError:
                    pass
        finally:
            await self.close()
