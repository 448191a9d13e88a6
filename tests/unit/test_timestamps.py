"""Timestamps read by the C parser are the instants the field-by-field reading gives."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from shared.contracts.primitives import (
    _RFC3339,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    _from_fields,
    _in_range,
    parse_timestamp,
)


def _outcome(read: object) -> tuple[object, ...]:
    try:
        value = read()  # type: ignore[operator]
    except PydanticCustomError as error:
        return ("refused", error.type, str(error))
    assert isinstance(value, datetime)
    return ("read", value, value.utcoffset(), type(value.tzinfo), value.tzinfo)


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=n, max_size=n)


def _field(*edges: str) -> st.SearchStrategy[str]:
    """Two digits: the values at the edges of the field's range, and ones far outside."""
    return st.sampled_from([*edges, "00", "99"])


# Every shape the RFC 3339 pattern takes, with fields in and out of range: impossible days,
# hour 24, second 60, offsets past 23:59, fractions of any length, both separators' cases.
stamps = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, off: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{off}",
    st.sampled_from(["1969", "1970", "2024", "2023", "8999", "9000", "0001", "9999"]),
    _field("01", "02", "12", "13"),
    _field("01", "28", "29", "30", "31", "32"),
    st.sampled_from(["T", "t", " "]),
    _field("00", "23", "24"),
    _field("00", "59", "60"),
    _field("00", "59", "60", "61"),
    st.one_of(st.just(""), st.integers(1, 12).flatmap(lambda n: _digits(n).map(".".__add__))),
    st.one_of(
        st.sampled_from(["Z", "z"]),
        st.builds(
            lambda sign, h, m: f"{sign}{h}:{m}",
            st.sampled_from("+-"),
            _field("00", "23", "24"),
            _field("00", "59", "60"),
        ),
    ),
)


@settings(max_examples=300)
@given(stamps)
def test_parse_timestamp_reads_what_the_fields_say(stamp: str) -> None:
    match = _RFC3339.fullmatch(stamp)
    assert match is not None
    assert _outcome(lambda: parse_timestamp(stamp)) == _outcome(
        lambda: _in_range(_from_fields(match))
    )


def test_an_offset_minute_of_60_is_refused() -> None:
    # The C parser alone would take it as an hour.
    assert _outcome(lambda: parse_timestamp("2024-05-01T10:00:00+00:60"))[:2] == (
        "refused",
        "timestamp_format",
    )


@settings(max_examples=300)
@given(
    st.datetimes(
        min_value=datetime(1969, 12, 30),  # naive bounds: the offset is drawn below
        max_value=datetime(1971, 1, 2),
    )
    | st.datetimes(
        min_value=datetime(8998, 12, 30),
        max_value=datetime(9000, 1, 2),
    ),
    st.integers(-(24 * 60 - 1), 24 * 60 - 1),
)
def test_the_window_is_that_of_the_instants(moment: datetime, offset_minutes: int) -> None:
    """Years strictly inside the window are taken without comparing instants: at its edge
    years, any offset, the outcome is the comparison's."""
    value = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    expected = (
        ("read", value, value.utcoffset(), type(value.tzinfo), value.tzinfo)
        if 1970 <= value.year < 9000 and MIN_TIMESTAMP <= value < MAX_TIMESTAMP
        else ("refused", "timestamp_out_of_range")
    )
    assert _outcome(lambda: _in_range(value))[: len(expected)] == expected
