"""Field types shared by every event model: ids, money, timestamps, quantities.

Models are strict (no "12" -> 12, no 12.0 -> 12, no 1 -> True) and ignore unknown fields
(tolerant reader). Validation errors carry a custom error type where the dead-letter reason
must be specific (see `refusals.REASON_ERROR_TYPES`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

MAX_AMOUNT = 10**12
"""Largest accepted amount in minor units (10 billion yuan): anything above is a bug upstream."""

MAX_QUANTITY = 100_000
"""Largest quantity of one line: more is a bug upstream, and sums over lines stay small."""
MAX_LINES = 1_000
"""Most lines (or payments, evidence links, cases...) one event may list."""

# Every timestamp must lie in this window (`timestamp_out_of_range`). Python's datetime ends at
# year 9999 and a deadline the rules derive (policy durations are at most a year, see
# shared.policy) must still fit, converted to UTC, in what Python and PostgreSQL store; the
# window leaves almost a thousand years of room. Nothing in after-sales predates 1970.
MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(9000, 1, 1, tzinfo=UTC)


class EventData(BaseModel):
    """Base of every event's `data` model."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


def field_error(
    model: str, loc: tuple[str | int, ...], error_type: str, message: str
) -> ValidationError:
    """A validation error pinned to one field, for checks that span several fields.

    Raised from a model validator, pydantic nests it under the model's own path, so the
    dead-letter detail names the exact field (e.g. `data.return_id`).
    """
    error = PydanticCustomError(error_type, message)
    return ValidationError.from_exception_data(
        model, [InitErrorDetails(type=error, loc=loc, input=None)]
    )


def _check_amount(value: int) -> int:
    if value < 0:
        raise PydanticCustomError("negative_amount", "must not be negative")
    if value > MAX_AMOUNT:
        raise PydanticCustomError("absurd_amount", "must not exceed 10**12 minor units")
    return value


def _check_signed_amount(value: int) -> int:
    if abs(value) > MAX_AMOUNT:
        raise PydanticCustomError("absurd_amount", "must not exceed 10**12 minor units in size")
    return value


# RFC 3339 date-time; the offset group is optional here only so that a missing offset gets
# its own error ("naive_timestamp") instead of a generic format error.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?",
    re.ASCII,
)


def _naive_error() -> PydanticCustomError:
    return PydanticCustomError(
        "naive_timestamp", "must carry an explicit UTC offset (RFC 3339, e.g. +08:00 or Z)"
    )


# The usual shape, whose every field the C parser reads to the same instant and offset as
# `_from_fields` at a fraction of the cost: at most microseconds, and an offset's minute below
# 60 (`datetime.fromisoformat` would take 60). Anything else, or what the C parser refuses, is
# read (or explained) field by field.
_PLAIN_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[Zz]|[+-]\d{2}:[0-5]\d)", re.ASCII
)


def parse_timestamp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp; a missing offset or any other format is an error."""
    if _PLAIN_RFC3339.fullmatch(value) is not None:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return _in_range(parsed)
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "timestamp_format", "must be an RFC 3339 timestamp such as 2024-05-01T10:00:00+08:00"
        )
    if match.group(8) is None and match.group(9) is None:
        raise _naive_error()
    return _in_range(_from_fields(match))


def _from_fields(match: re.Match[str]) -> datetime:
    """The instant of an RFC 3339 match with an offset, built field by field."""
    year, month, day, hour, minute, second, fraction, _, sign, off_h, off_m = match.groups()
    try:
        tz: timezone = UTC
        if sign is not None:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            tz = timezone(-offset if sign == "-" else offset)
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz
        )
    except ValueError:
        raise PydanticCustomError(
            "timestamp_format", "must be a real date and time (RFC 3339)"
        ) from None


def _in_range(value: datetime) -> datetime:
    # Compared by year first: a datetime at the edge of year 1 or 9999 with an offset cannot be
    # turned into UTC (OverflowError), which is exactly what this check exists to prevent. A
    # year strictly between the edge years is in the window whatever its offset (at most a
    # day), and comparing instants of different offsets costs ten times the year's test.
    if 1970 < value.year < 8999:
        return value
    if not 1970 <= value.year < 9000 or not MIN_TIMESTAMP <= value < MAX_TIMESTAMP:
        raise PydanticCustomError(
            "timestamp_out_of_range", "must lie between 1970-01-01 and 9000-01-01 (UTC)"
        )
    return value


def _to_timestamp(value: Any) -> Any:
    """What a `Timestamp` field makes of `value` before pydantic's strict datetime check: the
    instant of an RFC 3339 string, an aware datetime in the window as it is; raises
    PydanticCustomError for a naive one or one out of the window."""
    if isinstance(value, str):
        return parse_timestamp(value)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise _naive_error()
        return _in_range(value)
    return value  # a datetime passes; anything else fails the strict datetime check


# The check itself, for code that builds a model from values it checked by hand (the envelope of
# an output event); the validator keeps its name, by which the contract's document knows it.
to_timestamp = _to_timestamp

Timestamp = Annotated[datetime, BeforeValidator(_to_timestamp)]
"""A timezone-aware instant; on the wire an RFC 3339 string with an explicit offset."""

Money = Annotated[
    int,
    AfterValidator(_check_amount),
    Field(json_schema_extra={"minimum": 0, "maximum": MAX_AMOUNT}),
]
"""A non-negative amount in integer minor units (fen for CNY)."""

SignedMoney = Annotated[
    int,
    AfterValidator(_check_signed_amount),
    Field(json_schema_extra={"minimum": -MAX_AMOUNT, "maximum": MAX_AMOUNT}),
]
"""A signed amount in minor units; only refund breakdown items may be negative."""

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Id = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[str, Field(min_length=1, max_length=256)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
Quantity = Annotated[int, Field(gt=0, le=MAX_QUANTITY)]
Score = Annotated[int, Field(ge=1, le=5)]
