"""Prometheus metrics of the notifier (same registry as shared/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter

NOTIFICATIONS = Counter(
    "aftersales_notifications_total",
    "Notifications by outcome (accepted, duplicate, skipped, deferred, retried, sent, failed).",
    ["service", "template", "outcome"],
)
ATTEMPTS = Counter(
    "aftersales_notification_attempts_total",
    "Delivery attempts by channel and result (ok, transient, permanent; busy: handed back "
    "uncounted, the gateway had no free connection).",
    ["service", "channel", "result"],
)
