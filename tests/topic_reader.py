"""One background reader of Kafka topics for the suites that run on the broker.

`TopicReader` reads `topics` from their earliest offset (with `latest`, from their end: only what
comes after `start()`) in a task of its own until `stop()`: with `group` it joins a fresh
consumer group of that name prefix; without, it assigns every partition directly (no group to
join, no offsets shared with anyone). Each record goes to
`receive`, which keeps it in `records`; a suite's reader overrides `receive` to keep what it
needs, and adds its own look-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

__all__ = ["EventOutput", "TopicReader"]


class TopicReader:
    def __init__(
        self,
        bootstrap: str,
        *topics: str,
        group: str | None = None,
        latest: bool = False,
        poll_ms: int = 100,
    ) -> None:
        self.topics, self.poll_ms, self.latest = topics, poll_ms, latest
        self.consumer = (
            AIOKafkaConsumer(
                *topics,
                bootstrap_servers=bootstrap,
                group_id=f"{group}-{uuid.uuid4().hex}",
                auto_offset_reset="latest" if latest else "earliest",
                enable_auto_commit=False,
            )
            if group is not None
            else AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        )
        self.grouped = group is not None
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        if not self.grouped:
            await self.consumer.topics()
            tps = [
                TopicPartition(topic, partition)
                for topic in self.topics
                for partition in sorted(self.consumer.partitions_for_topic(topic) or ())
            ]
            self.consumer.assign(tps)
            if self.latest:
                await self.consumer.seek_to_end(*tps)
            else:
                await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=self.poll_ms)).values():
                for record in records:
                    self.receive(record)

    def receive(self, record: ConsumerRecord[Any, Any]) -> None:
        self.records.append(record)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()


class EventOutput:
    """An output read back: `event` as a dict, with its `type` and `data` at hand."""

    event: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.event["type"])

    @property
    def data(self) -> dict[str, Any]:
        return self.event["data"]  # type: ignore[no-any-return]
