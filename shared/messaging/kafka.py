"""Plain aiokafka: the options every client of the project takes from the settings (admin, lag,
dead-letter tools, the relay's producer), and the record batches the relay sends."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from shared.settings import Settings

T = TypeVar("T")

_PARTITIONER = DefaultPartitioner()


def client_security(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for KAFKA_SECURITY_PROTOCOL and KAFKA_SASL_* (PLAINTEXT: none)."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in {"SSL", "SASL_SSL"}:
        options["ssl_context"] = ssl.create_default_context()
    if protocol.startswith("SASL"):
        options["sasl_mechanism"] = (settings.kafka_sasl_mechanism or "PLAIN").upper()
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition a producer with the default partitioner sends a keyed record to: murmur2
    of the key over the topic's partitions, listed as `send` lists them."""
    return int(_PARTITIONER(key, partitions, partitions))


# A sent batch: what its records stand for (the caller's tags), and its acknowledgement.
Sent = tuple[list[T], Awaitable[object]]


class RecordBatches(Generic[T]):
    """Keyed records gathered into record batches per (topic, partition) and handed to the
    producer a batch at a time (`send_batch`): one acknowledgement per batch instead of a
    future, a partitioner call and a coroutine per record.

    A key's records go to the partition `send` would give them (`partition_for`), in the order
    they were added: a batch is handed over when it is full or on `flush`, and the producer
    sends a partition's batches in the order it got them. Each record carries a tag (the
    caller's row); a sent batch comes back with its tags.

    A partition's next batch is handed over once the one before is acknowledged: the producer
    sends a partition's batches one after another whatever became of the one before, so a key's
    later records would go out after its earlier ones were refused. When a partition's batch
    fails, the partition takes nothing more: its open batch and the records added later are
    not sent (not in any `Sent`), and the caller sends them another time.
    """

    def __init__(self, producer: AIOKafkaProducer, headers: list[tuple[str, bytes]]) -> None:
        self._producer = producer
        self._headers = headers
        self._partitions: dict[str, list[int]] = {}
        self._hashes: dict[tuple[str, bytes], int] = {}
        self._open: dict[tuple[str, int], tuple[Any, list[T]]] = {}
        # Per partition, the acknowledgement of what was sent to it last, until it is awaited.
        self._last: dict[tuple[str, int], Awaitable[object]] = {}
        self._stopped: set[tuple[str, int]] = set()

    async def partition(self, topic: str, key: bytes) -> int:
        partition = self._hashes.get((topic, key))
        if partition is None:
            partitions = self._partitions.get(topic)
            if partitions is None:
                # A set of partition ids, listed as the producer's `send` lists it.
                partitions = list(await self._producer.partitions_for(topic))
                self._partitions[topic] = partitions
            partition = self._hashes[topic, key] = partition_for(key, partitions)
        return partition

    async def add(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        tag: T,
        headers_for: Callable[[str, bytes], list[tuple[str, bytes]]] | None = None,
    ) -> list[Sent[T]]:
        """Add a record to its partition's open batch; returns the batch handed over to make
        room for it (a full one), if any. Nothing is added to a stopped partition.
        `headers_for`: makes this record's headers (a trace span) instead of the batches' own,
        once it is known to go in a batch."""
        where = (topic, await self.partition(topic, key))
        sent: list[Sent[T]] = []
        if where in self._stopped:
            return sent
        headers = self._headers if headers_for is None else headers_for(topic, key)
        current = self._open.get(where)
        if current is not None:
            added = current[0].append(timestamp=None, key=key, value=value, headers=headers)
            if added is not None:
                current[1].append(tag)
                return sent
            sent = await self._hand_over(where)
            if where in self._stopped:
                return sent
        builder = self._producer.create_batch()
        # The first record of a batch always fits, whatever its size.
        builder.append(timestamp=None, key=key, value=value, headers=headers)
        self._open[where] = (builder, [tag])
        return sent

    async def flush(self, topic: str | None = None, key: bytes | None = None) -> list[Sent[T]]:
        """Hand over the open batches: all of them, or the one of `key`'s partition of `topic`
        (before a record of that key is sent otherwise)."""
        if topic is not None and key is not None:
            where = (topic, await self.partition(topic, key))
            return await self._hand_over(where) if where in self._open else []
        return [batch for where in list(self._open) for batch in await self._hand_over(where)]

    async def settled(self, topic: str, key: bytes) -> bool:
        """Whether a record of `key` may be sent otherwise now (after `flush` of its key): what
        its partition was sent before is acknowledged. False when it failed (the partition is
        stopped)."""
        return await self._acknowledged((topic, await self.partition(topic, key)))

    async def track(self, topic: str, key: bytes, ack: Awaitable[object]) -> None:
        """A record of `key` sent otherwise: the partition's next batch waits for `ack`."""
        self._last[topic, await self.partition(topic, key)] = ack

    async def _acknowledged(self, where: tuple[str, int]) -> bool:
        if where in self._stopped:
            return False
        last = self._last.pop(where, None)
        if last is not None:
            try:
                await last
            except Exception:
                self._stopped.add(where)
                self._open.pop(where, None)
                return False
        return True

    async def _hand_over(self, where: tuple[str, int]) -> list[Sent[T]]:
        builder, tags = self._open.pop(where)
        if not await self._acknowledged(where):
            return []
        topic, partition = where
        ack = await self._producer.send_batch(builder, topic, partition=partition)
        self._last[where] = ack
        return [(tags, ack)]
