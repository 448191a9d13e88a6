"""Every byte the refund ledger emits for a fixed history is the byte recorded for it in
`golden_outputs.json`: refunds issued, capped and split over one, two and three payment
methods (the largest-remainder paradox's correction included), requests waiting for their
order, repeats, refusals, payout failures and their re-issues, settlements, late refunds.

Its ids are fixed (orders, cases and the input events' own ids), so the outputs' ids are
too. Changes to how the ledger computes its outputs must leave them as they are; a change of
what it says re-records them with `RECORD_GOLDEN=1`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.contracts import ids
from tests.golden import Step, applied_together, check_recorded, in_order
from tests.refund_events import order_paid, refund_failed, refund_requested, refund_settled

from .conftest import T0, RefundsService

GOLDEN = Path(__file__).with_name("golden_outputs.json")
H = timedelta(hours=1)
DUE = T0 + 24 * H


def _o(n: int) -> str:
    return f"GOLD-O{n}"


def _paid(n: int, *lines: tuple[int, int], **order: Any) -> dict[str, Any]:
    """Order `n` paid three days before T0: `lines` (quantity, paid), `order` on top."""
    return order_paid(_o(n), T0 - 72 * H, lines=lines, **order)


def history() -> list[Step]:
    """(instant, one batch of events): the clock moves there, due timers fire, then the batch."""
    three = [("card", 7), ("alipay", 7), ("coupon", 3)]
    steps: list[tuple[datetime, list[dict[str, Any]]]] = [
        # 1: one method, two partial refunds then more than is left (cut).
        (
            T0,
            [
                _paid(1, (2, 20000), shipping_fee_paid=800),
                refund_requested(_o(1), "return", "c1a", [("goods", 10000)], T0, DUE),
            ],
        ),
        (
            T0 + H,
            [
                refund_requested(
                    _o(1),
                    "return",
                    "c1b",
                    [("goods", 12000), ("outbound_shipping", 800)],
                    T0 + H,
                    DUE,
                ),
                refund_requested(_o(1), "complaint", "c1c", [("compensation", 500)], T0 + H, DUE),
            ],
        ),
        # 2: two methods, refunded in three parts; a repeat and a conflicting request.
        (
            T0,
            [
                _paid(2, (1, 14925), (1, 4975), payments=[("alipay", 14925), ("coupon", 4975)]),
                refund_requested(_o(2), "return", "c2a", [("goods", 9950)], T0, DUE),
            ],
        ),
        (
            T0 + 2 * H,
            [
                refund_requested(_o(2), "return", "c2a", [("goods", 9950)], T0 + 2 * H, DUE),
                refund_requested(_o(2), "return", "c2a", [("goods", 9951)], T0 + 2 * H, DUE),
                refund_requested(_o(2), "return", "c2b", [("goods", 3333)], T0 + 2 * H, DUE),
                refund_requested(_o(2), "return", "c2c", [("goods", 6617)], T0 + 2 * H, DUE),
            ],
        ),
        # 3: three methods, refunded a unit at a time (the paradox's correction).
        (T0, [_paid(3, (1, 17), payments=three)]),
        *(
            (
                T0 + 3 * H + k * timedelta(minutes=1),
                [refund_requested(_o(3), "return", f"c3-{k}", [("goods", 1)], T0 + 3 * H, DUE)],
            )
            for k in range(17)
        ),
        # 4: requested before its order is paid; late (past due); another currency refused.
        (T0, [refund_requested(_o(4), "return", "c4a", [("goods", 5000)], T0, DUE)]),
        (
            T0 + 30 * H,
            [
                _paid(4, (1, 9000), payments=[("card", 6000), ("alipay", 3000)]),
                refund_requested(_o(4), "return", "c4b", [("goods", 1000)], T0 + 30 * H, DUE),
                refund_requested(
                    _o(4),
                    "return",
                    "c4c",
                    [("goods", 100)],
                    T0 + 30 * H,
                    DUE + 48 * H,
                    currency="USD",
                ),
            ],
        ),
        # 5: a failed part re-issued, the re-issue failed again; another refund settled.
        (
            T0 + 40 * H,
            [
                _paid(5, (1, 30000), payments=[("card", 20000), ("alipay", 10000)]),
                refund_requested(
                    _o(5), "return", "c5a", [("goods", 30000)], T0 + 40 * H, T0 + 64 * H
                ),
            ],
        ),
        (
            T0 + 41 * H,
            [
                refund_failed(_o(5), ids.refund_id("return", "c5a"), "card", 20000, T0 + 41 * H),
                refund_settled(_o(2), ids.refund_id("return", "c2b"), T0 + 41 * H),
            ],
        ),
    ]
    return in_order(steps, "refunds")


async def test_the_outputs_of_a_fixed_history_are_byte_for_byte_the_recorded_ones(
    svc: RefundsService,
) -> None:
    with applied_together():
        for at, batch in history():
            assert at >= svc.clock.now()
            svc.clock.set(at)
            await svc.fire_due()
            if batch:
                await svc.feed(*batch)
        reissue = ids.reissue_refund_id(ids.refund_id("return", "c5a"), "card")
        svc.clock.set(T0 + 42 * H)
        failed_again = refund_failed(_o(5), reissue, "balance", 20000, T0 + 42 * H)
        failed_again["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, "golden-refunds-reissue-failed"))
        await svc.feed(failed_again)
    svc.clock.set(T0 + 30 * 24 * H)
    await svc.fire_due()
    rows = await svc.outbox_rows(svc.outbox_table.c.key.in_([_o(n) for n in range(1, 6)]))
    got = [bytes(row["payload"]).decode() for row in rows]
    check_recorded(GOLDEN, got)
