"""A consumer's batch drawn across its partitions up to one point in time (shared.messaging.fetch):
what aiokafka buffered, drawn the way the subscriber draws it, over a stand-in consumer."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faststream.kafka import KafkaBroker
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.messaging import fetch
from shared.messaging.fetch import CHUNK, KEEP_AT_MOST, TimeOrderedBatches, draw_in_time_order


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    timestamp: int


class Buffered:
    """aiokafka's consumer as far as the subscriber and a batch's acknowledgement use it: each
    partition's records buffered, handed over in order from its position (which moves past
    them), committed offsets, a seek back."""

    def __init__(self, buffered: dict[TopicPartition, list[Rec]]) -> None:
        self.log = {tp: list(records) for tp, records in buffered.items()}
        self.positions = dict.fromkeys(self.log, 0)
        self.assigned = set(self.log)
        self.committed: dict[TopicPartition, int] = {}
        self.calls = 0

    @property
    def buffered(self) -> dict[TopicPartition, list[Rec]]:
        return {tp: records[self.positions[tp] :] for tp, records in self.log.items()}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, tp: TopicPartition) -> int | None:
        assert tp in self.assigned, "Partition is not assigned"  # as aiokafka asserts
        # what the broker holds: here, what was buffered (nothing is left to fetch)
        return len(self.log[tp]) or None

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Rec]]:
        # As aiokafka's fetcher: partitions in buffer order, each drained before the next.
        self.calls += 1
        left = max_records or 500
        out: dict[TopicPartition, list[Rec]] = {}
        for tp, records in self.buffered.items():
            if (partitions and tp not in partitions) or tp not in self.assigned:
                continue
            if not records or left == 0:
                continue
            out[tp] = records[:left]
            self.positions[tp] += len(out[tp])
            left -= len(out[tp])
        return out


def subscriber(
    topics: tuple[str, ...] = ("orders", "signatures", "returns"),
    linger: float = 0.0,
    max_records: int = 500,
) -> Any:
    made = KafkaBroker("localhost:9092").subscriber(
        *topics, group_id="g", batch=True, max_records=max_records
    )
    return draw_in_time_order(made, topics, linger=linger)


def partition(topic: str, n: int, timestamps: list[int]) -> tuple[TopicPartition, list[Rec]]:
    return TopicPartition(topic, n), [Rec(topic, n, i, ts) for i, ts in enumerate(timestamps)]


async def test_a_backlog_batch_is_cut_at_one_instant_in_every_partition() -> None:
    # An order a millisecond; its two signatures and its return in the same milliseconds: the
    # signature topic holds twice the records for the same span of time.
    orders = partition("orders", 0, list(range(2000)))
    signatures = partition("signatures", 0, [t // 2 for t in range(4000)])
    returns = partition("returns", 0, list(range(2000)))
    consumer = Buffered(dict([returns, signatures, orders]))  # returns buffered first
    made = subscriber()
    batch = await made.get_msg(consumer)
    assert 500 - 3 * CHUNK <= len(batch) <= 500
    # Nothing handed over is later than a record left behind, kept or still buffered: a return
    # never comes a batch before the order of its millisecond.
    left = [r for records in made.kept.values() for r in records]
    left += [r for records in consumer.buffered.values() for r in records]
    assert max(r.timestamp for r in batch) <= min(r.timestamp for r in left)
    # handed over in time order, the service's topic order breaking ties
    keys = [(r.timestamp, ("orders", "signatures", "returns").index(r.topic)) for r in batch]
    assert keys == sorted(keys)
    # What the batch's acknowledgement commits: the offset after each partition's last record
    # handed over, not the consumer's position past the kept ones.
    assert made.parser._consumer is made.commits  # what FastStream's message commits through
    await made.commits.commit()
    assert made.kept
    for tp, kept in made.kept.items():
        assert consumer.committed.get(tp, 0) == kept[0].offset < consumer.positions[tp]
    # The next batch starts with the kept records.
    following = await made.get_msg(consumer)
    assert following[0].timestamp >= max(r.timestamp for r in batch)


async def drain(
    made: Any, consumer: Buffered, handed: list[Rec] | None = None, *, in_time_order: bool = True
) -> list[Rec]:
    """Batches until nothing is left, each acknowledged as FastStream does, added to `handed`;
    checks that no record is kept more than KEEP_AT_MOST batches, that a commit never passes a
    record not yet handed over and (`in_time_order`: each partition's timestamps ascending)
    that each batch is in time order."""
    handed = [] if handed is None else handed
    topics = ("orders", "signatures", "returns")
    times: Counter[Rec] = Counter()  # batches each record was kept
    while batch := await made.get_msg(consumer):
        handed += batch
        kept = {r for records in made.kept.values() for r in records}
        times = Counter({r: times[r] + 1 for r in kept})
        assert all(n <= KEEP_AT_MOST for n in times.values())
        keys = [(r.timestamp, topics.index(r.topic)) for r in batch]
        assert keys == sorted(keys) or not in_time_order
        await made.commits.commit()
        for r in batch:
            # the offset after the partition's last record handed over, no further
            tp = TopicPartition(r.topic, r.partition)
            last = max(h.offset for h in handed if (h.topic, h.partition) == tp)
            assert consumer.committed[tp] == last + 1
    return handed


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
            self.log[TopicPartition(record.topic, record.partition)].append(record)
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
def test_every_record_is_handed_over_once_and_committed_after(
    timestamps: list[list[int]],
) -> None:
    buffered = dict(
        partition(("orders", "signatures", "returns")[n % 3], n, sorted(ts))
        for n, ts in enumerate(timestamps)
    )
    consumer = Buffered(buffered)
    handed = asyncio.run(drain(subscriber(max_records=60), consumer))
    assert sorted(handed, key=lambda r: (r.topic, r.partition, r.offset)) == sorted(
        (r for records in buffered.values() for r in records),
        key=lambda r: (r.topic, r.partition, r.offset),
    )
    for tp, records in buffered.items():
        assert [r for r in handed if (r.topic, r.partition) == (tp.topic, tp.partition)] == records


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=1000), min_size=40, max_size=300),
        min_size=2,
        max_size=6,
    ),
    st.integers(min_value=1, max_value=5),
)
def test_out_of_order_timestamps_still_hand_everything_over_in_each_partitions_order(
    timestamps: list[list[int]], batches_before_rewind: int
) -> None:
    """Producers' clocks differ, so a partition's timestamps can go backwards; a nack rewinds a
    batch's partitions (FastStream seeks each to its earliest record): every record still comes,
    in its partition's order, and the records a cut kept are fetched again, not handed twice."""
    buffered = dict(
        partition(("orders", "returns")[n % 2], n, ts) for n, ts in enumerate(timestamps)
    )
    consumer = Buffered(buffered)
    made = subscriber(("orders", "returns"), max_records=60)

    async def run() -> list[Rec]:
        for _ in range(batches_before_rewind):
            batch = await made.get_msg(consumer)
            if not batch:
                break
            await made.commits.commit()
        if batch := await made.get_msg(consumer):  # nacked: rewind each partition it drew
            for tp in {TopicPartition(r.topic, r.partition) for r in batch}:
                first = min(r.offset for r in batch if (r.topic, r.partition) == tp)
                made.commits.seek(tp, first)
        return await drain(made, consumer, in_time_order=False)

    handed = asyncio.run(run())
    for tp, records in buffered.items():
        mine = [r for r in handed if (r.topic, r.partition) == (tp.topic, tp.partition)]
        assert mine == records[consumer.committed.get(tp, 0) - len(mine) :]
        assert consumer.committed.get(tp, 0) == len(records)


async def test_of_the_same_millisecond_an_order_is_never_a_batch_behind_a_return() -> None:
    # Forty records a millisecond in each topic: batches end inside a millisecond.
    orders = partition("orders", 0, [t // 40 for t in range(400)])
    returns = partition("returns", 1, [t // 40 for t in range(400)])
    handed = await drain(subscriber(max_records=60), Buffered(dict([returns, orders])))
    keys = [(r.timestamp, r.topic != "orders") for r in handed]
    assert keys == sorted(keys)
    assert len(handed) == 800


async def test_a_timestamp_far_ahead_holds_its_partition_back_a_few_batches_at_most() -> None:
    # A producer whose clock is years ahead wrote one record; its partition's later records are
    # ordinary. The other partition has a long backlog.
    ahead = partition("returns", 1, [10**12, *range(1, 200)])
    backlog = partition("orders", 0, list(range(2000)))
    consumer = Buffered(dict([backlog, ahead]))
    made = subscriber(max_records=60)
    first = [r for _ in range(KEEP_AT_MOST + 1) for r in await made.get_msg(consumer)]
    assert ahead[1][0] in first
    handed = await drain(made, consumer, first)
    assert [r for r in handed if r.topic == "returns"] == ahead[1]


async def test_a_restarted_subscriber_reads_from_the_committed_offsets_not_what_it_kept() -> None:
    orders = partition("orders", 0, list(range(1000)))
    returns = partition("returns", 1, list(range(1000)))
    made = subscriber(max_records=60)
    before = Buffered(dict([orders, returns]))
    await made.get_msg(before)
    assert made.kept
    # Stopped and started again: a new consumer, at the offsets another instance committed
    # meanwhile (here: the end of what the first one kept).
    after = Buffered(dict([orders, returns]))
    for tp, kept in made.kept.items():
        after.positions[tp] = kept[-1].offset + 1
    kept_before = {r for records in made.kept.values() for r in records}
    batch = await made.get_msg(after)
    assert batch
    assert not kept_before & set(batch)


class Failing(Buffered):
    """A draw that fails once, after others of the same batch were taken (a fetch error
    aiokafka raises from `getmany`)."""

    def __init__(self, buffered: dict[TopicPartition, list[Rec]], fail_at: int) -> None:
        super().__init__(buffered)
        self.fail_at = fail_at

    async def getmany(self, *partitions: Any, **options: Any) -> dict[TopicPartition, list[Rec]]:
        if self.calls + 1 == self.fail_at:
            self.calls += 1
            raise KafkaError("a fetch error")
        return await super().getmany(*partitions, **options)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=40))
def test_a_draw_that_fails_mid_batch_loses_nothing_it_took(fail_at: int) -> None:
    buffered = dict(
        partition(topic, n, [t // 3 for t in range(200)])
        for n, topic in enumerate(("orders", "signatures", "returns"))
    )
    consumer = Failing(buffered, fail_at)
    made = subscriber(max_records=60)

    async def run() -> list[Rec]:
        handed: list[Rec] = []
        while True:
            try:
                return await drain(made, consumer, handed)
            except KafkaError:  # FastStream's loop logs it and draws again
                continue

    handed = asyncio.run(run())
    for tp, records in buffered.items():
        assert [r for r in handed if (r.topic, r.partition) == (tp.topic, tp.partition)] == records
        assert consumer.committed[tp] == len(records)


async def test_a_revoked_partitions_kept_records_are_not_handed_over() -> None:
    orders = partition("orders", 0, list(range(1000)))
    returns = partition("returns", 0, list(range(1000)))
    consumer = Buffered(dict([orders, returns]))
    made = subscriber()
    await made.get_msg(consumer)
    (tp, kept), *_ = made.kept.items()
    consumer.assigned.discard(tp)  # a rebalance gave it to another instance
    consumer.positions[tp] = 0
    following = await made.get_msg(consumer)
    assert all((r.topic, r.partition) != (tp.topic, tp.partition) for r in following)
    await made.commits.commit()
    assert tp not in consumer.committed or consumer.committed[tp] <= kept[0].offset


class Rebalanced(Buffered):
    """A rebalance while a batch is drawn (aiokafka's draw waits for the new assignment): `gone`
    is given to another instance after the first draw."""

    def __init__(self, buffered: dict[TopicPartition, list[Rec]], gone: TopicPartition) -> None:
        super().__init__(buffered)
        self.gone = gone

    async def getmany(self, *partitions: Any, **options: Any) -> dict[TopicPartition, list[Rec]]:
        if self.calls == 1:  # after the batch's first draw
            self.assigned.discard(self.gone)
        return await super().getmany(*partitions, **options)


async def test_a_partition_given_away_while_its_batch_is_drawn_is_left_to_its_new_owner() -> None:
    orders = partition("orders", 0, list(range(1000)))
    returns = partition("returns", 1, list(range(1000)))
    consumer = Rebalanced(dict([orders, returns]), gone=orders[0])
    made = subscriber(max_records=60)
    batch = await made.get_msg(consumer)  # the first draw took orders' records
    assert batch
    assert all(r.topic == "returns" for r in batch)
    assert orders[0] not in made.kept
    await made.commits.commit()
    assert orders[0] not in consumer.committed
    # Given back, at its committed offset: every record still comes once, in its partition's order.
    consumer.assigned.add(orders[0])
    consumer.positions[orders[0]] = 0
    handed = await drain(made, consumer, list(batch))
    for tp, records in (orders, returns):
        assert [r for r in handed if (r.topic, r.partition) == (tp.topic, tp.partition)] == records


async def test_a_batch_with_headers_that_are_not_text_is_still_handed_to_its_handler() -> None:
    # Kafka's header values are bytes, or null; FastStream's parser decodes each as UTF-8. A batch
    # it fails to parse is neither acknowledged nor sought back: the next batch's commit passes it.
    records = tuple(
        ConsumerRecord("returns", 0, n, n, 0, None, b"{}", None, 0, 2, headers)
        for n, headers in enumerate(([], [("trace", b"\xff\x00")], [("x", None)], [("y", b"ok")]))
    )
    made = subscriber()
    with pytest.raises((UnicodeDecodeError, AttributeError)):
        await made.parser.parse_batch(records)
    message = await made._parser(records)  # what FastStream parses each batch with
    assert message.raw_message == records  # the records as they came
    assert message.raw_message[1].headers == [("trace", b"\xff\x00")]
    assert message.batch_headers[3] == {"y": "ok"}


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


class Group:
    """A consumer group as one instance of it sees it: each partition's log on the broker, the
    committed offsets, and what the service applied (its inbox: a record applied again is a
    duplicate). `applied` checks that each partition's records are first applied in their order,
    none passed over. Another instance reads the partitions given to it: from their committed
    offsets, some of their records at a time."""

    def __init__(self, rng: random.Random, partitions: int) -> None:
        self.rng = rng
        self.tps = [
            TopicPartition(("orders", "signatures", "returns")[n % 3], n) for n in range(partitions)
        ]
        self.log: dict[TopicPartition, list[Rec]] = {tp: [] for tp in self.tps}
        self.committed: dict[TopicPartition, int] = {}
        self.done = dict.fromkeys(self.tps, 0)  # each partition's records applied, from its first
        self.now = 0
        self.unsettled = True  # records produced, fetch and commit errors, rebalances

    def produce(self) -> None:
        tp = self.rng.choice(self.tps)
        for _ in range(self.rng.randint(1, 60)):
            self.now += self.rng.randint(0, 3)
            # now and then a producer's clock behind or ahead
            ts = self.now if self.rng.random() < 0.9 else self.rng.randint(0, self.now + 500)
            self.log[tp].append(Rec(tp.topic, tp.partition, len(self.log[tp]), ts))

    def applied(self, record: Rec) -> None:
        tp = TopicPartition(record.topic, record.partition)
        first = self.done[tp]  # the next record to apply
        assert record.offset <= first, f"{tp}: {record.offset} applied before {first}"
        self.done[tp] = max(first, record.offset + 1)

    def read_elsewhere(self, tp: TopicPartition) -> None:
        start = self.committed.get(tp, 0)
        end = self.rng.randint(start, len(self.log[tp]))
        for record in self.log[tp][start:end]:
            self.applied(record)
        self.committed[tp] = end


class Member:
    """aiokafka's consumer in `group`, as the subscriber uses it; at each await, what may
    happen meanwhile: records produced and fetched, a fetch or commit error, a rebalance. Its
    rebalances are eager: every partition's position is reset to its committed offset, those
    given away are read by another instance meanwhile."""

    def __init__(self, group: Group, assigned: set[TopicPartition]) -> None:
        self.group = group
        self.rebalanced(assigned)

    def rebalanced(self, assigned: set[TopicPartition]) -> None:
        for tp in set(self.group.tps) - assigned:
            self.group.read_elsewhere(tp)
        self.assigned = set(assigned)
        self.positions: dict[TopicPartition, int | None] = dict.fromkeys(assigned)
        self.fetched: dict[TopicPartition, int] = {}  # the offset each buffer reaches
        self.highwaters: dict[TopicPartition, int] = {}

    async def meanwhile(self) -> None:
        group, rng = self.group, self.group.rng
        if not group.unsettled:
            self.fetch(10**9)
            return
        if rng.random() < 0.3:
            group.produce()
        if rng.random() < 0.5:
            self.fetch(rng.randint(0, 80))
        if rng.random() < 0.04:
            self.rebalanced({tp for tp in group.tps if rng.random() < 0.6})

    def position_of(self, tp: TopicPartition) -> int:
        if (position := self.positions[tp]) is None:
            position = self.positions[tp] = self.group.committed.get(tp, 0)
            self.fetched.pop(tp, None)
        return position

    def fetch(self, most: int) -> None:
        for tp in self.assigned:
            position = self.position_of(tp)
            reached = max(self.fetched.pop(tp, position), position)
            self.fetched[tp] = min(len(self.group.log[tp]), reached + most)  # buffered last
            self.highwaters[tp] = len(self.group.log[tp])

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, tp: TopicPartition) -> int | None:
        assert tp in self.assigned, "Partition is not assigned"
        return self.highwaters.get(tp)

    async def position(self, tp: TopicPartition) -> int:
        await self.meanwhile()
        if tp not in self.assigned:
            raise IllegalStateError(f"{tp} is not assigned")
        return self.position_of(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assigned:
            raise IllegalStateError(f"{tp} is not assigned")
        self.positions[tp] = offset
        self.fetched.pop(tp, None)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await self.meanwhile()
        if any(tp not in self.assigned for tp in offsets):
            raise IllegalStateError("not assigned")
        if self.group.unsettled and self.group.rng.random() < 0.05:
            raise CommitFailedError("the group rebalanced")
        self.group.committed.update(offsets)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Rec]]:
        await self.meanwhile()
        if self.group.unsettled and self.group.rng.random() < 0.02:
            raise KafkaError("a fetch error")
        left = max_records or 500
        out: dict[TopicPartition, list[Rec]] = {}
        for tp, reached in list(self.fetched.items()):
            if (partitions and tp not in partitions) or tp not in self.assigned or not left:
                continue
            position = self.position_of(tp)
            if records := self.group.log[tp][position : min(reached, position + left)]:
                out[tp] = records
                self.positions[tp] = position + len(records)
                left -= len(records)
        return out


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32),
    st.integers(min_value=1, max_value=6),
    st.sampled_from([20, 37, 60, 200]),
)
def test_rebalances_nacks_and_errors_at_any_point_pass_over_and_reorder_nothing(
    seed: int, partitions: int, max_records: int
) -> None:
    """Batches consumed as FastStream does (acknowledged; or nacked, after none or some of their
    records were applied: a failure, a cut round), with records produced, fetch and commit
    errors, rebalances and a restarted consumer at any of the consumer's awaits, or while a
    batch is applied. Each partition's records are applied in order and none is passed over,
    no commit passes a record not applied, and once all is quiet every record comes."""
    rng = random.Random(seed)
    group = Group(rng, partitions)
    for _ in range(rng.randint(1, 8)):
        group.produce()
    made = subscriber(max_records=max_records, linger=rng.choice([0.0, 1e-6]))
    member = Member(group, set(group.tps))

    async def consume() -> None:
        try:
            batch = await made.get_msg(member)
        except KafkaError:  # FastStream's loop logs it and draws again
            return
        if not batch:
            return
        await member.meanwhile()  # while the batch is applied
        fate = rng.random() if group.unsettled else 0.0
        if fate < 0.8:
            for record in batch:
                group.applied(record)
            with suppress(KafkaError):  # logged by FastStream
                await made.commits.commit()
            assert all(n <= group.done[tp] for tp, n in group.committed.items())
            return
        if fate < 0.9:  # a cut round: what was applied is committed, the batch nacked
            for record in batch[: rng.randint(1, len(batch))]:
                group.applied(record)
        # FastStream's nack: each partition sought back to its earliest record in the batch
        earliest: dict[TopicPartition, int] = {}
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            earliest[tp] = min(earliest.get(tp, record.offset), record.offset)
        with suppress(KafkaError):  # logged by FastStream, the other partitions not sought
            for tp, offset in earliest.items():
                made.commits.seek(tp, offset)

    async def run() -> None:
        nonlocal member
        for _ in range(rng.randint(5, 80)):
            await consume()
            if rng.random() < 0.03:  # the subscriber restarted: a new consumer
                member = Member(group, {tp for tp in group.tps if rng.random() < 0.7})
        group.unsettled = False
        member.rebalanced(set(group.tps))
        for _ in range(400):
            await consume()
            if all(group.committed.get(tp, 0) == len(group.log[tp]) for tp in group.tps):
                break

    asyncio.run(run())
    for tp in group.tps:
        assert group.done[tp] == group.committed.get(tp, 0) == len(group.log[tp])
