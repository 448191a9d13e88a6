"""The one CloudEvent builder of the test suites, the fault run and the benchmark: the envelope
every event has, unique ids, the `source` a type needs on this system's own topics, the topic
each type travels on, and the shop platform's events (SPEC section 2) as plain dicts, with the
refund ledger's `refund.issued` that the notifier and the follow-up read.

The event builders take the data's fields and pass the rest (`id`, `source`, `platform`,
`id_prefix`, and `time` where the envelope's time is not the event's own) to `cloud_event`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.contracts.events import (
    OUTPUTS,
    PLATFORM_TOPIC_TYPES,
    SERVICE_TOPIC_TYPES,
    service_source,
)

# The topic of every type (SPEC section 1): the platform's inputs and this system's outputs.
TOPIC_OF: dict[str, str] = {
    **{type_: topic for topic, types in PLATFORM_TOPIC_TYPES.items() for type_ in types},
    **{type_: output.topic for type_, output in OUTPUTS.items()},
}


def topic_of(event: Mapping[str, Any]) -> str:
    return TOPIC_OF[str(event["type"])]


def encode(event: Mapping[str, Any] | list[Any], *, compact: bool = False) -> bytes:
    """A record's value as a producer writes it: UTF-8 JSON (`compact`: without spaces)."""
    separators = (",", ":") if compact else None
    return json.dumps(event, ensure_ascii=False, separators=separators).encode("utf-8")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def source_for(event_type: str, platform: str) -> str:
    """A publishing service's source for an internal type, else `platform` (the shop's): on
    this system's own topics only the services that publish a type may send it."""
    for published in SERVICE_TOPIC_TYPES.values():
        if event_type in published:
            return service_source(min(published[event_type]))
    return platform


def cloud_event(
    type_: str,
    data: dict[str, Any],
    at: datetime | str,
    *,
    id: str | None = None,
    source: str | None = None,
    platform: str = "/shop-platform/test",
    id_prefix: str = "evt",
) -> dict[str, Any]:
    """A structured-mode CloudEvent as the platform (or, for an internal type, the service that
    publishes it) sends it; `source` given as is, e.g. to test a wrong one."""
    return {
        "specversion": "1.0",
        "id": id or unique(f"{id_prefix}-{type_}"),
        "source": source if source is not None else source_for(type_, platform),
        "type": type_,
        "time": at if isinstance(at, str) else at.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }


def kettle_order(
    order_id: str,
    customer_id: str,
    customer: Mapping[str, Any],
    *,
    paid_at: str,
    amount: int = 10000,
    shop_id: str = "S1",
    line_id: str = "L1",
    sku: str = "SKU1",
    category: str = "appliances",
) -> dict[str, Any]:
    """The data of an order.paid of one kettle paid with Alipay, shipped free (standard fee
    10.00), for `customer` (name, phone, e-mail, preferred channel)."""
    kettle = order_line(line_id, sku=sku, title="Kettle", category=category, paid_amount=amount)
    at = datetime.fromisoformat(paid_at)
    event = order_paid(
        order_id, customer_id, at=at, lines=[kettle], customer=customer, shop_id=shop_id
    )
    return dict(event["data"])


# --- the shop platform's events (SPEC section 2) ----------------------------------------------


def _event(type_: str, data: dict[str, Any], at: datetime, envelope: dict[str, Any]) -> dict:
    return cloud_event(type_, data, envelope.pop("time", at), **envelope)


def buyer(name: str, phone: str, email: str | None = None, channel: str = "sms") -> dict:
    """An order's `customer`: name, phone, e-mail (left out when None), preferred channel."""
    contact = {"name": name, "phone": phone, "email": email, "preferred_channel": channel}
    return {key: value for key, value in contact.items() if value is not None}


def order_line(
    line_id: str, *, sku: str, title: str, category: str, paid_amount: int, quantity: int = 1
) -> dict[str, Any]:
    return {
        "line_id": line_id,
        "sku": sku,
        "title": title,
        "category": category,
        "quantity": quantity,
        "paid_amount": paid_amount,
    }


def order_paid(
    order_id: str,
    customer_id: str,
    *,
    at: datetime,
    lines: Sequence[Mapping[str, Any]],
    customer: Mapping[str, Any],
    shop_id: str,
    payments: Sequence[tuple[str, int]] | None = None,
    shipping_fee_paid: int = 0,
    standard_shipping_fee: int = 1000,
    free_shipping_threshold: int | None = None,
    shipping_insurance: bool = False,
    presale_ship_by: datetime | None = None,
    currency: str = "CNY",
    **envelope: Any,
) -> dict[str, Any]:
    """An order.paid; without `payments`, one Alipay payment of the goods and the shipping."""
    if payments is None:
        payments = [("alipay", sum(int(item["paid_amount"]) for item in lines) + shipping_fee_paid)]
    data = {
        "order_id": order_id,
        "shop_id": shop_id,
        "customer_id": customer_id,
        "paid_at": at.isoformat(),
        "currency": currency,
        "lines": [dict(item) for item in lines],
        "shipping_fee_paid": shipping_fee_paid,
        "standard_shipping_fee": standard_shipping_fee,
        "free_shipping_threshold": free_shipping_threshold,
        "shipping_insurance": shipping_insurance,
        "presale_ship_by": None if presale_ship_by is None else presale_ship_by.isoformat(),
        "payments": [{"method": method, "amount": amount} for method, amount in payments],
        "customer": dict(customer),
    }
    return _event("order.paid", data, at, envelope)


def order_shipped(
    order_id: str, *, at: datetime, tracking_no: str | None = None, **envelope: Any
) -> dict[str, Any]:
    data = {
        "order_id": order_id,
        "shipped_at": at.isoformat(),
        "carrier": "SF",
        "tracking_no": tracking_no or f"SF-{order_id}",
    }
    return _event("order.shipped", data, at, envelope)


def parcel_signed(
    order_id: str,
    return_id: str | None = None,
    *,
    at: datetime,
    tracking_no: str | None = None,
    **envelope: Any,
) -> dict[str, Any]:
    """The outbound parcel signed for, or with `return_id` the returned one."""
    data: dict[str, Any] = {"order_id": order_id}
    if return_id is None:
        data.update(leg="outbound", tracking_no=tracking_no or f"SF-{order_id}")
    else:
        data.update(leg="return", return_id=return_id, tracking_no=tracking_no or f"YT-{return_id}")
    data["signed_at"] = at.isoformat()
    return _event("parcel.signed", data, at, envelope)


def return_requested(
    order_id: str,
    return_id: str,
    customer_id: str,
    *,
    at: datetime,
    lines: Mapping[str, int],
    reason: str = "size_fit",
    kind: str = "refund",
    condition: Iterable[str] = (),
    evidence_urls: Iterable[str] = (),
    **envelope: Any,
) -> dict[str, Any]:
    data = {
        "return_id": return_id,
        "order_id": order_id,
        "customer_id": customer_id,
        "kind": kind,
        "reason": reason,
        "lines": [{"line_id": line_id, "quantity": q} for line_id, q in lines.items()],
        "condition": list(condition),
        "evidence_urls": list(evidence_urls),
        "requested_at": at.isoformat(),
    }
    return _event("return.requested", data, at, envelope)


def return_reviewed(
    order_id: str,
    return_id: str,
    *,
    at: datetime,
    agent_id: str,
    note: str,
    decision: str = "approve",
    **envelope: Any,
) -> dict[str, Any]:
    data = {
        "return_id": return_id,
        "order_id": order_id,
        "decision": decision,
        "agent_id": agent_id,
        "note": note,
        "reviewed_at": at.isoformat(),
    }
    return _event("return.reviewed", data, at, envelope)


def return_shipped(
    order_id: str,
    return_id: str,
    *,
    at: datetime,
    fee: int,
    tracking_no: str | None = None,
    **envelope: Any,
) -> dict[str, Any]:
    data = {
        "return_id": return_id,
        "order_id": order_id,
        "carrier": "YTO",
        "tracking_no": tracking_no or f"YT-{return_id}",
        "shipped_at": at.isoformat(),
        "shipping_fee_paid": fee,
    }
    return _event("return.shipped", data, at, envelope)


def return_inspected(
    order_id: str,
    return_id: str,
    *,
    at: datetime,
    passed: bool,
    findings: Iterable[str] = (),
    **envelope: Any,
) -> dict[str, Any]:
    data = {
        "return_id": return_id,
        "order_id": order_id,
        "passed": passed,
        "findings": list(findings),
        "inspected_at": at.isoformat(),
    }
    return _event("return.inspected", data, at, envelope)


def complaint_opened(
    complaint_id: str,
    order_id: str,
    customer_id: str,
    category: str,
    *,
    at: datetime,
    description: str,
    **envelope: Any,
) -> dict[str, Any]:
    data = {
        "complaint_id": complaint_id,
        "order_id": order_id,
        "customer_id": customer_id,
        "category": category,
        "description": description,
        "opened_at": at.isoformat(),
    }
    return _event("complaint.opened", data, at, envelope)


def complaint_responded(
    complaint_id: str, order_id: str, *, at: datetime, agent_id: str = "agent-7", **envelope: Any
) -> dict[str, Any]:
    data = {"complaint_id": complaint_id, "order_id": order_id, "agent_id": agent_id}
    return _event("complaint.responded", {**data, "responded_at": at.isoformat()}, at, envelope)


def complaint_resolved(
    complaint_id: str,
    order_id: str,
    *,
    at: datetime,
    outcome: str = "upheld",
    remedy: str = "none",
    agent_id: str = "agent-7",
    **envelope: Any,
) -> dict[str, Any]:
    data = {
        "complaint_id": complaint_id,
        "order_id": order_id,
        "outcome": outcome,
        "remedy": remedy,
        "agent_id": agent_id,
        "resolved_at": at.isoformat(),
    }
    return _event("complaint.resolved", data, at, envelope)


def survey_answered(
    callback_id: str,
    customer_id: str,
    *,
    at: datetime,
    score: Any,
    comment: str = "",
    **envelope: Any,
) -> dict[str, Any]:
    data = {
        "callback_id": callback_id,
        "customer_id": customer_id,
        "score": score,
        "comment": comment,
        "answered_at": at.isoformat(),
    }
    return _event("survey.answered", data, at, envelope)


# --- this system's own events that other services read ---------------------------------------


def refund_issued(
    refund_id: str,
    order_id: str,
    customer_id: str,
    case: tuple[str, str],
    *,
    at: datetime,
    breakdown: Sequence[tuple[str, int]],
    due_by: datetime | None = None,
    payments: Sequence[tuple[str, int]] | None = None,
    return_shipping_payer: str | None = None,
    currency: str = "CNY",
    **envelope: Any,
) -> dict[str, Any]:
    """A refund.issued of `case` (type, id) as the refund ledger publishes it: the breakdown's
    sum, paid back by Alipay unless `payments` say otherwise (nothing when it is 0), due when
    issued unless `due_by`; `return_shipping_payer` left out when None."""
    amount = sum(part for _, part in breakdown)
    if payments is None:
        payments = [("alipay", amount)] if amount else []
    data: dict[str, Any] = {
        "refund_id": refund_id,
        "order_id": order_id,
        "customer_id": customer_id,
        "case": {"type": case[0], "id": case[1]},
        "amount": amount,
        "currency": currency,
        "breakdown": [{"kind": kind, "amount": part} for kind, part in breakdown],
        "payments": [{"method": method, "amount": paid} for method, paid in payments],
        "due_by": (due_by or at).isoformat(),
        "issued_at": at.isoformat(),
    }
    if return_shipping_payer is not None:
        data["return_shipping_payer"] = return_shipping_payer
    return _event("refund.issued", data, at, envelope)
