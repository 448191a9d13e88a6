"""A shop's month of input events, made up but plausible and the same for the same arguments:
for trying `aftersales simulate`, its tests and its benchmark.

    python -m aftersales_dev.history --orders 2000 --out events.jsonl

Every order is paid and (mostly) shipped and signed for; then one of these happens to it, in
turn: nothing; a no-reason return requested on local day 1..20 after signing (shipped back and
signed by the warehouse only when asked within 7 days, as buyers whose return was refused do
not send it); a partial no-reason return of a free-shipped order that breaks the threshold;
a seller-fault return with photos; a complaint (responded, resolved upheld); no shipment at all
(a late-shipment case). Refunds are settled by finance, callbacks answered by the buyer.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aftersales_dev.events import cloud_event
from shared.contracts import ids, topics

# Monday 2026-03-02 10:00 in Shanghai.
START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)
D = timedelta(days=1)
SCENARIOS = ("none", "no_reason", "threshold", "seller_fault", "complaint", "unshipped")
COMPLAINT_CATEGORIES = ("logistics_delay", "quality_issue", "wrong_item", "service_attitude")
NO_REASON_DAYS = 20  # requests on local days 1..20 after signing, in turn


@dataclass(frozen=True)
class Line:
    """One line of the recording: where the record was and the event."""

    topic: str
    key: str
    event: dict[str, Any]

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.event["time"])


def local_noon(signed_at: datetime, days_after: int) -> datetime:
    """Noon (Shanghai) of the local day `days_after` days after the signature's local date."""
    day = signed_at.astimezone(SHANGHAI).date() + timedelta(days=days_after)
    return datetime(day.year, day.month, day.day, 12, tzinfo=SHANGHAI).astimezone(UTC)


class _Order:
    def __init__(self, index: int, rng: random.Random, spacing: timedelta) -> None:
        self.index = index
        self.rng = rng
        self.order_id = f"O-{index:06d}"
        self.customer_id = f"C-{index % 997:04d}"  # buyers come back: several orders each
        self.paid_at = START + index * spacing
        self.lines: list[Line] = []
        self._serial = 0

    def emit(self, topic: str, type_: str, at: datetime, data: dict[str, Any]) -> None:
        self._serial += 1
        key = data.get("order_id", self.customer_id)
        event_id = f"{self.order_id}-{self._serial:02d}-{type_}"
        event = cloud_event(type_, data, at, id=event_id, platform="/shop-platform/sim")
        self.lines.append(Line(topic, key, event))


def _paid(order: _Order, lines: list[dict[str, Any]], threshold: int | None, fee: int) -> None:
    goods = sum(line["paid_amount"] for line in lines)
    order.emit(
        topics.ORDERS,
        "order.paid",
        order.paid_at,
        {
            "order_id": order.order_id,
            "shop_id": f"S-{order.index % 3 + 1}",
            "customer_id": order.customer_id,
            "paid_at": order.paid_at.isoformat(),
            "currency": "CNY",
            "lines": lines,
            "shipping_fee_paid": fee,
            "standard_shipping_fee": 1000,
            "free_shipping_threshold": threshold,
            "shipping_insurance": False,
            "presale_ship_by": None,
            "payments": [{"method": "alipay", "amount": goods + fee}],
            "customer": {
                "name": "Buyer",
                "phone": "13900000000",
                "email": "buyer@example.com",
                "preferred_channel": "sms",
            },
        },
    )


def _line(line_id: str, paid: int, category: str = "apparel") -> dict[str, Any]:
    return {
        "line_id": line_id,
        "sku": f"SKU-{line_id}-{paid}",
        "title": f"Item {line_id}",
        "category": category,
        "quantity": 1,
        "paid_amount": paid,
        "is_gift": False,
        "stated_price": 0,
        "no_reason_return_waived": False,
    }


def _delivered(order: _Order) -> datetime:
    shipped = order.paid_at + 20 * H
    order.emit(
        topics.ORDERS,
        "order.shipped",
        shipped,
        {
            "order_id": order.order_id,
            "shipped_at": shipped.isoformat(),
            "carrier": "SF",
            "tracking_no": f"SF{order.index:08d}",
        },
    )
    signed = shipped + 2 * D
    order.emit(
        topics.SIGNATURES,
        "parcel.signed",
        signed,
        {
            "order_id": order.order_id,
            "leg": "outbound",
            "tracking_no": f"SF{order.index:08d}",
            "signed_at": signed.isoformat(),
        },
    )
    return signed


def _return(
    order: _Order,
    *,
    at: datetime,
    reason: str,
    lines: list[str],
    evidence: list[str],
    sent_back: bool,
) -> None:
    return_id = f"R-{order.index:06d}"
    base = {"return_id": return_id, "order_id": order.order_id}
    order.emit(
        topics.RETURNS,
        "return.requested",
        at,
        {
            **base,
            "customer_id": order.customer_id,
            "kind": "refund",
            "reason": reason,
            "lines": [{"line_id": line, "quantity": 1} for line in lines],
            "condition": ["opened_for_inspection"],
            "evidence_urls": evidence,
            "requested_at": at.isoformat(),
        },
    )
    if not sent_back:
        return
    shipped = at + 3 * H
    tracking = f"YT{order.index:08d}"
    order.emit(
        topics.RETURNS,
        "return.shipped",
        shipped,
        {
            **base,
            "carrier": "YTO",
            "tracking_no": tracking,
            "shipped_at": shipped.isoformat(),
            "shipping_fee_paid": 1200,
        },
    )
    signed = shipped + 2 * D
    order.emit(
        topics.SIGNATURES,
        "parcel.signed",
        signed,
        {
            **base,
            "leg": "return",
            "tracking_no": tracking,
            "signed_at": signed.isoformat(),
        },
    )
    refund_id = ids.refund_id("return", return_id)
    settled = signed + 30 * H
    order.emit(
        topics.PAYOUTS,
        "refund.settled",
        settled,
        {"refund_id": refund_id, "order_id": order.order_id, "settled_at": settled.isoformat()},
    )


def _complaint(order: _Order, opened: datetime) -> None:
    complaint_id = f"K-{order.index:06d}"
    category = COMPLAINT_CATEGORIES[order.index // len(SCENARIOS) % len(COMPLAINT_CATEGORIES)]
    base = {"complaint_id": complaint_id, "order_id": order.order_id}
    order.emit(
        topics.COMPLAINTS,
        "complaint.opened",
        opened,
        {
            **base,
            "customer_id": order.customer_id,
            "category": category,
            "description": "the parcel is not what I expected",
            "opened_at": opened.isoformat(),
        },
    )
    responded = opened + order.rng.choice((H / 2, H, 3 * H))  # 3 h: past the first response
    order.emit(
        topics.COMPLAINTS,
        "complaint.responded",
        responded,
        {**base, "agent_id": "agent-1", "responded_at": responded.isoformat()},
    )
    resolved = opened + order.rng.choice((90 * H / 60, 5 * H, 20 * H))
    order.emit(
        topics.COMPLAINTS,
        "complaint.resolved",
        resolved,
        {
            **base,
            "outcome": "upheld",
            "remedy": "none",
            "agent_id": "agent-1",
            "resolved_at": resolved.isoformat(),
        },
    )


def _answer(order: _Order, case_type: str, case_id: str, closed: datetime) -> None:
    answered = closed + 2 * D
    order.emit(
        topics.SURVEYS,
        "survey.answered",
        answered,
        {
            "callback_id": ids.callback_id(case_type, case_id),
            "customer_id": order.customer_id,
            "score": order.rng.choice((1, 3, 4, 5, 5)),
            "comment": "",
            "answered_at": answered.isoformat(),
        },
    )


def _order_lines(index: int, rng: random.Random, spacing: timedelta) -> list[Line]:
    order = _Order(index, rng, spacing)
    scenario = SCENARIOS[index % len(SCENARIOS)]
    if scenario == "threshold":
        # Free shipping from 99.00; one item returned leaves 60.00 kept: the fee is deducted.
        _paid(order, [_line("L1", 6000), _line("L2", 5000)], 9900, 0)
    else:
        _paid(order, [_line("L1", rng.choice((4900, 9900, 19900)))], None, 1000)
    if scenario == "unshipped":
        return order.lines  # never shipped: a late-shipment refund after 72 h
    signed = _delivered(order)
    if scenario == "no_reason":
        day = 1 + (index // len(SCENARIOS)) % NO_REASON_DAYS
        at = local_noon(signed, day)
        _return(order, at=at, reason="dislike", lines=["L1"], evidence=[], sent_back=day <= 7)
        if day <= 7:
            _answer(order, "return", f"R-{index:06d}", at + 2 * D)
    elif scenario == "threshold":
        at = local_noon(signed, 3)
        _return(order, at=at, reason="changed_mind", lines=["L2"], evidence=[], sent_back=True)
    elif scenario == "seller_fault":
        at = local_noon(signed, 10)
        photos = ["https://img.example.com/1.jpg"]
        _return(order, at=at, reason="quality_issue", lines=["L1"], evidence=photos, sent_back=True)
    elif scenario == "complaint":
        _complaint(order, signed + 5 * H)
    return order.lines


def generate(orders: int, *, seed: int = 7, days: int = 30) -> list[Line]:
    """The lines of `orders` orders paid evenly over `days` days, in time order."""
    rng = random.Random(seed)  # noqa: S311 (made-up data, reproducible by its seed)
    spacing = days * D / max(orders, 1)
    lines = [line for index in range(orders) for line in _order_lines(index, rng, spacing)]
    return sorted(lines, key=lambda line: line.time)  # stable: an order's events keep order


def as_jsonl(lines: list[Line]) -> Iterator[str]:
    """The recording format of `aftersales record`, every record on partition 0."""
    offsets: dict[str, int] = {}
    for line in lines:
        offset = offsets.get(line.topic, 0)
        offsets[line.topic] = offset + 1
        record = {
            "topic": line.topic,
            "partition": 0,
            "offset": offset,
            "key": line.key,
            "event": line.event,
        }
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def write(path: Path, lines: list[Line]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for text in as_jsonl(lines):
            out.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    lines = generate(args.orders, seed=args.seed)
    write(args.out, lines)
    print(f"{len(lines):,} events of {args.orders:,} orders written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
