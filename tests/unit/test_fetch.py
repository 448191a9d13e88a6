"""A consumer's batch drawn across its partitions up to one point in time (shared.messaging.fetch):
what aiokafka buffered, drawn the way the subscriber draws it, over a stand-in consumer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from faststream.kafka import KafkaBroker
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.messaging import fetch
from shared.messaging.fetch import CHUNK, TimeOrderedBatches, draw_in_time_order


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    timestamp: int


class Buffered:
    """aiokafka's consumer as far as the subscriber uses it: records buffered per partition,
    handed over in order and gone once handed over (its position moves past them)."""

    def __init__(self, buffered: dict[TopicPartition, list[Rec]]) -> None:
        self.buffered = {tp: list(records) for tp, records in buffered.items()}
        self.calls = 0

    def assignment(self) -> set[TopicPartition]:
        return set(self.buffered)

    def highwater(self, tp: TopicPartition) -> int | None:
        # what the broker holds: here, what was buffered (nothing is left to fetch)
        records = self.buffered[tp]
        return records[-1].offset + 1 if records else None

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Rec]]:
        # As aiokafka's fetcher: partitions in buffer order, each drained before the next.
        self.calls += 1
        left = max_records or 500
        out: dict[TopicPartition, list[Rec]] = {}
        for tp, records in self.buffered.items():
            if (partitions and tp not in partitions) or not records or left == 0:
                continue
            out[tp], self.buffered[tp] = records[:left], records[left:]
            left -= len(out[tp])
        return out


def subscriber(
    topics: tuple[str, ...] = ("orders", "signatures", "returns"), linger: float = 0.0
) -> Any:
    made = KafkaBroker("localhost:9092").subscriber(
        *topics, group_id="g", batch=True, max_records=500
    )
    return draw_in_time_order(made, topics, linger=linger)


def partition(topic: str, n: int, timestamps: list[int]) -> tuple[TopicPartition, list[Rec]]:
    return TopicPartition(topic, n), [Rec(topic, n, i, ts) for i, ts in enumerate(timestamps)]


async def test_a_backlog_batch_reaches_about_the_same_instant_in_every_partition() -> None:
    # An order a millisecond; its two signatures and its return in the same milliseconds: the
    # signature topic holds twice the records for the same span of time.
    orders = partition("orders", 0, list(range(2000)))
    signatures = partition("signatures", 0, [t // 2 for t in range(4000)])
    returns = partition("returns", 0, list(range(2000)))
    consumer = Buffered(dict([returns, signatures, orders]))  # returns buffered first
    batch = await subscriber().get_msg(consumer)
    assert len(batch) == 500
    reached = {
        topic: max(r.timestamp for r in batch if r.topic == topic)
        for topic in ("orders", "signatures", "returns")
    }
    assert max(reached.values()) - min(reached.values()) <= CHUNK, reached
    # handed over in time order, the service's topic order breaking ties
    keys = [(r.timestamp, ("orders", "signatures", "returns").index(r.topic)) for r in batch]
    assert keys == sorted(keys)


async def test_what_is_buffered_below_a_chunk_is_one_draw() -> None:
    consumer = Buffered(dict([partition("orders", 0, [5, 6]), partition("returns", 1, [1])]))
    batch = await subscriber().get_msg(consumer)
    assert [(r.topic, r.timestamp) for r in batch] == [
        ("returns", 1),
        ("orders", 5),
        ("orders", 6),
    ]
    assert consumer.calls == 1


class Arriving(Buffered):
    """Records that arrive while the subscriber waits (aiokafka's fetcher runs meanwhile)."""

    def __init__(self, buffered: dict[TopicPartition, list[Rec]], arriving: list[Rec]) -> None:
        super().__init__(buffered)
        self.arriving = arriving

    async def getmany(self, *partitions: Any, **options: Any) -> dict[TopicPartition, list[Rec]]:
        drawn = await super().getmany(*partitions, **options)
        for record in self.arriving:  # fetched after the first draw, in time for the next
            self.buffered[TopicPartition(record.topic, record.partition)].append(record)
        self.arriving = []
        return drawn


async def test_a_few_records_wait_the_linger_for_those_on_their_way() -> None:
    early = dict([partition("orders", 0, [1, 2]), partition("returns", 0, [])])
    later = [Rec("returns", 0, 0, 3), Rec("orders", 0, 2, 4)]
    lingering = await subscriber(linger=0.01).get_msg(Arriving(early, later))
    assert [(r.topic, r.timestamp) for r in lingering] == [
        ("orders", 1),
        ("orders", 2),
        ("returns", 3),
        ("orders", 4),
    ]
    at_once = await subscriber(linger=0).get_msg(Arriving(early, later))
    assert [r.timestamp for r in at_once] == [1, 2]


async def test_nothing_buffered_is_an_empty_batch() -> None:
    assert await subscriber().get_msg(Buffered({TopicPartition("orders", 0): []})) == ()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=50), max_size=400),
        min_size=1,
        max_size=12,
    )
)
def test_every_record_drawn_is_handed_over_once_in_its_partitions_order(
    timestamps: list[list[int]],
) -> None:
    buffered = dict(
        partition(("orders", "signatures", "returns")[n % 3], n, sorted(ts))
        for n, ts in enumerate(timestamps)
    )
    consumer = Buffered(buffered)
    batch = asyncio.run(subscriber().get_msg(consumer))
    assert len(batch) == min(500, sum(map(len, timestamps)))
    for tp, records in buffered.items():
        mine = [r for r in batch if (r.topic, r.partition) == (tp.topic, tp.partition)]
        # a prefix of the partition, in order; the rest still buffered
        assert mine == records[: len(mine)]
        assert consumer.buffered[tp] == records[len(mine) :]


def test_only_faststreams_batch_subscriber_is_changed() -> None:
    single = KafkaBroker("localhost:9092").subscriber("orders", group_id="g")
    try:
        draw_in_time_order(single, ("orders",))
    except TypeError as exc:
        assert "BatchSubscriber" in str(exc)
    else:
        raise AssertionError("a subscriber of single records must be refused")
    assert isinstance(subscriber(), TimeOrderedBatches)


class Behind(Buffered):
    """A backlog: the broker holds records past what is buffered (being fetched)."""

    def highwater(self, tp: TopicPartition) -> int | None:
        return 10_000


async def test_a_backlog_between_two_fetches_does_not_wait(monkeypatch: Any) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(fetch.asyncio, "sleep", sleep)
    few = dict([partition("orders", 0, [1, 2])])
    assert len(await subscriber(linger=0.02).get_msg(Behind(few))) == 2
    assert slept == []
    assert len(await subscriber(linger=0.02).get_msg(Buffered(few))) == 2
    assert slept == [0.02]  # caught up: a trickle waits for more
