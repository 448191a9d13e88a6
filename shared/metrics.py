"""Prometheus metrics of every service, labelled by service so `run all` shares one registry."""

from __future__ import annotations

from functools import cache
from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)


@cache
def labelled(metric: M, *labels: str) -> M:
    """The child of `metric` for `labels`, looked up once: `labels()` takes a lock and builds
    the label tuple on every call, which costs more than an increment (a handler counts per
    event). For children that are never removed (counters, not the lag gauges)."""
    return metric.labels(*labels)


RUNNING = Gauge(
    "aftersales_service_running",
    "1 for each service this process runs: joins process_* metrics (CPU, memory) to services.",
    ["service"],
)
EVENTS = Counter(
    "aftersales_events_total",
    "Input events by outcome (processed, duplicate, ignored, dead_lettered).",
    ["service", "type", "outcome"],
)
DEAD_LETTERS = Counter(
    "aftersales_dead_letters_total",
    "Input events sent to the dead-letter topic.",
    ["service", "reason"],
)
BATCH_SECONDS = Histogram(
    "aftersales_batch_seconds", "Time to process one fetched batch in one transaction.", ["service"]
)
RETRIES = Counter(
    "aftersales_transient_retries_total", "Batches retried after a passing fault.", ["service"]
)
CONSECUTIVE_FAILED_BATCHES = Gauge(
    "aftersales_consecutive_failed_batches",
    "Fetched batches that failed in a row and are fetched again (0 once one succeeds), by the "
    "SQLSTATE of the last failure ('' when it was not the database's).",
    ["service", "sqlstate"],
)
OUTBOX_PUBLISHED = Counter(
    "aftersales_outbox_published_total", "Events published from the outbox.", ["service", "topic"]
)
OUTBOX_LAG = Gauge(
    "aftersales_outbox_lag_seconds",
    "Age of the oldest unpublished outbox event (0 when empty).",
    ["service"],
)
OUTBOX_PENDING = Gauge(
    "aftersales_outbox_pending",
    "Unpublished outbox events the relay can send (neither parked nor held behind one).",
    ["service"],
)
OUTBOX_PARKED = Gauge(
    "aftersales_outbox_parked",
    "Outbox events the broker refused for good (too large...), waiting for "
    "`aftersales outbox retry`.",
    ["service"],
)
OUTBOX_HELD = Gauge(
    "aftersales_outbox_held",
    "Outbox events held back behind a parked event of the same key (per-key order).",
    ["service"],
)
CONSUMER_LAG = Gauge(
    "aftersales_consumer_lag",
    "Records on a partition after the service's committed offset (read every 15 s).",
    ["service", "topic", "partition"],
)
TIMERS_FIRED = Counter("aftersales_timers_fired_total", "Timers fired.", ["service", "kind"])
TIMERS_FAILED = Counter(
    "aftersales_timers_failed_total",
    "Timer runs that raised (a passing fault in one timer's handler counts too; the others "
    "fire meanwhile).",
    ["service", "kind"],
)
TIMERS_OVERDUE = Gauge(
    "aftersales_timers_overdue_seconds",
    "How long the oldest timer of a kind is past due and still not fired (0 when none is): "
    "a timer that never fires leaves no lag to observe (read every 15 s).",
    ["service", "kind"],
)
TIMERS_DUE = Gauge(
    "aftersales_timers_due",
    "Timers past due and not yet fired, by kind (read every 15 s).",
    ["service", "kind"],
)
TIMER_LAG = Histogram(
    "aftersales_timer_lag_seconds",
    "How late a timer fired after its due time.",
    ["service"],
    buckets=(0.1, 0.5, 1, 2, 5, 15, 60, 300, 1800, 3600),
)
DECISIONS = Counter(
    "aftersales_decisions_total",
    "Case decisions by event type and rule.",
    ["service", "type", "rule"],
)
PARCELS_OF_CLOSED_RETURNS = Counter(
    "aftersales_return_parcels_of_closed_cases_total",
    "Returned parcels the warehouse signed for after their case closed without a refund "
    "(cancelled or rejected): the merchant holds goods no rule refunds or sends back.",
    ["service", "status"],
)
REFUNDS = Counter("aftersales_refunds_total", "Refunds issued.", ["service", "case_type"])
REFUND_AMOUNT = Counter(
    "aftersales_refund_amount_minor_total",
    "Refunded amount in minor units.",
    ["service", "currency"],
)
REFUND_REQUESTS = Counter(
    "aftersales_refund_requests_total",
    "Refunds asked of the refund ledger, by the service that asked.",
    ["service", "case_type"],
)
REFUND_REQUESTED_AMOUNT = Counter(
    "aftersales_refund_requested_amount_minor_total",
    "Amount asked of the refund ledger in minor units, before its order-level cap.",
    ["service", "currency"],
)
SLA_BREACHES = Counter(
    "aftersales_sla_breaches_total", "SLA breaches detected.", ["service", "sla"]
)
