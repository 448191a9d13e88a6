"""The copy of a record a dead letter keeps: personal data masked, ids intact, storable in
PostgreSQL and small enough for the broker, so it can be read and replayed."""

from __future__ import annotations

import json
import re

from shared.contracts import DeadLettered
from shared.contracts.outputs import MAX_DEAD_LETTER_BYTES
from shared.crypto import mask_email, mask_name, mask_phone, redact

# What a dead letter keeps of the original value: enough to inspect and replay any valid-size
# event; an oversized one is cut, since it can never be processed anyway.
MAX_DEAD_LETTER_VALUE = 256 * 1024
# A whole dead-letter record (value, key, headers) stays under the broker's default limit of
# 1 MiB: the copy is cut (and marked) until it fits. The envelope's attributes, the key and the
# record's framing are counted with room to spare.
MAX_DEAD_LETTER_RECORD = MAX_DEAD_LETTER_BYTES
_ENVELOPE_ALLOWANCE = 4096
MAX_DEAD_LETTER_KEY = 256

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """`text` with U+0000 and lone surrogates (which PostgreSQL and UTF-8 refuse) replaced."""
    return _UNSTORABLE.sub("\ufffd", text) if _UNSTORABLE.search(text) else text


def dead_letter_key(key: bytes | None) -> tuple[str | None, bool]:
    """The key a dead letter keeps (storable text, at most MAX_DEAD_LETTER_KEY characters) and
    whether it had to be changed to be kept."""
    if key is None:
        return None, False
    try:
        text = key.decode("utf-8")
        changed = False
    except UnicodeDecodeError:
        text, changed = key.decode("utf-8", "replace"), True
    clean = storable_text(text)[:MAX_DEAD_LETTER_KEY]
    return clean, changed or clean != text


def _record_size(data: DeadLettered) -> int:
    body = json.dumps(data.model_dump(mode="json"), ensure_ascii=False).encode("utf-8")
    key = (data.key or "").encode("utf-8")
    return len(body) + 2 * len(key) + _ENVELOPE_ALLOWANCE  # the key is the record's and in data


def fit_dead_letter(data: DeadLettered) -> DeadLettered:
    """`data` whose whole record fits MAX_DEAD_LETTER_RECORD: the copy is cut (and marked
    truncated) in proportion to what its escaped form costs, until it fits."""
    size = _record_size(data)
    while size > MAX_DEAD_LETTER_RECORD and data.value:
        keep = int(len(data.value) * (MAX_DEAD_LETTER_RECORD / size) * 0.9)
        data = data.model_copy(update={"value": data.value[:keep], "value_truncated": True})
        size = _record_size(data)
    return data


_CUSTOMER_MASKS = {"name": mask_name, "phone": mask_phone, "email": mask_email}
# `"name": "..."` (and phone, email) in text that is not a whole JSON document, e.g. a cut one;
# the value may lack its closing quote. Names are not caught by `redact`, so mask them here.
_CONTACT_FIELD = re.compile(r'("(name|phone|email)"\s*:\s*")((?:[^"\\]|\\.)*)')


def _mask_contact_fields(text: str) -> str:
    return _CONTACT_FIELD.sub(lambda m: m.group(1) + _CUSTOMER_MASKS[m.group(2)](m.group(3)), text)


def scrub_personal_data(value: bytes) -> tuple[str, bool]:
    """The dead letter's copy of a value, without personal data (SPEC section 7).

    A JSON event keeps its shape with the buyer's name, phone and email masked and other free
    text redacted, but its ids intact, so it can still be read and, once the producer (or the
    handler) is fixed, replayed; other text is redacted; bytes that are not UTF-8 or too
    large are not kept at all (they can never be processed). Returns (text, truncated).
    """
    if len(value) > MAX_DEAD_LETTER_VALUE:
        return "", True
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "", True
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys)
        copy = json.dumps(_scrub(document, None), ensure_ascii=False)
        if _UNSTORABLE.search(copy):  # U+0000 or a lone surrogate: kept as its JSON escape
            copy = json.dumps(_scrub(document, None), ensure_ascii=True)
        return copy, False
    except (ValueError, RecursionError):  # not JSON, ambiguous, or nested too deep
        return storable_text(redact(_mask_contact_fields(text))), False


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # A duplicate key is kept as text: re-serialising would silently pick one of the values.
    if len({key for key, _ in pairs}) != len(pairs):
        raise ValueError("duplicate key")
    return dict(pairs)


# Fields that name things (events, orders, parcels, instants, links) rather than describe
# them: kept as they are, since ids and tracking numbers are often long digit runs that
# `redact` would take for phone numbers, and a replay must still mean the same order.
_IDENTIFIER_FIELDS = frozenset(
    {
        *("id", "specversion", "source", "type", "time", "datacontenttype"),
        *("correlationid", "causationid", "tracking_no", "sku", "currency"),
    }
)


def _scrub(value: object, key: str | None) -> object:
    if isinstance(value, dict):
        return {k: _scrub(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item, key) for item in value]
    if not isinstance(value, str):
        return value
    if key is None:
        return redact(value)
    if key in _CUSTOMER_MASKS:
        return _CUSTOMER_MASKS[key](value)
    if key in _IDENTIFIER_FIELDS or key.endswith(("_id", "_at", "_url", "_urls")):
        return value
    return redact(value)
