"""One replay of a history under one policy: the services' own handlers on a bus in memory, in
simulated time, and what they decided, paid and missed (`Outcome`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared.clock import ManualClock
from shared.contracts import (
    CompensationPending,
    CouponGranted,
    FollowupEvent,
    RefundIssued,
    ReshipmentRequested,
    ReturnDecision,
    SlaBreached,
)
from shared.logs import quiet
from shared.messaging.membus import MemoryBus, MemoryService, Published
from shared.policy import Policy

from .history import History, Progress, fewer_collections

# The services whose rules decide and pay; the notifier only delivers what they ask for.
SIMULATED = ("returns", "complaints", "refunds", "followup")


def services(policy: Policy, start: datetime) -> list[MemoryService]:
    from services.complaints.memory import in_memory as complaints
    from services.followup.memory import in_memory as followup
    from services.refunds.memory import in_memory as refunds
    from services.returns.memory import in_memory as returns

    clock = ManualClock(start)  # a definition needs one; the bus's clock is its own
    builders = {
        "returns": returns,
        "complaints": complaints,
        "refunds": refunds,
        "followup": followup,
    }
    return [builders[name](policy, clock) for name in SIMULATED]


@dataclass(frozen=True)
class Refund:
    case: str  # "return R-1", "complaint K-1", "late_shipment O-1"
    amount: int
    currency: str
    breakdown: tuple[tuple[str, int], ...]


@dataclass
class Outcome:
    """What one replay produced, by case where a case is named."""

    decisions: dict[str, str] = field(default_factory=dict)  # case -> "rejected (rule)"...
    refunds: dict[str, Refund] = field(default_factory=dict)  # refund id -> refund
    coupons: dict[str, tuple[int, str]] = field(default_factory=dict)  # complaint -> value
    breaches: Counter[str] = field(default_factory=Counter)  # by sla
    callbacks: Counter[str] = field(default_factory=Counter)  # by event type
    reshipments: set[str] = field(default_factory=set)  # cases
    dead_letters: Counter[str] = field(default_factory=Counter)  # "service: reason"
    pending_timers: int = 0

    def observe(self, published: Published) -> None:
        event = published.row.event
        data = event.data
        kind = event.type
        if isinstance(data, ReturnDecision):
            case = f"return {data.return_id}"
            if kind in ("return.approved", "return.rejected"):
                self.decisions[case] = f"{kind.removeprefix('return.')} ({data.rule})"
            elif kind == "return.pending" and case not in self.decisions:
                self.decisions[case] = f"pending ({data.waiting_for})"
        elif isinstance(data, RefundIssued):
            self.refunds[data.refund_id] = Refund(
                case=f"{data.case.type} {data.case.id}",
                amount=data.amount,
                currency=data.currency,
                breakdown=tuple((item.kind, item.amount) for item in data.breakdown),
            )
        elif isinstance(data, CouponGranted):
            self.coupons[f"complaint {data.complaint_id}"] = (data.value, data.currency)
            self.decisions[f"complaint {data.complaint_id}"] = f"coupon granted ({data.reason})"
        elif isinstance(data, CompensationPending):
            complaint = f"complaint {data.complaint_id}"
            self.decisions.setdefault(complaint, "coupon awaiting approval (budget)")
        elif isinstance(data, SlaBreached):
            self.breaches[data.sla] += 1
        elif isinstance(data, FollowupEvent):
            self.callbacks[kind] += 1
        elif isinstance(data, ReshipmentRequested):
            self.reshipments.add(f"{data.case.type} {data.case.id}")


async def replay_async(
    history: History, policy: Policy, *, progress: Callable[[int], None] = lambda n: None
) -> Outcome:
    outcome = Outcome()
    start, end = history.start, history.end
    if start is None or end is None:
        return outcome
    bus = MemoryBus(services(policy, start), start=start, on_publish=outcome.observe)
    for index, item in enumerate(history.events, start=1):
        await bus.publish(item.topic, item.event, item.time)
        if index % 1000 == 0:
            progress(1000)
    # Timers due within the history fire; later ones would meet inputs not recorded yet.
    await bus.run_timers(until=end)
    for (service, reason), n in bus.dead_letters.items():
        outcome.dead_letters[f"{service}: {reason}"] += n
    for (service, kind), n in bus.parked_timers.items():
        outcome.dead_letters[f"{service}: timer {kind} failed"] += n
    outcome.pending_timers = sum(len(s.uow.timers.pending()) for s in bus.services)
    return outcome


def replay(history: History, policy: Policy, label: str = "") -> Outcome:
    """Replay `history` under `policy` (progress on stderr for a long one)."""
    meter = Progress(f"replayed{' under ' + label if label else ''}")
    # The services log each dead letter and warning as they would in production; a replay's
    # are counted in its report instead.
    with quiet("aftersales"), fewer_collections():
        outcome = asyncio.run(
            replay_async(history, policy, progress=lambda n: meter.step(n, " events"))
        )
    meter.count = len(history.events)
    meter.done(" events")
    return outcome
