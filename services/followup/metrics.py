"""Prometheus metrics of the follow-up service, labelled by shop (`unknown` for an order never
seen). The report's figures are ratios of these counters:

- CSAT          = answers{score=~"4|5"} / answers
- response rate = answers / callbacks_delivered
- on-time rate  = cases_on_time / cases_due

A callback is *sent* when its survey invitation is requested from the notifier, *delivered* or
*undelivered* when the notifier reports `notification.sent` or `notification.failed`; its cases
fall due then (or when they are missed without a callback).

A callback naming cases of several shops counts once for each of those shops.
"""

from __future__ import annotations

from prometheus_client import Counter

CALLBACKS_SENT = Counter(
    "aftersales_followup_callbacks_sent_total",
    "Satisfaction callbacks sent (survey invitations requested from the notifier).",
    ["shop"],
)
CALLBACKS_DELIVERED = Counter(
    "aftersales_followup_callbacks_delivered_total",
    "Satisfaction callbacks whose survey invitation the notifier delivered.",
    ["shop"],
)
CALLBACKS_UNDELIVERED = Counter(
    "aftersales_followup_callbacks_undelivered_total",
    "Satisfaction callbacks whose survey invitation the notifier gave up, by its reason.",
    ["shop", "reason"],
)
CASES_DUE = Counter(
    "aftersales_followup_cases_due_total",
    "Closed cases whose callback fell due: delivered, undelivered, or missed.",
    ["shop"],
)
CASES_ON_TIME = Counter(
    "aftersales_followup_cases_on_time_total",
    "Closed cases named in a callback delivered to the buyer before the case's deadline.",
    ["shop"],
)
ANSWERS = Counter(
    "aftersales_followup_answers_total",
    "Survey answers recorded, by score (1-5).",
    ["shop", "score"],
)
