"""`new_event` builds an output's envelope from values it checks by hand (not through pydantic's
validators); `dump_event` and `event_key` take shortcuts for the usual event. Each must give
exactly what the validated model gives: the same event, the same bytes, the same key, and the
same refusal for anything the envelope's rules refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.contracts import (
    CUSTOMER_KEYED_TYPES,
    CloudEvent,
    DeadLettered,
    dump_event,
    event_key,
    new_event,
    parse_event,
)
from shared.contracts.envelope import OPTIONAL_ATTRIBUTES
from tests.unit.contract_examples import NOW, VALID_INPUTS, encode, envelope
from tests.unit.test_contract_outputs import output_examples


def _examples() -> list[tuple[str, BaseModel]]:
    inputs = [
        (event_type, parse_event(encode(envelope(event_type, data))).data)
        for event_type, data in VALID_INPUTS.items()
    ]
    return [*output_examples(), *inputs]


def _validated(
    event_type: str,
    data: BaseModel,
    *,
    correlationid: str | None = None,
    causationid: str | None = None,
    **attrs: Any,
) -> CloudEvent:
    """What `new_event` always built: the envelope through pydantic's validation."""
    return CloudEvent(
        specversion="1.0",
        type=event_type,
        datacontenttype="application/json",
        correlationid=correlationid,
        causationid=causationid,
        data=data,
        **attrs,
    )


def _reference_dump(event: CloudEvent) -> bytes:
    unset = {name for name in OPTIONAL_ATTRIBUTES if getattr(event, name) is None}
    return event.__pydantic_serializer__.to_json(event, exclude=unset or None)


def _reference_key(event: CloudEvent) -> str:
    data = event.data
    if isinstance(data, DeadLettered):
        return data.key if data.key is not None else f"{data.origin.topic}:{data.origin.partition}"
    order_id = getattr(data, "order_id", None)
    customer_id = getattr(data, "customer_id", None)
    if event.type in CUSTOMER_KEYED_TYPES:
        key = customer_id
    else:
        key = order_id if order_id is not None else customer_id
    if not isinstance(key, str):
        raise ValueError("no key")
    return key


def _same(built: CloudEvent, validated: CloudEvent) -> None:
    assert built == validated
    assert type(built) is CloudEvent
    assert built.__dict__ == validated.__dict__
    assert list(built.__dict__) == list(validated.__dict__)
    assert built.__pydantic_fields_set__ == validated.__pydantic_fields_set__
    assert built.__pydantic_extra__ == validated.__pydantic_extra__
    assert built.__pydantic_private__ == validated.__pydantic_private__
    assert built.data is validated.data and built.time is validated.time
    assert dump_event(built) == _reference_dump(validated)


@pytest.mark.parametrize(("event_type", "data"), _examples(), ids=lambda v: str(v)[:24])
@pytest.mark.parametrize("extensions", [{}, {"correlationid": "R1", "causationid": "evt-1"}])
def test_a_built_event_is_the_validated_one(
    event_type: str, data: BaseModel, extensions: dict[str, str]
) -> None:
    attrs = {"id": "e1", "source": "/aftersales/returns", "time": NOW, **extensions}
    built = new_event(event_type, data, **attrs)  # type: ignore[arg-type]
    _same(built, _validated(event_type, data, **attrs))
    assert parse_event(dump_event(built)) == built
    try:
        expected = _reference_key(built)
    except ValueError:
        with pytest.raises(ValueError, match="neither"):
            event_key(built)
    else:
        assert event_key(built) == expected


_texts = st.one_of(
    st.text(max_size=3),
    st.integers(min_value=0, max_value=3).map(lambda n: "é" * (128 + n - 2)),
    st.integers(min_value=0, max_value=3).map(lambda n: "x" * (256 + n - 2)),
    st.integers(min_value=0, max_value=3).map(lambda n: "x" * (1024 + n - 2)),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40),
)
_offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_times = st.one_of(
    st.datetimes(timezones=_offsets),
    st.datetimes(),  # naive: refused
    st.sampled_from(
        [
            datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
            datetime(1970, 1, 1, 7, 59, tzinfo=timezone(timedelta(hours=8))),
            datetime(8999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(9000, 1, 1, tzinfo=UTC),
        ]
    ),
)


@given(
    example=st.sampled_from(_examples()),
    id=_texts,
    source=_texts,
    correlationid=st.none() | _texts,
    causationid=st.none() | _texts,
    time=_times,
)
def test_new_event_refuses_what_validation_refuses(
    example: tuple[str, BaseModel],
    id: str,
    source: str,
    correlationid: str | None,
    causationid: str | None,
    time: datetime,
) -> None:
    event_type, data = example
    attrs = {
        "id": id,
        "source": source,
        "time": time,
        "correlationid": correlationid,
        "causationid": causationid,
    }
    try:
        validated = _validated(event_type, data, **attrs)
    except ValidationError as refused:
        with pytest.raises(ValidationError) as raised:
            new_event(event_type, data, **attrs)  # type: ignore[arg-type]
        assert raised.value.errors() == refused.errors()
        return
    _same(new_event(event_type, data, **attrs), validated)  # type: ignore[arg-type]


def test_a_data_model_missing_what_its_type_requires_is_refused_as_before() -> None:
    checked = 0
    for event_type, data in output_examples():
        if event_type not in ("return.pending", "callback.scheduled", "satisfaction.low"):
            continue
        stripped = data.model_copy(update=dict.fromkeys(("waiting_for", "due_at", "score")))
        with pytest.raises(ValidationError) as refused:
            _validated(event_type, stripped, id="e", source="s", time=NOW)
        with pytest.raises(ValidationError) as raised:
            new_event(event_type, stripped, id="e", source="s", time=NOW)
        assert raised.value.errors() == refused.value.errors()
        checked += 1
    assert checked == 3


def test_a_time_that_is_not_a_plain_datetime_goes_through_validation() -> None:
    class Instant(datetime):
        pass

    data = output_examples()[0][1]
    event_type = output_examples()[0][0]
    at = Instant(2024, 5, 3, 12, 0, tzinfo=UTC)
    _same(
        new_event(event_type, data, id="e1", source="s", time=at),
        _validated(event_type, data, id="e1", source="s", time=at),
    )
