"""A recorded history of input events: one JSON line per record (`aftersales record` writes it;
the platform may export the same format), read back in the order the services would see it.

A line: {"topic": "orders", "partition": 0, "offset": 41, "key": "O-1", "event": {...}}.
`topic` and `event` are required; `partition`, `offset` and `key` may be null (an export that
does not know them). `event` is the CloudEvent as it was on the topic; a record whose value was
not JSON is kept as text under "value" instead, so that it is counted as the poison it is.
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import json
import sys
import time as wallclock
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from shared.contracts import CloudEvent, InvalidEvent, parse_event, topics
from shared.messaging.deadletters import read_records
from shared.messaging.kafka import client_security
from shared.settings import Settings


class HistoryError(ValueError):
    """A line that is not a record of the format: one line naming the file, line and problem."""


@dataclass(frozen=True)
class RecordedEvent:
    topic: str
    partition: int | None
    offset: int | None
    key: str | None
    event: CloudEvent

    @property
    def time(self) -> datetime:
        return self.event.time


@dataclass
class History:
    """The valid events in replay order, and the invalid ones counted by reason."""

    events: list[RecordedEvent] = field(default_factory=list)
    invalid: Counter[str] = field(default_factory=Counter)
    lines: int = 0
    digest: str = ""  # sha256 of the file, to name the history in a report

    @property
    def start(self) -> datetime | None:
        return min((e.time for e in self.events), default=None)

    @property
    def end(self) -> datetime | None:
        return max((e.time for e in self.events), default=None)


def record_line(
    topic: str, partition: int | None, offset: int | None, key: bytes | None, value: bytes | None
) -> str:
    """One line of a recording for a Kafka record (keys and text as UTF-8, bad bytes replaced)."""
    line: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None if key is None else key.decode("utf-8", "replace"),
    }
    try:
        line["event"] = json.loads(value or b"")
    except ValueError:
        line["value"] = (value or b"").decode("utf-8", "replace")
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The history (tens of thousands of events) is left out of garbage collection and young
    objects are collected less often: full collections walking it cost a quarter of a replay."""
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(50_000, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def read_history(path: Path) -> History:
    """Read a recording; invalid events are counted by the reason the services would give
    when dead-lettering them; a line that is not a record raises HistoryError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HistoryError(f"{path}: cannot read the events file: {exc.strerror}") from None
    with fewer_collections():
        return _read(path, raw)


def _read(path: Path, raw: bytes) -> History:
    history = History(digest=hashlib.sha256(raw).hexdigest())
    streams: dict[tuple[str, int | None], list[tuple[int, RecordedEvent]]] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        history.lines += 1
        parsed = _parse_line(path, number, line, history.invalid)
        if parsed is not None:
            streams.setdefault((parsed.topic, parsed.partition), []).append((number, parsed))
    history.events = list(_replay_order(streams))
    return history


def _parse_line(
    path: Path, number: int, line: bytes, invalid: Counter[str]
) -> RecordedEvent | None:
    where = f"{path}:{number}"
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise HistoryError(f"{where}: not a JSON line ({exc})") from None
    if not isinstance(record, dict):
        raise HistoryError(f"{where}: a line must be a JSON object with topic and event")
    topic = record.get("topic")
    if topic not in topics.INPUT_TOPICS:
        known = ", ".join(topics.INPUT_TOPICS)
        raise HistoryError(f"{where}: topic {topic!r} is not an input topic ({known})")
    partition, offset, key = record.get("partition"), record.get("offset"), record.get("key")
    for name, value, kind in (
        ("partition", partition, int),
        ("offset", offset, int),
        ("key", key, str),
    ):
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise HistoryError(f"{where}: {name} must be {kind.__name__} or null")
    if "event" in record:
        value = json.dumps(record["event"], ensure_ascii=False).encode("utf-8")
    elif isinstance(record.get("value"), str):
        value = record["value"].encode("utf-8", "surrogatepass")
    else:
        raise HistoryError(f"{where}: the line has no event")
    try:
        event = parse_event(value, topic=topic, key=None if key is None else key.encode())
    except InvalidEvent as exc:
        invalid[exc.reason] += 1  # what the services would dead-letter: skipped, counted
        return None
    return RecordedEvent(topic, partition, offset, key, event)


def _replay_order(
    streams: dict[tuple[str, int | None], list[tuple[int, RecordedEvent]]],
) -> Iterator[RecordedEvent]:
    """Each partition in offset order (file order where offsets are unknown), the partitions
    merged by event time; ties go to the partition named first (topic order, then number)."""
    ordered: list[list[RecordedEvent]] = []
    for topic, partition in sorted(
        streams, key=lambda tp: (topics.INPUT_TOPICS.index(tp[0]), tp[1] or 0)
    ):
        lines = streams[(topic, partition)]
        if all(item.offset is not None for _, item in lines):
            lines = sorted(lines, key=lambda pair: (pair[1].offset, pair[0]))
        ordered.append([item for _, item in lines])
    return heapq.merge(*ordered, key=lambda item: item.time)


# --- recording from the broker ------------------------------------------------------------


class Progress:
    """A line on stderr every few seconds while long work goes on, and one at the end."""

    def __init__(self, what: str, out: IO[str] = sys.stderr, every: float = 2.0) -> None:
        self.what = what
        self.count = 0
        self._out = out
        self._every = every
        self._next = wallclock.monotonic() + every

    def step(self, n: int = 1, detail: str = "") -> None:
        self.count += n
        if wallclock.monotonic() >= self._next:
            self._next = wallclock.monotonic() + self._every
            print(f"{self.what}: {self.count:,}{detail}", file=self._out, flush=True)

    def done(self, detail: str = "") -> None:
        print(f"{self.what}: {self.count:,}{detail}, done", file=self._out, flush=True)


async def record(
    settings: Settings,
    out: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Write the input topics' records to `out` (topic by topic, each partition in offset
    order), those the broker stamped in [since, until) when given; returns how many."""
    since_ms = None if since is None else int(since.timestamp() * 1000)
    until_ms = None if until is None else int(until.timestamp() * 1000)
    progress = Progress("recorded")
    partial = out.with_name(out.name + ".partial")
    try:
        file = partial.open("w", encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"record: cannot write {out}: {exc.strerror or exc}") from None
    try:
        with file:
            for topic in topics.INPUT_TOPICS:
                security = client_security(settings)
                async for r in read_records(settings.kafka_bootstrap_servers, topic, security):
                    if (since_ms is not None and r.timestamp < since_ms) or (
                        until_ms is not None and r.timestamp >= until_ms
                    ):
                        continue
                    file.write(record_line(topic, r.partition, r.offset, r.key, r.value) + "\n")
                    progress.step(detail=f" records ({topic})")
        partial.replace(out)  # a recording cut short leaves no file that looks whole
    finally:
        partial.unlink(missing_ok=True)
    progress.done(f" records written to {out}")
    return progress.count
