"""A consumer's batch drawn from its partitions up to one point in time, in time order.

aiokafka hands over a partition's fetched records before the next partition's: on a backlog a
batch of 500 is one partition's (in `make bench` 121 of 160 batches were). A service reading
several topics then applies each topic's hours ahead of the others: a return requested before
the order it names is paid, or its parcel shipped, waits for them (a decision, a timer) and is
assessed again when they come, each aggregate read back and written again in a later batch;
work, and outputs (`return.pending`), that the same events in the order they happened would
not cause. A live stream does not see it (its batches hold what just arrived); a service
catching up after an outage does.

`TimeOrderedBatches` draws a batch in small chunks, each time from the partition whose last
drawn record is the oldest, so every partition's records in the batch reach about the same
instant, and hands them over merged by record timestamp (ties: the service's topics in the
order it lists them, its events' natural order). Each partition's records keep their order,
which is all Kafka promises; records of different topics had no order to keep.

A batch that leaves records behind is cut at one instant: the least of the times that the
partitions with records left (buffered, or still on the broker) were drawn to. The records
after it are kept for the next batch, so no batch hands over a return whose order, a chunk
behind in its own partition, comes in the next (in `make bench` 39 % of the returns waited
so, a chunk being about as long as a batch there). The batch's acknowledgement then commits
each partition's offset after its last record handed over (`HandedOverCommits`), not the
consumer's position past the kept ones; kept records of a partition sought back (a nack) or
given to another instance are dropped and fetched again. A crash loses nothing: what was kept
is past the committed offsets. A record is kept KEEP_AT_MOST (4) batches at most, so no
timestamp (a producer's clock far ahead) holds its partition back for longer. A draw that
fails after others of the batch were taken (a fetch error, a rebalance) keeps what they took
for the next batch: the consumer's position is past those records, and a later commit of
their partition would otherwise pass them. A partition that a rebalance during the draw gave
to another instance is left to it, whatever the batch drew of it.

When the first draw does not fill a chunk, nothing else was buffered: a live stream's batch,
which then waits `linger` (KAFKA_BATCH_LINGER_MS, 100 ms) for the records on their way before it
is drawn again. A downstream service fed at its upstream's pace (the refund ledger behind
returns) or a steady load would otherwise apply batches of a few records, each paying a
transaction's fixed cost; Kafka's own `fetch.min.bytes` does this on the broker's side, but not
every broker honours it (the embedded one does not).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from faststream.kafka.subscriber.usecase import BatchSubscriber

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
    from faststream.kafka.parser import AioKafkaBatchParser
    from faststream.message import StreamMessage

# Records drawn from one partition at a time once the batch is being balanced, and the most
# each partition's first draw takes (less when the service reads many partitions).
CHUNK = 20
# How many batches a record may be kept behind a cut before it is handed over whatever the cut:
# a record whose timestamp runs far ahead (a producer's clock) holds its partition back for a
# few batches (a backlog's batch takes ~0.1 s), not for as long as other partitions have more.
# Once (1) gave away half of what the cut saves in `make bench`: a kept record's next batch
# often does not reach its instant yet.
KEEP_AT_MOST = 4


class TimeOrderedBatches(BatchSubscriber):
    """FastStream's batch subscriber drawing its batches in time order (see the module)."""

    __slots__ = ()

    # Set by `draw_in_time_order`: a topic's place in the service's list, and the seconds a
    # batch of fewer than a chunk waits for more records.
    topic_rank: dict[str, int]
    linger: float
    # Records drawn but not handed over (a batch cut at an instant), by partition, and how many
    # batches each partition's first kept record has been kept.
    kept: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    kept_times: dict[TopicPartition, int]
    # Each partition's next offset after the last batch handed over: what its acknowledgement
    # commits.
    handed: dict[TopicPartition, int]
    commits: HandedOverCommits | None

    async def get_msg(self, consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[Any, Any], ...]:
        assert consumer, "You should setup subscriber at first."
        if self.commits is None or self.commits.consumer is not consumer:
            # Before the first batch is parsed: its acknowledgement commits through this. A new
            # consumer (the subscriber restarted) starts from the committed offsets: nothing
            # an earlier one kept is handed over.
            self.commits = HandedOverCommits(consumer, self)
            self.parser._setup(self.commits)
            self.kept, self.kept_times = {}, {}
        drawn: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
        try:
            return await self._draw_batch(consumer, drawn)
        except BaseException:
            # A draw failed (a fetch error, a rebalance, shutdown) after others were taken: the
            # consumer's position is past them, so they are kept for the next batch, not lost
            # (a later commit of their partition would pass them).
            for tp, records in drawn.items():
                if records:
                    self.kept[tp] = records + self.kept.get(tp, [])
            raise

    async def _draw_batch(
        self,
        consumer: AIOKafkaConsumer,
        drawn: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> tuple[ConsumerRecord[Any, Any], ...]:
        """The batch, drawn into `drawn` (each partition's records as taken from the consumer,
        the last batch's kept ones first)."""
        limit = self.max_records or 500
        # Partitions that may hold more, the one whose last drawn record is oldest first.
        more: list[tuple[int, int, TopicPartition]] = []
        look_at: list[TopicPartition] = []
        await self._take_kept(consumer, drawn)
        # Each partition's records kept before, and how many batches the first of them was
        # kept: kept KEEP_AT_MOST times, they are handed over whatever the cut.
        carried = {tp: len(records) for tp, records in drawn.items()}
        times, self.kept_times = self.kept_times, {}
        due = {tp: n for tp, n in carried.items() if times.get(tp, 1) >= KEEP_AT_MOST}
        if drawn:
            # The last batch was cut: its kept records first, each partition possibly with more.
            for n, (tp, records) in enumerate(drawn.items()):
                heapq.heappush(more, (records[-1].timestamp, -1 - n, tp))
            total = sum(map(len, drawn.values()))
        else:
            first = await consumer.getmany(
                timeout_ms=self.batch_timeout_ms, max_records=min(CHUNK, limit)
            )
            drawn.update((tp, list(records)) for tp, records in first.items() if records)
            total = sum(map(len, drawn.values()))
            if total < min(CHUNK, limit):
                # All that was buffered. Nothing: FastStream's loop asks again (the draw waited
                # already). A few records: on a stream (no partition behind), wait `linger` for
                # what is on its way; then look at every partition again.
                if not total or self.linger <= 0:
                    return self._handed_over(drawn)
                if not any(_behind(consumer, tp, records) for tp, records in drawn.items()):
                    # a trickle, not a backlog whose next records are being fetched
                    await asyncio.sleep(self.linger)
                look_at = list(consumer.assignment())
            else:
                # The chunk was filled: the last partition it drew from may hold more.
                last = next(reversed(drawn))
                heapq.heappush(more, (drawn[last][-1].timestamp, 0, last))
        if not look_at:
            # Each other partition's head, then the oldest's next chunk.
            look_at = [tp for tp in consumer.assignment() if tp not in drawn]
        head = max(1, min(CHUNK, limit // (2 * max(1, len(look_at)))))

        async def take(tp: TopicPartition, up_to: int, n: int) -> None:
            """Draw up to `up_to` more of `tp`'s records; a full draw may have left more."""
            nonlocal total
            want = min(up_to, limit - total)
            records = await self._draw(consumer, tp, want)
            if records:
                drawn.setdefault(tp, []).extend(records)
                total += len(records)
                if len(records) == want:
                    heapq.heappush(more, (records[-1].timestamp, n, tp))

        for n, tp in enumerate(look_at, start=1):
            if total >= limit:
                break
            await take(tp, head, n)
        while more and total < limit:
            _, n, tp = heapq.heappop(more)
            await take(tp, CHUNK, n)
        # A rebalance during the draw (aiokafka's draw waits for it) gave partitions to another
        # instance, which reads them from their committed offsets; `highwater` asserts on them.
        assigned = consumer.assignment()
        for tp in [tp for tp in drawn if tp not in assigned]:
            del drawn[tp]
        # Partitions with more records buffered or still to be fetched: hand over the records up
        # to the instant all of them were drawn to, keep the later ones for the next batch.
        unfinished = {tp for _, _, tp in more if tp in drawn}
        unfinished.update(tp for tp, records in drawn.items() if _behind(consumer, tp, records))
        if unfinished:
            # The latest record of each: the least bounds the batch.
            upto = min(max(map(self._when, drawn[tp])) for tp in unfinished)
            self._cut(drawn, upto, due)
            for tp in self.kept:
                if len(drawn[tp]) < carried.get(tp, 0):  # records kept before, kept again
                    self.kept_times[tp] = times.get(tp, 1) + 1
        return self._handed_over(drawn)

    def _cut(
        self,
        drawn: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
        upto: tuple[int, int],
        due: dict[TopicPartition, int],
    ) -> None:
        """Move each partition's records from the first one after `upto` (in time order,
        `_when`) on to `kept`, past its first `due` ones (kept as often as they may be). The
        partition that sets `upto` is handed over whole: each batch makes progress."""
        for tp, records in drawn.items():
            for i in range(due.get(tp, 0), len(records)):
                if self._when(records[i]) > upto:
                    self.kept[tp] = records[i:]
                    del records[i:]
                    break

    async def _take_kept(
        self,
        consumer: AIOKafkaConsumer,
        drawn: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        """Move the records the last batch kept into `drawn`, of each partition still this
        consumer's and not sought elsewhere since. A partition given to another instance is
        read there from its committed offset; one sought back (a nack) is fetched again."""
        assigned = consumer.assignment() if self.kept else set()
        for tp in list(self.kept):
            records = self.kept[tp]
            if tp not in assigned:
                del self.kept[tp]
                continue
            position = await consumer.position(tp)
            del self.kept[tp]
            if position == records[-1].offset + 1:
                drawn[tp] = records
            elif position > records[0].offset:  # never past a record not handed over
                consumer.seek(tp, records[0].offset)

    def _handed_over(
        self, drawn: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> tuple[ConsumerRecord[Any, Any], ...]:
        self.handed = {tp: records[-1].offset + 1 for tp, records in drawn.items() if records}
        return self._merged(drawn.values())

    @staticmethod
    async def _draw(
        consumer: AIOKafkaConsumer, tp: TopicPartition, records: int
    ) -> list[ConsumerRecord[Any, Any]]:
        """Up to `records` of `tp`'s buffered records, without waiting."""
        return list((await consumer.getmany(tp, timeout_ms=0, max_records=records)).get(tp, ()))

    def _when(self, record: ConsumerRecord[Any, Any]) -> tuple[int, int]:
        """Where a record goes in time order: its timestamp, then its topic's place in the
        service's list (of the same millisecond, an order before a return)."""
        return record.timestamp, self.topic_rank.get(record.topic, 0)

    def _merged(
        self, partitions: Iterable[Sequence[ConsumerRecord[Any, Any]]]
    ) -> tuple[ConsumerRecord[Any, Any], ...]:
        lists = [p for p in partitions if p]
        if len(lists) == 1:
            return tuple(lists[0])
        # heapq.merge compares the heads only: each partition's records keep their order.
        return tuple(heapq.merge(*lists, key=self._when))

    async def _parse(self, records: tuple[ConsumerRecord[Any, Any], ...]) -> StreamMessage[Any]:
        """FastStream's batch parser, which decodes each header as UTF-8. Kafka's header values
        are bytes, or null: a batch it failed to parse was neither acknowledged nor sought back,
        and the next batch's commit passed its records unread. Such a batch is parsed with its
        headers made readable; the handler gets its records as they came."""
        parse = cast("AioKafkaBatchParser", self.parser).parse_batch
        try:
            return await parse(records)
        except (UnicodeDecodeError, AttributeError):
            readable = tuple(replace(r, headers=_readable(r.headers)) for r in records)
            message = await parse(readable)
            message.raw_message = records
            return message


class HandedOverCommits:
    """The consumer as a batch's acknowledgement uses it (FastStream's message calls `commit()`
    on success, `seek()` back on a nack): commits each partition's offset after the last record
    handed over, not the consumer's position, which is past the records a cut batch kept."""

    def __init__(self, consumer: AIOKafkaConsumer, batches: TimeOrderedBatches) -> None:
        self.consumer = consumer
        self.batches = batches

    async def commit(self) -> None:
        assigned = self.consumer.assignment()
        offsets = {tp: n for tp, n in self.batches.handed.items() if tp in assigned}
        if offsets:
            await self.consumer.commit(offsets)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.batches.kept.pop(partition, None)  # fetched again from `offset`
        self.consumer.seek(partition, offset)


def _readable(headers: Sequence[tuple[str, bytes | None]]) -> list[tuple[str, bytes]]:
    """Header values FastStream can decode: null as empty, bytes that are not UTF-8 replaced."""
    return [(key, (value or b"").decode(errors="replace").encode()) for key, value in headers]


def _behind(
    consumer: AIOKafkaConsumer, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]
) -> bool:
    """Whether the partition holds records past those drawn (its high watermark, as the last
    fetch told it): a backlog whose buffers are being filled, not a trickle."""
    highwater = consumer.highwater(tp)
    return bool(records) and highwater is not None and highwater > records[-1].offset + 1


def draw_in_time_order(
    subscriber: Any, topics: Sequence[str], *, linger: float = 0.0
) -> TimeOrderedBatches:
    """Make FastStream's batch `subscriber` (as `KafkaBroker.subscriber(..., batch=True)` made
    it) draw its batches in time order, a small one after waiting `linger` seconds for more.
    FastStream is pinned: a release whose batch subscriber is another class fails here, at
    start-up, not by consuming otherwise."""
    if type(subscriber) is not BatchSubscriber:
        raise TypeError(f"expected FastStream's BatchSubscriber, got {type(subscriber).__name__}")
    subscriber.__class__ = TimeOrderedBatches
    made = cast(TimeOrderedBatches, subscriber)
    made.topic_rank = {topic: n for n, topic in enumerate(topics)}
    made.linger = linger
    made.kept = {}
    made.kept_times = {}
    made.handed = {}
    made.commits = None
    made._parser = made._parse  # FastStream's handler and its acknowledgement parse with it
    return made
