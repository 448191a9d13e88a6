"""The deployment's policy file (SPEC section 8): every business default, validated at start-up.

Validation is strict (SPEC 8): a value of the wrong type (`true` or `"7"` where a number
belongs), a value outside its sane range, an unknown key or section, an unknown category or
mode, or a malformed hours range is refused with one line naming the key and what is allowed.
Every section is a `_Section`: a new section or key gets the same checks by being declared.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from shared.contracts import ComplaintCategory
from shared.money import is_known_currency

# The largest amount a cap or coupon may be, in minor units (1,000,000.00 in a 2-digit currency):
# a cap is a ceiling on one refund or one buyer's month, never an order of magnitude beyond.
MAX_POLICY_AMOUNT = 100_000_000
_HOURS_RANGE = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d-(?:[01]\d|2[0-3]):[0-5]\d$")
# Product categories are the shop's own words (e.g. `electronics`): lower-case slugs.
_PRODUCT_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class PolicyError(ValueError):
    """The policy file is missing, unreadable or holds a bad value."""


class FreeShippingDeduction(StrEnum):
    NEVER = "never"
    WHEN_THRESHOLD_BROKEN = "when_threshold_broken"
    ALWAYS = "always"


def _count(default: int, low: int, high: int, unit: str) -> Any:
    """An integer key with its sane range; the description is what an error says is allowed."""
    return Field(default, ge=low, le=high, description=f"an integer from {low} to {high} {unit}")


def _amount(default: int) -> Any:
    return _count(default, 0, MAX_POLICY_AMOUNT, "(minor units of the policy's currency)")


DEFAULT_CURRENCY = "CNY"
_CURRENCY_HELP = "an ISO 4217 currency code such as CNY, JPY or KWD"


def _amounts_currency() -> Any:
    # Not a key of its own: the top-level `currency`, copied in by Policy (see there).
    return Field(DEFAULT_CURRENCY, exclude=True, description=_CURRENCY_HELP)


def _rate(default: int) -> Any:
    return _count(default, 0, 10_000, "(basis points: 500 = 5 %, 10000 = 100 %)")


class _Section(BaseModel):
    # Strict: no `true` or `"7"` for a number. Collections and modes are declared lax
    # (`strict=False`) only so TOML arrays and strings reach their element and value checks.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LocalHours(_Section):
    """A daily span of local clock time, e.g. working hours 09:00-18:00."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> LocalHours:
        if not _HOURS_RANGE.match(text):
            raise ValueError(f"expected 'HH:MM-HH:MM' (24-hour clock), got {text!r}")
        start_text, end_text = text.split("-")
        start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
        if start == end:
            raise ValueError(f"{text!r} starts and ends at the same minute")
        return cls(start=start, end=end)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def holds(self, instant: datetime, zone: ZoneInfo) -> bool:
        """True inside [start, end) local time; a span across midnight (21:00-09:00) wraps."""
        local = instant.astimezone(zone).time()
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def end_of(self, instant: datetime, zone: ZoneInfo) -> datetime:
        """The end (UTC) of the span holding `instant`; `instant` (UTC) when outside it.

        The first local `end` after `instant`, today's or tomorrow's (the evening part of a
        span over midnight ends tomorrow morning); of an end a clock change repeats, the
        occurrence after `instant` (fold 0 or 1), not the next day's. An end a clock change
        skips resolves (fold 0) to the same clock time after the jump."""
        instant = instant.astimezone(UTC)
        if not self.holds(instant, zone):
            return instant
        day = instant.astimezone(zone).date()
        ends = [
            datetime.combine(day + timedelta(days=days), self.end, tzinfo=zone)
            .replace(fold=fold)
            .astimezone(UTC)
            for days in (0, 1)
            for fold in (0, 1)
        ]
        later = (end for end in ends if end > instant and not self.holds(end, zone))
        return min(later, default=ends[2])


_HOURS_HELP = "'HH:MM-HH:MM' on the 24-hour clock, local time, start and end different"


def _hours(value: object) -> object:
    if isinstance(value, LocalHours):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a string {_HOURS_HELP}")
    return LocalHours.parse(value)


def _hours_field(default: LocalHours) -> Any:
    return Field(default, description=_HOURS_HELP)


def _product_categories(value: object) -> object:
    if isinstance(value, list | tuple | set | frozenset):
        bad = [
            item for item in value if not isinstance(item, str) or not _PRODUCT_CATEGORY.match(item)
        ]
        if bad:
            raise ValueError(f"not a category name: {bad[0]!r}")
    return value


class ReturnsPolicy(_Section):
    amounts_currency: str = _amounts_currency()
    no_reason_days: int = _count(7, 1, 30, "days")
    quality_claim_days: int = _count(15, 1, 365, "days")
    evidence_wait_hours: int = _count(72, 1, 720, "hours")
    signature_wait_hours: int = _count(48, 1, 720, "hours")
    review_sla_working_hours: int = _count(12, 1, 240, "working hours")
    working_hours: LocalHours = _hours_field(LocalHours(start=time(9), end=time(18)))
    return_shipping_cap: int = _amount(3000)
    free_shipping_deduction: FreeShippingDeduction = Field(
        FreeShippingDeduction.WHEN_THRESHOLD_BROKEN,
        strict=False,
        description="one of " + ", ".join(mode.value for mode in FreeShippingDeduction),
    )
    inspection_required_categories: frozenset[str] = Field(
        frozenset({"electronics"}),
        strict=False,
        description="a list of product category names (lower-case letters, digits, _ or -)",
    )
    inspection_grace_hours: int = _count(20, 1, 168, "hours")
    refund_deadline_hours: int = _count(24, 1, 168, "hours")

    _parse_hours = field_validator("working_hours", mode="before")(_hours)
    _categories = field_validator("inspection_required_categories", mode="before")(
        _product_categories
    )

    @field_validator("working_hours")
    @classmethod
    def _within_one_day(cls, value: LocalHours) -> LocalHours:
        if value.start >= value.end:
            raise ValueError(f"{value} must start before it ends within one day")
        return value

    @model_validator(mode="after")
    def _check(self) -> ReturnsPolicy:
        if self.inspection_grace_hours > self.refund_deadline_hours:
            raise ValueError("inspection_grace_hours must not exceed refund_deadline_hours")
        return self


class ComplaintsPolicy(_Section):
    amounts_currency: str = _amounts_currency()
    first_response_hours: int = _count(2, 1, 168, "hours")
    resolution_hours: int = _count(2, 1, 720, "hours")
    complex_resolution_hours: int = _count(24, 1, 720, "hours")
    complex_categories: frozenset[ComplaintCategory] = Field(
        frozenset({"quality_issue", "not_received", "fake_shipment"}),
        strict=False,
        description="a list of complaint categories: " + ", ".join(get_args(ComplaintCategory)),
    )
    late_shipment_hours: int = _count(72, 1, 720, "hours")
    late_shipment_rate_bp: int = _rate(500)
    late_shipment_cap: int = _amount(3000)
    compensation_budget: int = _amount(10000)
    compensation_window_days: int = _count(30, 1, 365, "days")
    coupon_validity_days: int = _count(30, 1, 365, "days")
    quality_issue_rate_bp: int = _rate(500)
    quality_issue_min: int = _amount(500)
    quality_issue_max: int = _amount(5000)
    logistics_delay_coupon: int = _amount(500)
    missing_item_coupon: int = _amount(1000)
    wrong_item_coupon: int = _amount(1000)
    not_received_coupon: int = _amount(1000)
    service_attitude_coupon: int = _amount(500)

    @model_validator(mode="after")
    def _check(self) -> ComplaintsPolicy:
        if self.quality_issue_min > self.quality_issue_max:
            raise ValueError("quality_issue_min must not exceed quality_issue_max")
        return self


class FollowupPolicy(_Section):
    callback_delay_hours: int = _count(24, 0, 720, "hours")
    callback_deadline_hours: int = _count(72, 1, 720, "hours")
    quiet_hours: LocalHours = _hours_field(LocalHours(start=time(21), end=time(9)))
    low_score_threshold: int = _count(2, 1, 5, "(a score from 1 to 5)")

    _parse_hours = field_validator("quiet_hours", mode="before")(_hours)

    @model_validator(mode="after")
    def _check(self) -> FollowupPolicy:
        if self.callback_delay_hours >= self.callback_deadline_hours:
            raise ValueError("callback_delay_hours must be below callback_deadline_hours")
        return self


class NotifierPolicy(_Section):
    max_non_urgent_per_day: int = _count(3, 0, 100, "messages")
    retry_max_attempts: int = _count(5, 1, 50, "attempts")
    # A transient failure waits the first delay, four times longer after each further one, at
    # most the longest (1, 4, 16 minutes, then hourly by default).
    retry_first_delay_seconds: int = _count(60, 1, 3600, "seconds")
    retry_longest_delay_seconds: int = _count(3600, 1, 86400, "seconds")
    quiet_hours: LocalHours = _hours_field(LocalHours(start=time(21), end=time(9)))

    _parse_hours = field_validator("quiet_hours", mode="before")(_hours)

    @model_validator(mode="after")
    def _check(self) -> NotifierPolicy:
        # Below the first delay, every delay would be the longest: the backoff a typo.
        if self.retry_longest_delay_seconds < self.retry_first_delay_seconds:
            raise ValueError(
                "retry_longest_delay_seconds must be at least retry_first_delay_seconds"
            )
        return self


class RefundsPolicy(_Section):
    # Where money beyond what an order's payment methods were charged goes (SPEC 4.11): e.g.
    # compensation or return freight on top of a full refund, and re-issues of failed parts.
    overflow_method: str = Field(
        "balance",
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="a payment method name such as balance (lower-case letters, digits, _)",
    )


def _table(section: type[_Section], name: str) -> Any:
    return Field(section(), description=f"a [{name}] table")


# Sections whose keys include amounts: they learn the policy's currency (`amounts_currency`).
_SECTIONS_WITH_AMOUNTS = ("returns", "complaints")


class Policy(_Section):
    timezone: str = Field("Asia/Shanghai", description="an IANA time zone such as Asia/Shanghai")
    # The currency every amount of the policy (caps, coupons, budget) is in.
    currency: str = Field(DEFAULT_CURRENCY, description=_CURRENCY_HELP)
    returns: ReturnsPolicy = _table(ReturnsPolicy, "returns")
    complaints: ComplaintsPolicy = _table(ComplaintsPolicy, "complaints")
    followup: FollowupPolicy = _table(FollowupPolicy, "followup")
    notifier: NotifierPolicy = _table(NotifierPolicy, "notifier")
    refunds: RefundsPolicy = _table(RefundsPolicy, "refunds")

    @model_validator(mode="before")
    @classmethod
    def _currency_of_the_amounts(cls, data: object) -> object:
        """Each section with amounts holds the policy's currency, so the rules that read a cap
        from a section know its currency. It is set here only, never in the file."""
        if not isinstance(data, Mapping):
            return data
        currency = data.get("currency", DEFAULT_CURRENCY)
        if not isinstance(currency, str) or not is_known_currency(currency):
            return data  # refused by the `currency` field itself
        data = dict(data)
        for name in _SECTIONS_WITH_AMOUNTS:
            section = data.get(name, {})
            if isinstance(section, Mapping):
                if "amounts_currency" in section:
                    raise ValueError(f"{name}.amounts_currency: unknown key; set `currency`")
                data[name] = {**section, "amounts_currency": currency}
            elif isinstance(section, _Section):
                data[name] = section.model_copy(update={"amounts_currency": currency})
        return data

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if not is_known_currency(value):
            raise ValueError(f"unknown currency {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def parse_policy(text: str, *, origin: str = "<policy>") -> Policy:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{origin}: not valid TOML: {exc}") from exc
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise PolicyError(f"{origin}: {problems}") from exc


def _problem(error: ErrorDetails) -> str:
    """One error as `key: what is wrong (got VALUE); allowed: WHAT`, on one line."""
    loc = [part for part in error["loc"] if isinstance(part, str)]
    key = ".".join(loc) or "(top)"
    if error["type"] == "extra_forbidden":
        known = ", ".join(_fields(_model_at(loc[:-1])))
        place = f"[{'.'.join(loc[:-1])}]" if len(loc) > 1 else "the top level"
        return f"{key}: unknown key; allowed in {place}: {known}"
    allowed = _description(loc)
    given = error.get("input")
    if allowed is None or error["type"] == "value_error" or isinstance(given, Mapping):
        # A rule of its own (a range that ends before it starts, two keys that disagree).
        message = error["msg"].removeprefix("Value error, ")
        if not loc:
            return message  # a rule of the whole file names its key itself
        if _model_at(loc) not in (None, LocalHours):
            allowed = None  # a whole table's rule: the message names its keys
        return f"{key}: {message}" + (f"; allowed: {allowed}" if allowed else "")
    return f"{key}: got {_toml(given)}; allowed: {allowed}"


def _toml(value: object) -> str:
    """A value as it was written in the file (TOML dates and times have no JSON form)."""
    if isinstance(value, date | time):
        return value.isoformat()
    try:
        return json.dumps(value, ensure_ascii=False)
    except TypeError:
        return repr(value)


def _model_at(loc: Sequence[str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Policy
    for part in loc:
        field = model.model_fields.get(part) if model is not None else None
        annotation = field.annotation if field is not None else None
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return model


def _fields(model: type[BaseModel] | None) -> list[str]:
    return list(model.model_fields) if model is not None else []


def _description(loc: Sequence[str]) -> str | None:
    if not loc:
        return None
    model = _model_at(loc[:-1])
    field = model.model_fields.get(loc[-1]) if model is not None else None
    return field.description if field is not None else None


def load_policy(path: str | Path | None) -> Policy:
    """Read the policy file; no path means every default of the SPEC."""
    if path is None or str(path) == "":
        return Policy()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{file}: cannot read the policy file: {exc.strerror}") from exc
    return parse_policy(text, origin=str(file))
