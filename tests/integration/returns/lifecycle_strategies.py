"""What the returns state machine draws from: reasons, flags, categories, offsets of event
times, order and request specs; and a session that crashes before its commit."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any, TypeVar, get_args

from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import dead_letter_topic
from shared.contracts.inputs import ConditionFlag, ReturnReason
from shared.money import split_largest_remainder
from shared.policy import Policy

Result = TypeVar("Result")
COVERAGE: Counter[str] = Counter()  # examples that reached each situation

POLICY = Policy()
RULES = POLICY.returns
DEADLINE = timedelta(hours=RULES.refund_deadline_hours)
GRACE = timedelta(hours=RULES.inspection_grace_hours)
DLQ = dead_letter_topic("returns")

# Every reason and condition flag the contract allows.
REASONS = list(get_args(ReturnReason))
FLAGS = list(get_args(ConditionFlag))
# SPEC's seller-fault group of `return.requested` reasons, written out: the model's
# expectation must not come from the code under test.
SELLER_FAULT = {
    "quality_issue",
    "damaged_in_transit",
    "wrong_item",
    "missing_parts",
    "not_as_described",
}
CATEGORIES = ["apparel"] * 4 + ["home", "electronics", "electronics", "fresh_perishable"]
METHODS = ["alipay", "wechat", "card"]
# Free text the platform passes through: stored and shown verbatim, never interpreted.
TITLES = ["毛衣", "Sweater", "'; DROP TABLE returns.inbox; --", "{{ 7*7 }}", "${jndi:ldap://x/a}"]
# Offsets of event timestamps from the service's clock: far in the past (a backlog), a bit
# late, on time, in the future (the platform's clock runs ahead).
OFFSETS_H = [-24 * 30, -24 * 9, -60, -30, -25, -5, -1, 0, 0, 0, 2]
# Requests mostly on time, sometimes late (window), sometimes from the future.
REQUEST_OFFSETS_H = [0, 0, 0, -1, -5, -30, -24 * 9, -24 * 30, 2]

hours = st.sampled_from(OFFSETS_H)
# A whole return: when its parcel is signed (from the clock), its inspection, held back or not.
SIGNED_H = st.sampled_from([-60, -30, -1, 0, 0, 0, 2])
INSPECTION = st.sampled_from([None, None, True, False])
HOLD = st.sampled_from([False, False, False, True])
RETURNS_PER_ORDER = 4
# Facts mostly about the first returns of the order; later ones compete for the same units.
which_return = st.sampled_from([0, 0, 0, 1, 1, 2, 3])
maybe_hold = st.sampled_from([False, False, True])  # True: delayed in transit (pending)


@st.composite
def order_specs(draw: st.DrawFn) -> dict[str, Any]:
    lines = [
        {
            "line_id": f"L{i}",
            "sku": f"SKU-{i}",
            "title": draw(st.sampled_from(TITLES)),
            "category": draw(st.sampled_from(CATEGORIES)),
            "quantity": draw(st.integers(1, 3)),
            "paid_amount": draw(st.sampled_from([0, 1, 999, 10000, 25900, 33333])),
            "is_gift": False,
            "stated_price": 0,
            "no_reason_return_waived": draw(st.sampled_from([False] * 7 + [True])),
        }
        for i in range(1, draw(st.integers(1, 3)) + 1)
    ]
    if draw(st.booleans()):
        lines.append(
            {
                "line_id": "G1",
                "sku": "SKU-G1",
                "title": "赠品",
                "category": "gift",
                "quantity": draw(st.integers(1, 2)),
                "paid_amount": 0,
                "is_gift": True,
                "stated_price": draw(st.sampled_from([0, 500, 1999])),
            }
        )
    shipping = draw(st.sampled_from([0, 0, 600, 1200]))
    total = sum(line["paid_amount"] for line in lines) + shipping
    weights = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    weights[0] += 1
    parts = split_largest_remainder(total, weights)
    return {
        "lines": lines,
        "shipping_fee_paid": shipping,
        "standard_shipping_fee": 1000,
        "free_shipping_threshold": draw(st.sampled_from([None, 5000, 30000, 99900])),
        "shipping_insurance": draw(st.booleans()),
        "payments": [
            {"method": method, "amount": part} for method, part in zip(METHODS, parts, strict=False)
        ],
    }


@st.composite
def requests(draw: st.DrawFn, spec: dict[str, Any]) -> dict[str, Any]:
    """A return request, mostly eligible: the lines bought, in the quantities bought, intact,
    with evidence on seller fault; sometimes not (too many, a line not bought, not intact)."""
    quantities = {line["line_id"]: line["quantity"] for line in spec["lines"]}
    chosen = draw(
        st.lists(st.sampled_from(sorted(quantities)), min_size=1, max_size=3, unique=True)
    )
    if draw(st.integers(0, 14)) == 0:
        chosen.append("LX")  # not in the order
    lines = []
    for lid in chosen:
        most = quantities.get(lid, 1)
        exceed = draw(st.integers(0, 14)) == 0
        wanted = most + 1 if exceed else draw(st.sampled_from([1, 1, most]))
        lines.append({"line_id": lid, "quantity": wanted})
    reason = draw(st.sampled_from(REASONS))
    seller_fault = reason in SELLER_FAULT
    intact = draw(st.integers(0, 4)) > 0
    evidence = ["https://img.example/1.jpg"] if draw(st.integers(0, 3)) > 0 else []
    return {
        "kind": draw(st.sampled_from(["refund", "refund", "refund", "exchange"])),
        "reason": reason,
        "lines": lines,
        "condition": (
            draw(st.sampled_from([[], ["opened_for_inspection"], ["trial_use"]]))
            if intact
            else draw(st.lists(st.sampled_from(FLAGS), min_size=1, max_size=2, unique=True))
        ),
        "evidence_urls": evidence if seller_fault or draw(st.booleans()) else [],
        "offset": draw(st.sampled_from(REQUEST_OFFSETS_H)),
    }


def instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class CrashingSession(AsyncSession):
    """A session whose commit never happens: the process dies right before it."""

    async def commit(self) -> None:
        raise ConnectionResetError("crash before commit")
