"""The deployment's policy file (SPEC section 8): every business default, validated at start-up."""

from __future__ import annotations

import tomllib
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(gt=0)]


class PolicyError(ValueError):
    """The policy file is missing, unreadable or holds a bad value."""


class FreeShippingDeduction(StrEnum):
    NEVER = "never"
    WHEN_THRESHOLD_BROKEN = "when_threshold_broken"
    ALWAYS = "always"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalHours(_Section):
    """A daily span of local clock time, e.g. working hours 09:00-18:00."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> LocalHours:
        try:
            start_text, end_text = text.split("-")
            return cls(
                start=time.fromisoformat(start_text.strip()),
                end=time.fromisoformat(end_text.strip()),
            )
        except ValueError as exc:
            raise ValueError(f"expected 'HH:MM-HH:MM', got {text!r}") from exc

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def _hours(value: object) -> object:
    return LocalHours.parse(value) if isinstance(value, str) else value


class ReturnsPolicy(_Section):
    no_reason_days: PosInt = 7
    quality_claim_days: PosInt = 15
    evidence_wait_hours: PosInt = 72
    signature_wait_hours: PosInt = 48
    review_sla_working_hours: PosInt = 12
    working_hours: LocalHours = LocalHours(start=time(9), end=time(18))
    return_shipping_cap: NonNegInt = 3000
    free_shipping_deduction: FreeShippingDeduction = FreeShippingDeduction.WHEN_THRESHOLD_BROKEN
    inspection_required_categories: frozenset[str] = frozenset({"electronics"})
    inspection_grace_hours: PosInt = 20
    refund_deadline_hours: PosInt = 24

    _parse_hours = field_validator("working_hours", mode="before")(_hours)

    @model_validator(mode="after")
    def _check(self) -> ReturnsPolicy:
        if self.working_hours.start >= self.working_hours.end:
            raise ValueError("working_hours must start before they end within one day")
        if self.inspection_grace_hours > self.refund_deadline_hours:
            raise ValueError("inspection_grace_hours must not exceed refund_deadline_hours")
        return self


class ComplaintsPolicy(_Section):
    first_response_hours: PosInt = 2
    resolution_hours: PosInt = 2
    complex_resolution_hours: PosInt = 24
    complex_categories: frozenset[str] = frozenset(
        {"quality_issue", "not_received", "fake_shipment"}
    )
    late_shipment_hours: PosInt = 72
    late_shipment_rate_bp: NonNegInt = 500
    late_shipment_cap: NonNegInt = 3000
    compensation_budget: NonNegInt = 10000
    compensation_window_days: PosInt = 30
    coupon_validity_days: PosInt = 30
    quality_issue_rate_bp: NonNegInt = 500
    quality_issue_min: NonNegInt = 500
    quality_issue_max: NonNegInt = 5000
    logistics_delay_coupon: NonNegInt = 500
    missing_item_coupon: NonNegInt = 1000
    wrong_item_coupon: NonNegInt = 1000
    not_received_coupon: NonNegInt = 1000
    service_attitude_coupon: NonNegInt = 500

    @model_validator(mode="after")
    def _check(self) -> ComplaintsPolicy:
        if self.quality_issue_min > self.quality_issue_max:
            raise ValueError("quality_issue_min must not exceed quality_issue_max")
        return self


class FollowupPolicy(_Section):
    callback_delay_hours: NonNegInt = 24
    callback_deadline_hours: PosInt = 72
    quiet_hours: LocalHours = LocalHours(start=time(21), end=time(9))
    low_score_threshold: Annotated[int, Field(ge=1, le=5)] = 2

    _parse_hours = field_validator("quiet_hours", mode="before")(_hours)

    @model_validator(mode="after")
    def _check(self) -> FollowupPolicy:
        if self.callback_delay_hours >= self.callback_deadline_hours:
            raise ValueError("callback_delay_hours must be below callback_deadline_hours")
        return self


class NotifierPolicy(_Section):
    max_non_urgent_per_day: NonNegInt = 3
    retry_max_attempts: PosInt = 5
    quiet_hours: LocalHours = LocalHours(start=time(21), end=time(9))

    _parse_hours = field_validator("quiet_hours", mode="before")(_hours)


class RefundsPolicy(_Section):
    # Where money beyond what an order's payment methods were charged goes (SPEC 4.11): e.g.
    # compensation or return freight on top of a full refund, and re-issues of failed parts.
    overflow_method: Annotated[str, Field(min_length=1, max_length=64)] = "balance"


class Policy(_Section):
    timezone: str = "Asia/Shanghai"
    returns: ReturnsPolicy = ReturnsPolicy()
    complaints: ComplaintsPolicy = ComplaintsPolicy()
    followup: FollowupPolicy = FollowupPolicy()
    notifier: NotifierPolicy = NotifierPolicy()
    refunds: RefundsPolicy = RefundsPolicy()

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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PolicyError(f"{origin}: {problems}") from exc


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
