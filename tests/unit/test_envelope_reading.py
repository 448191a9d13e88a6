"""`parse_event` reads the usual record by shortcuts: orjson for the JSON (with the duplicate
keys found apart) and the envelope's rules checked by hand around one validation of the data.
Whatever they do not take goes the full way. Both must give exactly what the full way gives:
the same event, or the same refusal with the same detail."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.contracts import CloudEvent, InvalidEvent, parse_event
from shared.contracts import envelope as env
from tests.unit.contract_examples import VALID_INPUTS, encode, envelope


@contextmanager
def _the_full_way() -> Iterator[None]:
    """`parse_event` as it was: `json` with the duplicate-key hook, then CloudEvent's validation."""
    with (
        mock.patch.object(env, "plain_json", lambda raw: None),
        mock.patch.object(env, "_validated", lambda obj, event_type: None),
    ):
        yield


def _outcome(raw: bytes, **kwargs: Any) -> tuple[str, Any]:
    try:
        event = parse_event(raw, **kwargs)
    except InvalidEvent as exc:
        return "refused", (exc.reason, exc.detail, exc.event_id, exc.event_type)
    return "event", (event, event.__dict__, event.__pydantic_fields_set__)


def _same_outcome(raw: bytes, **kwargs: Any) -> tuple[str, Any]:
    ours = _outcome(raw, **kwargs)
    with _the_full_way():
        full = _outcome(raw, **kwargs)
    assert ours == full
    if ours[0] == "event":
        event = ours[1][0]
        assert type(event) is CloudEvent
        assert event.__pydantic_extra__ is None and event.__pydantic_private__ is None
    return ours


def _typed(value: Any) -> Any:
    """`value` with the type of every part: 1, 1.0 and True are all different here."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, value)


# --- the JSON -------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**17, max_value=10**21)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=8)
    | st.sampled_from(["a:b", '"', "\\", "\n", "é", "2024-05-01T10:00:00+08:00"])
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "a:b", "c", "é", ""]), inner, max_size=4)
    ),
    max_leaves=20,
)


def _with_duplicate(text: str) -> str:
    """The first object of `text` with its first key written twice (when it has one)."""
    decoded = json.loads(text)
    if not isinstance(decoded, dict) or not decoded:
        return text
    first = next(iter(decoded))
    return "{" + json.dumps(first) + ":0," + text[1:]


@settings(max_examples=400)
@given(
    value=_values,
    separators=st.sampled_from([(",", ":"), (", ", ": "), (",", " : ")]),
    ensure_ascii=st.booleans(),
    duplicate=st.booleans(),
    indent=st.sampled_from([None, 1]),
)
def test_orjson_reads_only_what_the_hooked_decoder_reads_alike(
    value: Any, separators: tuple[str, str], ensure_ascii: bool, duplicate: bool, indent: Any
) -> None:
    text = json.dumps(value, separators=separators, ensure_ascii=ensure_ascii, indent=indent)
    if duplicate:
        text = _with_duplicate(text)
    raw = text.encode()
    read = env.plain_json(raw)
    try:
        expected = env.DECODER.decode(text)
    except ValueError:
        assert read is None
        return
    if read is not None:
        assert _typed(read) == _typed(expected)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":1}',
        b'{"a":{"b":1,"b":2}}',
        b'[{"x":"1:2"},{"x":"3","x":"4:5:6"}]',
        b'{"a":"x","a":"1:2:3"}',
        b'{"amount":18446744073709551616}',
        b'{"amount":-9223372036854775809}',
        b'{"amount":1e400}',
        b'{"amount":NaN}',
        b'{"a":"\\u0000"}',
        b'{"a":"\\ud800"}',
        b"[" * 300 + b"]" * 300,
        b"[" * 1100 + b"]" * 1100,
        b"\xef\xbb\xbf{}",
        b'{"a":1} {"b":2}',
    ],
)
def test_what_orjson_would_read_otherwise_goes_to_the_hooked_decoder(raw: bytes) -> None:
    assert env.plain_json(raw) is None


def test_a_duplicate_key_is_still_refused_and_big_integers_are_exact() -> None:
    event = envelope("order.cancelled", {"order_id": "O1", "cancelled_at": "2024-05-01T10:00:00Z"})
    text = json.dumps(event, separators=(",", ":"))
    twice = text.replace('"order_id":"O1"', '"order_id":"O1","order_id":"O2"')
    assert _same_outcome(twice.encode())[1][:2] == (
        "malformed_json",
        "not valid JSON: an object has a duplicate key",
    )
    paid = envelope("order.paid", copy.deepcopy(VALID_INPUTS["order.paid"]))
    paid["data"]["lines"][0]["paid_amount"] = 2**64
    refused = _same_outcome(encode(paid))
    assert refused[1][0] == "absurd_amount"


# --- the envelope ---------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(VALID_INPUTS))
@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"correlationid": "R1", "causationid": "evt-0"},
        {"correlationid": None, "datacontenttype": None},
        {"datacontenttype": "application/cloudevents+json; charset=utf-8"},
        {"extra": {"nested": [1, 2]}},
    ],
)
def test_every_valid_input_reads_as_the_full_validation_reads_it(
    event_type: str, attrs: dict[str, Any]
) -> None:
    raw = encode(envelope(event_type, VALID_INPUTS[event_type], **attrs))
    for text in (raw, json.dumps(json.loads(raw), ensure_ascii=True, indent=1).encode()):
        assert _same_outcome(text)[0] == "event"


_attribute_values = st.one_of(
    st.none(),
    st.integers(min_value=-2, max_value=2),
    st.booleans(),
    st.just([]),
    st.just({}),
    st.text(max_size=3),
    st.integers(min_value=0, max_value=2).map(lambda n: "i" * (127 + n)),
    st.integers(min_value=0, max_value=2).map(lambda n: "c" * (255 + n)),
    st.integers(min_value=0, max_value=2).map(lambda n: "s" * (1023 + n)),
    st.sampled_from(
        [
            "2024-05-01T10:00:00+08:00",
            "2024-05-01t10:00:00.5z",
            "2024-05-01T10:00:00",
            "1969-12-31T23:59:59Z",
            "2024-02-30T10:00:00Z",
            "application/json",
            "text/plain",
            "Application/JSON",
        ]
    ),
)


@settings(max_examples=300)
@given(
    event_type=st.sampled_from(sorted(VALID_INPUTS)),
    changes=st.dictionaries(
        st.sampled_from(
            ["id", "source", "time", "datacontenttype", "correlationid", "causationid", "data"]
        ),
        _attribute_values,
        max_size=3,
    ),
    drop=st.lists(st.sampled_from(["data.order_id", "data", "correlationid"]), max_size=1),
)
def test_any_envelope_is_read_or_refused_as_the_full_validation_does(
    event_type: str, changes: dict[str, Any], drop: list[str]
) -> None:
    event = envelope(event_type, copy.deepcopy(VALID_INPUTS[event_type]))
    event.update(changes)
    for path in drop:
        if path == "data.order_id" and isinstance(event.get("data"), dict):
            event["data"].pop("order_id", None)
        else:
            event.pop(path, None)
    _same_outcome(encode(event), topic=None)


@pytest.mark.parametrize(
    ("name", "most"), [("id", 128), ("source", 1024), ("correlationid", 256), ("causationid", 256)]
)
@pytest.mark.parametrize("value", ["", "fits", "too long", 7, ["x"], "é-fits", "é-too long"])
def test_attributes_at_their_limits_read_as_the_full_validation_reads_them(
    name: str, most: int, value: Any
) -> None:
    if isinstance(value, str) and value.endswith("fits"):
        value = value[0] * most
    elif isinstance(value, str) and value.endswith("too long"):
        value = value[0] * (most + 1)
    event = envelope("order.cancelled", {"order_id": "O1", "cancelled_at": "2024-05-01T10:00:00Z"})
    event[name] = value
    outcome = _same_outcome(encode(event))
    assert (outcome[0] == "event") == (isinstance(value, str) and 0 < len(value) <= most)
