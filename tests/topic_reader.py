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
from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from tests.polling import eventually

__all__ = ["EventOutput", "KeyedOutputs", "TopicReader"]


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

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class EventOutput:
    """An output read back: `event` as a dict, with its `type` and `data` at hand."""

    event: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.event["type"])

    @property
    def data(self) -> dict[str, Any]:
        return self.event["data"]  # type: ignore[no-any-return]


Output = TypeVar("Output", bound=EventOutput)


class KeyedOutputs(TopicReader, Generic[Output]):
    """Outputs looked up by Kafka key (the order id): the broker is shared with other tests.
    A suite says how a record becomes its `Output` (`output`), and how long `wait` waits."""

    timeout = 30.0

    def output(self, record: ConsumerRecord[bytes, bytes]) -> Output:
        raise NotImplementedError

    def of(self, key: str, event_type: str | None = None) -> list[Output]:
        found = []
        for record in self.records:
            if record.key != key.encode():
                continue
            output = self.output(record)
            if event_type is None or output.type == event_type:
                found.append(output)
        return found

    async def wait(
        self,
        key: str,
        event_type: str,
        *,
        count: int = 1,
        where: Callable[[Output], bool] = lambda _: True,
        timeout: float | None = None,
    ) -> list[Output]:
        """At least `count` outputs of `event_type` for `key` (matching `where`), or fail."""

        def found() -> list[Output]:
            matching = [o for o in self.of(key, event_type) if where(o)]
            return matching if len(matching) >= count else []

        return await eventually(  # type: ignore[no-any-return]
            found, what=f"{count} x {event_type} for {key}", timeout=timeout or self.timeout
        )
