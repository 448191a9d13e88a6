"""Fetched record batches are read whatever their records' header keys hold
(shared/messaging/records.py)."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from shared.messaging.records import LenientMemoryRecords, read_header_keys_leniently


class RawKey(str):
    """A header key written as the bytes `raw` (the pure-Python builder encodes it so)."""

    raw = b""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return self.raw


def raw_key(name: str, raw: bytes) -> RawKey:
    key = RawKey(name)
    key.raw = raw
    return key


Headers = list[tuple[str, bytes | None]]


def batch(
    records: list[tuple[bytes | None, bytes | None, Headers]], *, base: int = 0, codec: int = 0
) -> bytes:
    builder = _DefaultRecordBatchBuilderPy(
        2,
        codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for n, (key, value, headers) in enumerate(records):
        assert (
            builder.append(
                n, timestamp=1_700_000_000_000 + n, key=key, value=value, headers=headers
            )
            is not None
        )
    data = bytearray(builder.build())
    data[0:8] = base.to_bytes(8, "big", signed=True)
    return bytes(data)


def read(
    data: bytes, *, crc: bool = True
) -> list[tuple[int, int, bytes | None, bytes | None, Headers]]:
    records = LenientMemoryRecords(data)
    out = []
    while records.has_next():
        each = records.next_batch()
        assert each.validate_crc() or not crc
        out.extend((r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in each)
    return out


ODD = raw_key("trace", b"\xff\xfetrace")


@pytest.mark.parametrize("codec", [0, 1], ids=["plain", "gzip"])
def test_a_header_key_that_is_not_utf8_is_read_with_its_neighbours(codec: int) -> None:
    first = batch(
        [
            (b"k0", b"v0", [("a", b"1")]),
            (None, b"v1", [(ODD, None)]),
            (b"k2", None, [("b", b"\xff")]),
        ],
        base=10,
        codec=codec,
    )
    second = batch([(b"k3", b"v3", [])], base=13)
    assert read(first + second) == [
        (10, 1_700_000_000_000, b"k0", b"v0", [("a", b"1")]),
        (11, 1_700_000_000_001, None, b"v1", [("\ufffd\ufffdtrace", None)]),
        (12, 1_700_000_000_002, b"k2", None, [("b", b"\xff")]),
        (13, 1_700_000_000_000, b"k3", b"v3", []),
    ]


def test_batches_read_as_aiokafka_reads_them() -> None:
    data = batch([(b"k", b"v", [("h", b"x"), ("n", None)]), (b"", b"", [])], base=5)
    data += batch([(None, None, [])], base=7, codec=1)
    plain = MemoryRecords(data)
    expected = []
    while plain.has_next():
        expected.extend(
            (r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in plain.next_batch()
        )
    assert read(data) == expected
    assert len(expected) == 3


@pytest.mark.parametrize("magic", [0, 1])
def test_batches_of_the_old_formats_are_read_as_aiokafka_reads_them(magic: int) -> None:
    old = LegacyRecordBatchBuilder(magic, 0, 1 << 20)
    for n in range(2):
        assert old.append(n, timestamp=1_700_000_000_000, key=b"k", value=b"v%d" % n) is not None
    data = bytes(old.build())
    plain, expected = MemoryRecords(data), []
    while plain.has_next():
        expected.extend(
            (r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in plain.next_batch()
        )
    assert read(data) == expected
    assert len(expected) == 2


def test_a_broken_record_after_an_odd_key_is_still_corrupt() -> None:
    data = bytearray(batch([(b"k", b"v", [(ODD, b"x")]), (b"k", b"v", [])]))
    data[-3] = 0x7F  # the second record's value runs past its end
    with pytest.raises(CorruptRecordException):
        read(bytes(data), crc=False)


def test_the_fetcher_reads_leniently_once_installed() -> None:
    read_header_keys_leniently()
    read_header_keys_leniently()  # again: nothing changes
    assert fetcher.MemoryRecords is LenientMemoryRecords


@pytest.mark.parametrize("codec_id", [1, 2, 3, 4], ids=["gzip", "snappy", "lz4", "zstd"])
def test_a_batch_compressed_with_any_kafka_codec_is_read(codec_id: int) -> None:
    # Producers compress with lz4, zstd or snappy as often as with gzip; without their library
    # aiokafka raised on every fetch of such a batch, and its partition waited for ever.
    records = [(b"k", b"v" * 100, [("h", b"x")]), (None, b"w", [])]
    assert read(batch(records, base=3, codec=codec_id)) == [
        (3, 1_700_000_000_000, b"k", b"v" * 100, [("h", b"x")]),
        (4, 1_700_000_000_001, None, b"w", []),
    ]
