"""CloudEvents 1.0 structured-mode envelope: parse, validate, build, serialise (SPEC 1)."""

from __future__ import annotations

import builtins
import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .events import (
    CUSTOMER_KEYED_TYPES,
    EVENT_TYPES,
    REQUIRED_FOR_TYPE,
    unexpected_on_topic,
)
from .jsontext import DECODER, SUSPECT_ESCAPE, bad_text_path, plain_error, plain_json
from .outputs import DEAD_LETTER_REASONS as DEAD_LETTER_REASONS
from .outputs import DeadLettered
from .primitives import EventData, Timestamp, field_error, parse_timestamp, to_timestamp
from .refusals import describe_errors

MAX_EVENT_BYTES = 256 * 1024
CONTENT_TYPE = "application/cloudevents+json"
DATA_CONTENT_TYPE = "application/json"

REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "data")
OPTIONAL_ATTRIBUTES = ("datacontenttype", "correlationid", "causationid")

# Fixed forever: changing it would change every deterministic id, so replays would duplicate.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales:ids:v1")

AttributeText = Annotated[str, Field(min_length=1, max_length=128)]

# A Kafka key is an order or buyer id (at most 128 characters); longer is not one of ours.
MAX_KEY_CHARS = 128


# JSON escapes that may decode to U+0000 or to half of a surrogate pair. One scan of the raw
# bytes; only a hit (rare: a paired escape such as an emoji written as \ud83d\ude00 also hits)
# costs a walk through the parsed document.
class InvalidEvent(Exception):
    """A message that breaks the contract; it goes to the dead-letter topic.

    `reason` is a short machine code, `detail` a sentence naming the field(s). Neither ever
    contains personal data values, only field paths.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        event_id: str | None = None,
        event_type: str | None = None,
    ) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail
        self.event_id = event_id
        self.event_type = event_type

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


D = TypeVar("D", bound=EventData)


class CloudEvent(BaseModel):
    """One event. Build it with `new_event` or `parse_event`; `data` is the model of `type`."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    specversion: Literal["1.0"]
    id: AttributeText
    source: Annotated[str, Field(min_length=1, max_length=1024)]
    type: AttributeText
    time: Timestamp
    datacontenttype: str | None = None
    # Case ids and event ids fit in 128; the extensions get room for composite causes.
    correlationid: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    causationid: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    data: SerializeAsAny[EventData]

    def data_as(self, kind: builtins.type[D]) -> D:
        """`data`, which a handler of the event's type knows to be a `kind` (the model registered
        for that type)."""
        data = self.data
        assert isinstance(data, kind)
        return data

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in EVENT_TYPES:
            raise PydanticCustomError("unknown_type", "is not an event type of this contract")
        return value

    @field_validator("datacontenttype")
    @classmethod
    def _json_data(cls, value: str | None) -> str | None:
        if value is not None and value != DATA_CONTENT_TYPE:  # the usual one: nothing to split
            media = value.split(";")[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                raise ValueError("must be a JSON media type (application/json)")
        return value

    @field_validator("data", mode="before")
    @classmethod
    def _typed_data(cls, value: Any, info: ValidationInfo) -> Any:
        model = EVENT_TYPES.get(info.data.get("type", ""))
        if model is None:
            return value  # the unknown type is already reported
        if isinstance(value, EventData):
            if value.__class__ is not model:
                raise PydanticCustomError("wrong_data_model", "is not the data model of this type")
            return value
        if not isinstance(value, Mapping):
            raise PydanticCustomError("model_type", "must be a JSON object")
        return model.model_validate(value)

    @model_validator(mode="after")
    def _required_for_type(self) -> CloudEvent:
        for name in REQUIRED_FOR_TYPE.get(self.type, ()):
            if getattr(self.data, name) is None:
                raise field_error(
                    "CloudEvent", ("data", name), "missing", f"is required in {self.type}"
                )
        return self


# --- the envelope's rules, checked by hand where the values are known -----------------------------


def _text(value: object, most: int) -> bool:
    """An attribute of `AttributeText`'s kind: a str of 1 to `most` characters."""
    return value.__class__ is str and 0 < len(value) <= most


def _has_required(event_type: str, data: BaseModel) -> bool:
    """`CloudEvent._required_for_type`'s rule."""
    required = REQUIRED_FOR_TYPE.get(event_type)
    return required is None or all(getattr(data, name) is not None for name in required)


_FIELDS = frozenset(CloudEvent.model_fields)
_REQUIRED = _FIELDS - frozenset(OPTIONAL_ATTRIBUTES)
_new_model = CloudEvent.__new__
_set = object.__setattr__


def _built(values: dict[str, Any], given: set[str] | None = None) -> CloudEvent:
    """The CloudEvent of every field's value as validation makes it, set up as pydantic's
    `model_construct` does (without its walk over the fields and their defaults); `given`: the
    fields set, by default every one (`new_event` gives them all)."""
    event = _new_model(CloudEvent)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", set(_FIELDS) if given is None else given)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


# --- parsing --------------------------------------------------------------------------------


def parse_event(
    value: bytes | None,
    *,
    max_bytes: int = MAX_EVENT_BYTES,
    topic: str | None = None,
    key: bytes | None = None,
) -> CloudEvent:
    """Parse one Kafka record's value into a validated event, or raise InvalidEvent.

    With `topic`, the event's type (and, on this system's own topics, its source) must belong
    on that topic; `key`, when given, must be text the database can store (an order or buyer
    id). Text anywhere (attributes, data, keys of objects) must not hold U+0000 or an unpaired
    surrogate: PostgreSQL refuses both, and a record it refuses must never reach the database.
    """
    if key is not None:
        check_key(key)
    if value is None or len(value) == 0:
        raise InvalidEvent("empty", "the message has no value")
    if len(value) > max_bytes:
        raise InvalidEvent(
            "oversized", f"the value is {len(value)} bytes, more than the limit of {max_bytes}"
        )
    raw = bytes(value)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid_utf8", f"the value is not UTF-8 (byte {exc.start})") from None
    try:
        obj = plain_json(raw)
        if obj is None:
            obj = DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(
            "malformed_json", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent("malformed_json", f"not valid JSON: {plain_error(exc)}") from None
    if SUSPECT_ESCAPE.search(raw) is not None:
        where = bad_text_path(obj, "")
        if where is not None:
            raise InvalidEvent(
                "invalid_text", f"{where or '(event)'}: text holds U+0000 or an unpaired surrogate"
            )
    if not isinstance(obj, dict):
        raise InvalidEvent("not_an_object", "the value must be a JSON object (a CloudEvent)")

    event_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    event_type = obj.get("type") if isinstance(obj.get("type"), str) else None
    missing = [name for name in REQUIRED_ATTRIBUTES if obj.get(name) is None]
    if missing:
        raise InvalidEvent(
            "missing_attribute",
            f"required CloudEvents attribute(s) missing: {', '.join(missing)}",
            event_id=event_id,
            event_type=event_type,
        )
    if obj["specversion"] != "1.0":
        raise InvalidEvent(
            "unsupported_specversion",
            'specversion: must be "1.0"',
            event_id=event_id,
            event_type=event_type,
        )
    if event_type not in EVENT_TYPES:
        shown = repr(event_type[:64]) if event_type is not None else "(not a string)"
        raise InvalidEvent(
            "unknown_type",
            f"type: {shown} is not an event type of this contract",
            event_id=event_id,
            event_type=event_type,
        )
    if topic is not None:
        unexpected = unexpected_on_topic(topic, event_type, obj.get("source"))
        if unexpected is not None:
            raise InvalidEvent(
                "unexpected_type", unexpected, event_id=event_id, event_type=event_type
            )
    event = _validated(obj, event_type)
    if event is not None:
        return event
    try:
        return CloudEvent.model_validate(obj)
    except ValidationError as exc:
        reason, detail = describe_errors(exc.errors())
        raise InvalidEvent(reason, detail, event_id=event_id, event_type=event_type) from None


def _validated(obj: dict[str, Any], event_type: str) -> CloudEvent | None:
    """`CloudEvent.model_validate(obj)` for an envelope of the usual shape: its rules checked
    here and its data validated by one pydantic call of the data model, not by the envelope's
    validators calling back into Python for each attribute. None for anything else, valid or
    not, which the full validation then reads (and explains what it refuses).

    `obj` has every required attribute, specversion "1.0" and a known `event_type`."""
    data = obj["data"]
    content = obj.get("datacontenttype")
    correlation, causation = obj.get("correlationid"), obj.get("causationid")
    if not (
        _text(obj["id"], 128)
        and _text(obj["source"], 1024)
        and obj["time"].__class__ is str
        and data.__class__ is dict
        and (content is None or content == DATA_CONTENT_TYPE)
        and (correlation is None or _text(correlation, 256))
        and (causation is None or _text(causation, 256))
    ):
        return None
    try:
        time = parse_timestamp(obj["time"])
        data = EVENT_TYPES[event_type].model_validate(data)
    except (ValidationError, PydanticCustomError):
        return None
    if not _has_required(event_type, data):
        return None
    return _built(
        {
            "specversion": "1.0",
            "id": obj["id"],
            "source": obj["source"],
            "type": event_type,
            "time": time,
            "datacontenttype": content,
            "correlationid": correlation,
            "causationid": causation,
            "data": data,
        },
        _fields_given(obj),
    )


def _fields_given(obj: dict[str, Any]) -> set[str]:
    given = set(_REQUIRED)
    for name in OPTIONAL_ATTRIBUTES:
        if name in obj:
            given.add(name)
    return given


def check_key(key: bytes) -> None:
    """Raise InvalidEvent unless a Kafka key is storable text of an id's length."""
    try:
        text = bytes(key).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid_key", f"the key is not UTF-8 (byte {exc.start})") from None
    if "\x00" in text:
        raise InvalidEvent("invalid_text", "the key holds U+0000")
    if len(text) > MAX_KEY_CHARS:
        raise InvalidEvent(
            "invalid_key", f"the key has {len(text)} characters, more than {MAX_KEY_CHARS}"
        )


def new_event(
    type: str,
    data: BaseModel,
    *,
    id: str,
    source: str,
    time: datetime,
    correlationid: str | None = None,
    causationid: str | None = None,
) -> CloudEvent:
    """A new event of `type`; `data` must be exactly the model registered for it."""
    model = EVENT_TYPES.get(type)
    if model is None:
        raise ValueError(f"unknown event type {type!r}")
    if data.__class__ is not model:
        raise ValueError(f"{type} needs {model.__name__} data, got {data.__class__.__name__}")
    # The envelope's rules checked here, on what is validated already (the data model, this
    # service's ids and clock), instead of by pydantic calling back into Python for each of
    # them (an output event is built on every emit): the same event. Whatever breaks one goes
    # through the validation, which refuses it with its own error.
    if (
        _text(id, 128)
        and _text(source, 1024)
        and (correlationid is None or _text(correlationid, 256))
        and (causationid is None or _text(causationid, 256))
        and time.__class__ is datetime
        and _has_required(type, data)
    ):
        try:
            checked = to_timestamp(time)
        except PydanticCustomError:
            pass
        else:
            return _built(
                {
                    "specversion": "1.0",
                    "id": id,
                    "source": source,
                    "type": type,
                    "time": checked,
                    "datacontenttype": DATA_CONTENT_TYPE,
                    "correlationid": correlationid,
                    "causationid": causationid,
                    "data": data,
                }
            )
    return CloudEvent(
        specversion="1.0",
        id=id,
        source=source,
        type=type,
        time=time,
        datacontenttype=DATA_CONTENT_TYPE,
        correlationid=correlationid,
        causationid=causationid,
        data=data,
    )


def dump_event(event: CloudEvent) -> bytes:
    """Structured-mode JSON bytes; unset optional attributes are left out."""
    # pydantic's own JSON serialiser, in one pass: the same bytes as its JSON-mode dump
    # written by `json.dumps(..., ensure_ascii=False, separators=(",", ":"))`, at a third of
    # the CPU (every output event is serialised once, on the hot path).
    # An event this service emits has all three (a filter costs pydantic more than the rest).
    if (
        event.correlationid is not None
        and event.causationid is not None
        and event.datacontenttype is not None
    ):
        return event.__pydantic_serializer__.to_json(event)
    unset = {name for name in OPTIONAL_ATTRIBUTES if getattr(event, name) is None}
    return event.__pydantic_serializer__.to_json(event, exclude=unset or None)


def event_key(event: CloudEvent) -> str:
    """The Kafka key: order_id for events about one order, customer_id for buyer events.

    An event without order_id (e.g. a callback `sla.breached`) falls back to customer_id. A
    dead-letter record keeps the original key, or topic:partition when it had none.
    """
    data = event.data
    fields = _key_fields(event.type, data.__class__)
    if fields is None:
        letter = cast(DeadLettered, data)
        if letter.key is not None:
            return letter.key
        return f"{letter.origin.topic}:{letter.origin.partition}"
    key = None
    for name in fields:
        key = getattr(data, name)
        if key is not None:
            break
    if not isinstance(key, str):
        raise ValueError(f"{event.type} event {event.id} has neither order_id nor customer_id")
    return key


@cache
def _key_fields(event_type: str, model: type[BaseModel]) -> tuple[str, ...] | None:
    """The fields `event_key` reads the key from, the first one set: `customer_id` for a type
    keyed by the buyer, else `order_id` then `customer_id`; those `model` has (worked out once
    per type and model: looking for a field a model lacks costs pydantic's `__getattr__`, and
    an instance check against a model class goes through `ABCMeta`). None for a dead letter."""
    if issubclass(model, DeadLettered):
        return None
    wanted = ("customer_id",) if event_type in CUSTOMER_KEYED_TYPES else ("order_id", "customer_id")
    return tuple(name for name in wanted if name in model.model_fields or hasattr(model, name))


def deterministic_id(*parts: str) -> str:
    """A stable id for the same parts (uuid5), so a replay produces the same event/refund id."""
    if not parts:
        raise ValueError("deterministic_id needs at least one part")
    for part in parts:
        if not isinstance(part, str):
            raise TypeError("deterministic_id parts must be strings")
    # JSON keeps ("a:b", "c") and ("a", "b:c") apart, unlike a plain join. The name is the
    # text of `json.dumps(list(parts), ensure_ascii=False)`, and the id `uuid.uuid5`'s, written
    # directly (a UUID object costs more than the hash; every output event takes an id).
    name = "[" + ", ".join(map(_json_string, parts)) + "]"
    digest = hashlib.sha1(_ID_NAMESPACE_BYTES + name.encode()).hexdigest()  # noqa: S324 - uuid5
    # uuid5's bits: version 5 in the 13th hex digit, variant 10 in the 17th digit's top bits.
    return (
        f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-"
        f"{_VARIANT[digest[16]]}{digest[17:20]}-{digest[20:32]}"
    )


_json_string = json.encoder.encode_basestring
_ID_NAMESPACE_BYTES = _ID_NAMESPACE.bytes
_VARIANT = {f"{n:x}": f"{n & 0x3 | 0x8:x}" for n in range(16)}
