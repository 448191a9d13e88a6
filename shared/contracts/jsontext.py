"""Reading a record's JSON text exactly: a duplicate key, NaN or Infinity refused (two readers
could see two different events), integers kept exact, and where U+0000 or a lone surrogate
hides in a string (SPEC 1). `parse_event` reads with these."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def bad_text_path(value: Any, path: str) -> str | None:
    """The path of the first string (or object key) holding U+0000 or a lone surrogate."""
    if isinstance(value, str):
        return path if _BAD_TEXT.search(value) else None
    if isinstance(value, dict):
        for name, item in value.items():
            if _BAD_TEXT.search(name):
                return f"{path}.(a key)" if path else "(a key)"
            where = bad_text_path(item, f"{path}.{name}" if path else name)
            if where is not None:
                return where
    elif isinstance(value, list):
        for i, item in enumerate(value):
            where = bad_text_path(item, f"{path}[{i}]")
            if where is not None:
                return where
    return None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # Ambiguous: two readers could see two different events.
        raise ValueError("an object has a duplicate key")
    return obj


def _no_nan(constant: str) -> Any:
    raise ValueError(f"{constant} is not valid JSON")


def plain_error(exc: BaseException) -> str:
    return "too deeply nested" if isinstance(exc, RecursionError) else str(exc)


# What `json.loads(text, object_pairs_hook=..., parse_constant=...)` builds anew on every call
# (a decoder and its C scanner), built once: the same parse, the same errors.
DECODER = json.JSONDecoder(object_pairs_hook=_object_without_duplicates, parse_constant=_no_nan)

# Digits all written as "0", to find an integer orjson would not read exactly in one C pass (a
# regular expression for a run of digits tries every position).
_ZEROED_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def plain_json(raw: bytes) -> Any:
    """What `DECODER.decode` reads from `raw`, read by orjson (a half to a third of the CPU);
    None where only `DECODER` can tell, which then decodes it or refuses it as it always did.

    Only for text without a backslash, so every string's bytes are its text, and without a run
    of 19 digits (orjson makes a float of an integer past 64 bits; money must stay exact).
    orjson keeps the last of two duplicate keys silently: they are found by writing the result
    back, where without escapes the colons of every key and string come back, but those of a
    key dropped (and of its first value). orjson refuses what `DECODER` would (NaN, a number
    too large for a float, 1,024 levels of nesting) or cannot write back (255 levels), so those
    go to `DECODER` too.
    """
    if b"\\" in raw or _LONG_NUMBER in raw.translate(_ZEROED_DIGITS):
        return None
    try:
        obj = orjson.loads(raw)
        if orjson.dumps(obj).count(b":") != raw.count(b":"):
            return None  # a duplicate key
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    return obj
