"""Every byte the returns service emits for a fixed history is the byte recorded for it in
`golden_outputs.json`: decisions and their messages in both languages, refund requests with
their breakdowns, reshipments, timers' outcomes, in commit order.

The history covers each decision rule, waits resolved by a later event and by a timer,
exchanges, gifts, several lines, insurance, freight learnt before and after completion, an
inspection, a review, a cancellation, and events of one order in one batch and in several.
Its ids are fixed (orders, returns and the input events' own ids), so the outputs' ids and
texts are too. Changes to how the service computes its outputs must leave them as they are;
a change of what it says re-records them with `RECORD_GOLDEN=1`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.catchup import CATCH_UP_GRACE
from tests.golden import Step, applied_together, check_recorded, in_order

from .helpers import (
    T0,
    D,
    H,
    ReturnsService,
    delivered,
    evidence_submitted,
    order_paid,
    outbound_signed,
    paid_line,
    return_cancelled,
    return_inspected,
    return_requested,
    return_reviewed,
    return_shipped,
    return_signed,
)

GOLDEN = Path(__file__).with_name("golden_outputs.json")


def _o(n: int) -> str:
    return f"GOLD-O{n}"


def _r(n: int, k: int = 1) -> str:
    return f"GOLD-O{n}-R{k}"


def _claim(n: int, reason: str, *, at: datetime, **request: Any) -> dict[str, Any]:
    """Order `n`'s seller-fault request for `reason`, with its photo; `request` on top."""
    return return_requested(
        _o(n), _r(n), at=at, reason=reason, evidence=[f"https://img/{n}.jpg"], **request
    )


def history() -> list[Step]:
    """(instant, one batch of events): the clock moves there, due timers fire, then the batch."""
    steps: list[Step] = [
        # 1: plain no-reason refund, approved then completed in separate batches.
        (T0, [*delivered(_o(1), lines=[paid_line("L1", quantity=3, paid=9000)])]),
        (T0 + H, [return_requested(_o(1), _r(1), at=T0 + H, lines={"L1": 2})]),
        (T0 + 2 * H, [return_signed(_o(1), _r(1), at=T0 + 2 * H)]),
        # 2: asked before the order is known, its signature before the order: all in one batch.
        (
            T0 + 3 * H,
            [
                return_requested(_o(2), _r(2), at=T0 + 2 * H, lines={"L1": 1}),
                return_signed(_o(2), _r(2), at=T0 + 3 * H),
                return_requested(_o(2), _r(2, 2), at=T0 + 2 * H, lines={"L1": 2}),
                outbound_signed(_o(2), at=T0 - 3 * D),
                order_paid(_o(2), at=T0 - 5 * D, lines=[paid_line("L1", quantity=2, paid=25901)]),
                outbound_signed(_o(2), at=T0 - 3 * D + H),
            ],
        ),
        # 3: seller fault without photos waits; photos, freight, signature: refunded with it;
        # then freight sent again and a cancellation after completion.
        (T0, [*delivered(_o(3), paid_at=T0 - 6 * D, signed_at=T0 - 4 * D, shipping_fee_paid=600)]),
        (T0 + 2 * H, [return_requested(_o(3), _r(3), at=T0 + 2 * H, reason="quality_issue")]),
        (T0 + 5 * H, [evidence_submitted(_o(3), _r(3), at=T0 + 5 * H)]),
        (T0 + 6 * H, [return_shipped(_o(3), _r(3), at=T0 + 6 * H, fee=4500)]),
        (T0 + 2 * D, [return_signed(_o(3), _r(3), at=T0 + 2 * D)]),
        (
            T0 + 2 * D + H,
            [
                return_shipped(_o(3), _r(3), at=T0 + 2 * D + H, fee=1800),
                return_cancelled(_o(3), _r(3), at=T0 + 2 * D + H),
            ],
        ),
        # 4: seller fault refunded before its freight is known: the freight on its own later.
        (
            T0,
            [
                *delivered(_o(4), lines=[paid_line("L1", quantity=2, paid=25901)]),
                _claim(4, "wrong_item", at=T0),
            ],
        ),
        (T0 + H, [return_signed(_o(4), _r(4), at=T0 + H)]),
        (T0 + 2 * H, [return_shipped(_o(4), _r(4), at=T0 + 2 * H, fee=1500)]),
        # 5: the order never arrives: the signature wait runs out.
        (T0 + 4 * H, [return_requested(_o(5), _r(5), at=T0 + 4 * H)]),
        # 6: outside the no-reason window.
        (
            T0 + 5 * H,
            [
                *delivered(_o(6), paid_at=T0 - 30 * D, signed_at=T0 - 20 * D),
                return_requested(_o(6), _r(6), at=T0 + 5 * H),
            ],
        ),
        # 7: an excluded category among other lines, and a waived line.
        (
            T0 + 5 * H,
            [
                *delivered(
                    _o(7),
                    lines=[
                        paid_line("L1", category="fresh_perishable"),
                        paid_line("L2", paid=5000),
                    ],
                ),
                return_requested(_o(7), _r(7), at=T0 + 5 * H, lines={"L1": 1, "L2": 1}),
            ],
        ),
        # 8: not intact.
        (
            T0 + 5 * H,
            [
                *delivered(_o(8)),
                return_requested(
                    _o(8), _r(8), at=T0 + 5 * H, condition=["tags_removed", "soiled_or_damaged"]
                ),
            ],
        ),
        # 9: more units than bought.
        (
            T0 + 5 * H,
            [*delivered(_o(9)), return_requested(_o(9), _r(9), at=T0 + 5 * H, lines={"L1": 4})],
        ),
        # 10: an electronics line waits for inspection, which fails.
        (
            T0 + 5 * H,
            [
                *delivered(_o(10), lines=[paid_line("L1", paid=129900, category="electronics")]),
                return_requested(_o(10), _r(10), at=T0 + 5 * H),
            ],
        ),
        (T0 + 6 * H, [return_signed(_o(10), _r(10), at=T0 + 6 * H)]),
        (
            T0 + 8 * H,
            [return_inspected(_o(10), _r(10), at=T0 + 8 * H, passed=False, findings=["activated"])],
        ),
        # 11: electronics inspected and passed; 12: electronics whose grace runs out.
        (
            T0 + 5 * H,
            [
                *delivered(_o(11), lines=[paid_line("L1", paid=59900, category="electronics")]),
                return_requested(_o(11), _r(11), at=T0 + 5 * H),
                *delivered(_o(12), lines=[paid_line("L1", paid=39900, category="electronics")]),
                return_requested(_o(12), _r(12), at=T0 + 5 * H),
            ],
        ),
        (
            T0 + 6 * H,
            [
                return_signed(_o(11), _r(11), at=T0 + 6 * H),
                return_signed(_o(12), _r(12), at=T0 + 6 * H),
            ],
        ),
        (T0 + 7 * H, [return_inspected(_o(11), _r(11), at=T0 + 7 * H, passed=True)]),
        # 13: quality claim past its window goes to review, approved; 14: the same, rejected.
        (
            T0 + 5 * H,
            [
                *delivered(_o(13), paid_at=T0 - 40 * D, signed_at=T0 - 30 * D),
                _claim(13, "not_as_described", at=T0 + 5 * H),
                *delivered(_o(14), paid_at=T0 - 40 * D, signed_at=T0 - 30 * D),
                _claim(14, "missing_parts", at=T0 + 5 * H),
            ],
        ),
        (
            T0 + 9 * H,
            [
                return_reviewed(_o(13), _r(13), at=T0 + 9 * H),
                return_reviewed(_o(14), _r(14), at=T0 + 9 * H, decision="reject"),
            ],
        ),
        (T0 + 10 * H, [return_signed(_o(13), _r(13), at=T0 + 10 * H)]),
        # 15: an exchange, no reason; 16: a seller-fault exchange with freight.
        (
            T0 + 5 * H,
            [
                *delivered(_o(15)),
                return_requested(_o(15), _r(15), at=T0 + 5 * H, kind="exchange"),
                *delivered(_o(16)),
                _claim(16, "damaged_in_transit", at=T0 + 5 * H, kind="exchange"),
                return_shipped(_o(16), _r(16), at=T0 + 5 * H, fee=900),
            ],
        ),
        (
            T0 + 6 * H,
            [
                return_signed(_o(15), _r(15), at=T0 + 6 * H),
                return_signed(_o(16), _r(16), at=T0 + 6 * H),
            ],
        ),
        # 17: a gift with a full return, free shipping broken, two payments; partial then rest.
        (
            T0 + 5 * H,
            [
                *delivered(
                    _o(17),
                    lines=[
                        paid_line("L1", quantity=2, paid=8000),
                        paid_line("L2", paid=3333),
                        paid_line("G1", gift=True, stated_price=1500),
                    ],
                    payments=[("card", 6000), ("alipay", 5333)],
                    free_shipping_threshold=10000,
                    standard_shipping_fee=800,
                ),
                return_requested(_o(17), _r(17), at=T0 + 5 * H, lines={"L1": 1}),
            ],
        ),
        (T0 + 6 * H, [return_signed(_o(17), _r(17), at=T0 + 6 * H)]),
        (
            T0 + 7 * H,
            [
                return_requested(
                    _o(17), _r(17, 2), at=T0 + 7 * H, lines={"L1": 1, "L2": 1, "G1": 1}
                ),
                return_signed(_o(17), _r(17, 2), at=T0 + 8 * H),
            ],
        ),
        # 18: insured order, seller fault, outbound fee paid; 19: cancelled while waiting.
        (
            T0 + 5 * H,
            [
                *delivered(_o(18), shipping_insurance=True, shipping_fee_paid=1000),
                _claim(18, "quality_issue", at=T0 + 5 * H),
                return_requested(_o(19), _r(19), at=T0 + 5 * H),
            ],
        ),
        (
            T0 + 6 * H,
            [
                return_signed(_o(18), _r(18), at=T0 + 6 * H),
                return_cancelled(_o(19), _r(19), at=T0 + 6 * H),
            ],
        ),
        # 20: evidence never comes: the evidence wait runs out.
        (
            T0 + 5 * H,
            [
                *delivered(_o(20)),
                return_requested(_o(20), _r(20), at=T0 + 5 * H, reason="quality_issue"),
            ],
        ),
        # Long enough for every wait, grace and deadline to fire; the waits and the grace
        # fire days late there, so they are judged after the catch-up grace.
        (T0 + 10 * D, []),
        (T0 + 10 * D + CATCH_UP_GRACE, []),
    ]
    return in_order(steps, "returns")


async def emitted(svc: ReturnsService, keys: Mapping[str, None]) -> list[str]:
    """The outbox payloads of the orders, as stored, in commit order."""
    rows = await svc.outbox_rows(svc.outbox_table.c.key.in_(list(keys)))
    return [bytes(row["payload"]).decode() for row in rows]


async def test_the_outputs_of_a_fixed_history_are_byte_for_byte_the_recorded_ones(
    svc: ReturnsService,
) -> None:
    steps = history()
    with applied_together():
        for at, batch in steps:
            await svc.at(at, *batch)
    orders = dict.fromkeys(_o(n) for n in range(1, 21))
    got = await emitted(svc, orders)
    types = [json.loads(payload)["type"] for payload in got]
    assert {"return.approved", "return.rejected", "return.completed", "refund.requested"} <= set(
        types
    )
    check_recorded(GOLDEN, got)
