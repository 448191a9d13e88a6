"""Prometheus metrics of the refund ledger, labelled by service and currency. Refunds issued
and their amount are the shared `aftersales_refunds_total` / `aftersales_refund_amount_minor_total`.

- cut by the cap        = aftersales_refund_cut_minor_total
- to the payout method  = aftersales_refund_overflow_minor_total
- on time by issue      = aftersales_refunds_on_time_total{by="issue"} / aftersales_refunds_total
- on time by settlement = ...{by="settlement"} / aftersales_refunds_settled_total
"""

from __future__ import annotations

from prometheus_client import Counter

CUT = Counter(
    "aftersales_refund_cut_minor_total",
    "What the order-level cap cut from refund requests, in minor units.",
    ["service", "currency"],
)
OVERFLOW = Counter(
    "aftersales_refund_overflow_minor_total",
    "What went to the payout method beyond the order's own methods, in minor units.",
    ["service", "currency"],
)
ON_TIME = Counter(
    "aftersales_refunds_on_time_total",
    "Refunds issued (by=issue) or settled (by=settlement) by their due_by.",
    ["service", "currency", "by"],
)
SETTLED = Counter(
    "aftersales_refunds_settled_total", "Refunds finance settled.", ["service", "currency"]
)
PAYOUT_FAILURES = Counter(
    "aftersales_refund_payout_failures_total",
    "Parts of refunds the payment provider refused, by whether they were re-issued.",
    ["service", "currency", "reissued"],
)
NEEDS_PERSON = Counter(
    "aftersales_refunds_needing_person_total",
    "Re-issued refunds that failed again: open until a person pays them.",
    ["service", "currency"],
)
REFUSED = Counter(
    "aftersales_refund_requests_refused_total",
    "Refund requests never paid (a different request under an issued refund_id, ...).",
    ["service", "reason"],
)
REPEATED = Counter(
    "aftersales_refund_requests_repeated_total",
    "The same refund request again: no second payment.",
    ["service"],
)
WAITING_TOO_LONG = Counter(
    "aftersales_refund_requests_waiting_too_long_total",
    "Refund requests still waiting for their order.paid when the wait alert fell due.",
    ["service"],
)
