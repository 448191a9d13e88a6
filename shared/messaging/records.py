"""Reading fetched record batches whatever a record's header keys hold.

Kafka's header keys are strings, but no broker checks that their bytes are UTF-8 (Java's
reader replaces what is not). aiokafka's reader decodes each key strictly and raised
`UnicodeDecodeError` in the middle of a fetch: not a Kafka error, so FastStream's consume task
ended (and was restarted, to fail on the same record again), every partition of the consumer
stopped behind one record. The records a fetch returns are read by aiokafka's reader as before;
a batch it fails on that way is read again here, each header key decoded with the bytes that are
not UTF-8 replaced. Keys and values stay the bytes they were: the processor judges them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import _DefaultRecordBatchPy, _DefaultRecordPy
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import decode_varint

# A v2 batch: base offset (8 bytes), length (4), then `length` bytes, of which the first 49 are
# the rest of its header and the records follow.
_LENGTH = struct.Struct(">i")
_LOG_OVERHEAD = 12
_MAGIC = 16  # after the partition leader epoch (4 bytes); where the old formats have theirs


class LenientMemoryRecords:
    """aiokafka's `MemoryRecords` over a fetch's bytes, whose v2 batches fall back to
    `_lenient_records` when a header key is not UTF-8."""

    __slots__ = ("_data", "_pos", "_records")

    def __init__(self, data: bytes) -> None:
        self._records = MemoryRecords(data)
        self._data = data
        self._pos = 0

    def size_in_bytes(self) -> int:
        return self._records.size_in_bytes()

    def has_next(self) -> bool:
        return self._records.has_next()

    def next_batch(self) -> Any:
        start = self._pos
        batch = self._records.next_batch()
        if batch is None:
            return None
        # aiokafka's reader hands out the buffer's batches one after the other, each the length
        # its header says: the same bytes, found the same way.
        (length,) = _LENGTH.unpack_from(self._data, start + 8)
        self._pos = start + _LOG_OVERHEAD + length
        if self._data[start + _MAGIC] < 2:  # the old formats have no headers
            return batch
        return _LenientBatch(batch, memoryview(self._data)[start : self._pos])


class _LenientBatch:
    """One batch as aiokafka reads it; from a record whose header key is not UTF-8 on, read by
    `_lenient_records`."""

    __slots__ = ("_batch", "_fallback", "_raw", "_read")

    def __init__(self, batch: Any, raw: memoryview) -> None:
        self._batch = batch
        self._raw = raw
        self._read = 0
        self._fallback: Iterator[_DefaultRecordPy] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> _LenientBatch:
        iter(self._batch)  # decompresses it
        return self

    def __next__(self) -> Any:
        if self._fallback is None:
            try:
                record = next(self._batch)
            except UnicodeDecodeError:
                self._fallback = _lenient_records(self._raw, skip=self._read)
            else:
                self._read += 1
                return record
        return next(self._fallback)


def _lenient_records(raw: memoryview, *, skip: int) -> Iterator[_DefaultRecordPy]:
    """The records of the v2 batch `raw` after its first `skip`, read as aiokafka's reader reads
    them but for header keys, whose bytes that are not UTF-8 are replaced."""
    batch = _DefaultRecordBatchPy(raw)  # its header's fields, and its decompression
    try:
        iter(batch)  # decompresses its records (aiokafka's codecs) from where they start
        body = bytes(batch._buffer)
        pos = batch._pos
        for index in range(batch._num_records):
            record, pos = _read_record(batch, body, pos)
            if index >= skip:
                yield record
    except (ValueError, IndexError, KeyError, struct.error) as exc:
        raise CorruptRecordException(f"Found invalid record structure: {exc!r}") from exc


def _read_record(batch: _DefaultRecordBatchPy, buffer: bytes, pos: int) -> tuple[Any, int]:
    length, pos = decode_varint(buffer, pos)
    end = pos + length
    _, pos = decode_varint(buffer, pos)  # attributes: none defined
    delta, pos = decode_varint(buffer, pos)
    log_append = batch.timestamp_type == batch.LOG_APPEND_TIME
    timestamp = batch.max_timestamp if log_append else batch.first_timestamp + delta
    offset_delta, pos = decode_varint(buffer, pos)
    key, pos = _read_bytes(buffer, pos)
    value, pos = _read_bytes(buffer, pos)
    count, pos = decode_varint(buffer, pos)
    if count < 0:
        raise ValueError(f"{count} headers")
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        name, pos = _read_bytes(buffer, pos)
        if name is None:
            raise ValueError("a header without a key")
        header, pos = _read_bytes(buffer, pos)
        headers.append((name.decode("utf-8", "replace"), header))
    if pos != end:
        raise ValueError(f"a record of {length} bytes read as {length + pos - end}")
    offset = batch.base_offset + offset_delta
    return _DefaultRecordPy(offset, timestamp, batch.timestamp_type, key, value, headers), pos


def _read_bytes(buffer: bytes, pos: int) -> tuple[bytes | None, int]:
    size, pos = decode_varint(buffer, pos)
    if size < 0:
        return None, pos
    if pos + size > len(buffer):
        raise ValueError("a field past the end of its record")
    return buffer[pos : pos + size], pos + size


def read_header_keys_leniently() -> None:
    """Make aiokafka's consumers (every one in the process) read fetched batches through
    `LenientMemoryRecords`. aiokafka is pinned: a release whose fetcher no longer reads with
    `MemoryRecords` fails here, at start-up."""
    current = getattr(fetcher, "MemoryRecords", None)
    if current is LenientMemoryRecords:
        return
    if current is not MemoryRecords:
        raise TypeError("aiokafka's fetcher no longer reads its batches with MemoryRecords")
    fetcher.MemoryRecords = LenientMemoryRecords
