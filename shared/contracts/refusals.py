"""Why a record is refused, in words: a dead-letter reason and a detail naming each faulty
field and what kind of value it must be, never the values themselves (they may be personal
data)."""

from __future__ import annotations

from pydantic_core import ErrorDetails

# Validation error types that become their own dead-letter reason; others are
# "invalid_attribute" (envelope) or "invalid_data" (inside `data`).
REASON_ERROR_TYPES: frozenset[str] = frozenset(
    {
        "naive_timestamp",
        "negative_amount",
        "absurd_amount",
        "payments_mismatch",
        "timestamp_out_of_range",
        "unknown_type",
        "unsupported_specversion",
    }
)

_DETAIL_MAX_ERRORS = 5


def describe_errors(errors: list[ErrorDetails]) -> tuple[str, str]:
    """(reason, detail) for pydantic errors of a CloudEvent; never shows input values."""
    reason = ""
    for err in errors:
        if err["type"] in REASON_ERROR_TYPES:
            reason = err["type"]
            break
    if not reason:
        first = errors[0]["loc"] if errors else ()
        reason = "invalid_data" if first and first[0] == "data" else "invalid_attribute"
    parts = [f"{_path(err['loc'])}: {_message(err)}" for err in errors[:_DETAIL_MAX_ERRORS]]
    if len(errors) > _DETAIL_MAX_ERRORS:
        parts.append(f"and {len(errors) - _DETAIL_MAX_ERRORS} more")
    return reason, "; ".join(parts)


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(event)"


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    given = err.get("input")
    # Describe what arrived by its JSON type only: values may be personal data.
    if kind == "missing":
        return err["msg"] if err["msg"].startswith("is required") else "is required"
    if kind == "int_type":
        if isinstance(given, float):
            return "must be an integer, not a decimal number (money is in integer minor units)"
        if isinstance(given, str):
            return "must be a JSON integer, not a string"
        if isinstance(given, bool):
            return "must be an integer, not a boolean"
        return "must be an integer"
    if kind == "string_type":
        return "must be a string"
    if kind == "bool_type":
        return "must be true or false"
    if kind == "list_type":
        return "must be a list"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a JSON object"
    if kind == "datetime_type":
        return "must be an RFC 3339 timestamp string with an offset"
    if kind == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        return f"must be one of {expected}"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


# --- building -------------------------------------------------------------------------------
