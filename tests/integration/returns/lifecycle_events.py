"""The returns state machine's events: built for its order and returns, delivered at once or
held back (pending) to arrive later."""

from __future__ import annotations

from typing import Any

from .helpers import (
    T0,
    H,
    Record,
    cloud_event,
    iso,
)


class LifecycleEvents:
    """Building and delivering the shop platform's events of the machine's order."""

    def at(self, offset_h: int) -> str:
        return iso(self.clock.now() + offset_h * H)

    def event(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        return cloud_event(type_, {"order_id": self.order_id, **data}, self.clock.now())

    def send(self, event: dict[str, Any], hold: bool) -> None:
        record = self.svc.record(event)
        if hold:
            self.pending.append(record)
        else:
            self.deliver([record])

    def deliver(self, records: list[Record]) -> None:
        self.run(self.svc.processor.process(records))
        self.delivered.extend(records)

    # --- the platform's events ------------------------------------------------------------

    def order_paid_event(self) -> dict[str, Any]:
        spec = self.spec
        return self.event(
            "order.paid",
            {
                "shop_id": "S-sm",
                "customer_id": self.customer_id,
                "paid_at": iso(T0 - 12 * 24 * H),
                "currency": "CNY",
                "lines": spec["lines"],
                "shipping_fee_paid": spec["shipping_fee_paid"],
                "standard_shipping_fee": spec["standard_shipping_fee"],
                "free_shipping_threshold": spec["free_shipping_threshold"],
                "shipping_insurance": spec["shipping_insurance"],
                "presale_ship_by": None,
                "payments": spec["payments"],
                "customer": {
                    "name": "李雷",
                    "phone": "13900001111",
                    "email": "li.lei@example.com",
                    "preferred_channel": "sms",
                },
            },
        )

    def outbound_signed_event(self, days_ago: int) -> dict[str, Any]:
        signed_at = iso(T0 - days_ago * 24 * H)
        return self.event(
            "parcel.signed", {"leg": "outbound", "tracking_no": "SF-1", "signed_at": signed_at}
        )

    def requested_event(self, which: int, request: dict[str, Any]) -> dict[str, Any]:
        self.requested.add(which)
        return self.event(
            "return.requested",
            {
                "return_id": self.return_ids[which],
                "customer_id": self.customer_id,
                "kind": request["kind"],
                "reason": request["reason"],
                "lines": request["lines"],
                "condition": request["condition"],
                "evidence_urls": request["evidence_urls"],
                "requested_at": self.at(request["offset"]),
            },
        )

    def shipped_event(self, which: int, fee: int, offset: int) -> dict[str, Any]:
        rid = self.return_ids[which]
        self.max_fee[rid] = max(self.max_fee[rid], fee)
        return self.event(
            "return.shipped",
            {
                "return_id": rid,
                "carrier": "YTO",
                "tracking_no": f"YT-{which}",
                "shipped_at": self.at(offset),
                "shipping_fee_paid": fee,
            },
        )

    def return_signed_event(self, which: int, offset: int) -> dict[str, Any]:
        return self.event(
            "parcel.signed",
            {
                "leg": "return",
                "return_id": self.return_ids[which],
                "tracking_no": f"YT-{which}",
                "signed_at": self.at(offset),
            },
        )

    def inspected_event(self, which: int, passed: bool) -> dict[str, Any]:
        return self.event(
            "return.inspected",
            {
                "return_id": self.return_ids[which],
                "passed": passed,
                "findings": [] if passed else ["soiled_or_damaged"],
                "inspected_at": self.at(0),
            },
        )

    def evidence_event(self, which: int, n: int) -> dict[str, Any]:
        return self.event(
            "return.evidence_submitted",
            {
                "return_id": self.return_ids[which],
                "evidence_urls": [f"https://img.example/{n}.jpg"],
                "submitted_at": self.at(0),
            },
        )

    def reviewed_event(self, which: int, decision: str, note: str) -> dict[str, Any]:
        return self.event(
            "return.reviewed",
            {
                "return_id": self.return_ids[which],
                "decision": decision,
                "agent_id": "agent-sm",
                "note": note,
                "reviewed_at": self.at(0),
            },
        )

    def cancelled_event(self, which: int) -> dict[str, Any]:
        return self.event(
            "return.cancelled", {"return_id": self.return_ids[which], "cancelled_at": self.at(0)}
        )
