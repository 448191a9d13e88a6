"""One translation of domain events into outbox rows, timer rows, SLA breaches and counts.

A service declares, per domain event class, a pure function turning the event (and what the
handler worked on, its `scope`) into effects; `Translations.apply` carries them out in the
handler's transaction. A domain event that no function is declared for is a wiring error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from shared import metrics
from shared.contracts import (
    REFUND_REQUESTED,
    RESHIPMENT_REQUESTED,
    SLA_BREACHED,
    CaseRef,
    RefundRequested,
    ReshipmentRequested,
    ReturnLine,
    SlaBreached,
    ids,
)
from shared.projection import projected

from .context import HandlerContext


class Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


Counts = tuple[tuple[Counter, float], ...]


@dataclass(frozen=True)
class Emit:
    """An output event; `counts` are incremented once, when the outbox did not hold it yet."""

    event_type: str
    data: BaseModel
    event_id: str | None = None
    discriminator: str = ""
    correlation_id: str | None = None
    key: str | None = None  # only where a type is keyed otherwise than it is declared
    counts: Counts = ()


@dataclass(frozen=True)
class Breach:
    """An `sla.breached` (SPEC 5), counted per service and SLA the first time it is queued."""

    case: CaseRef
    sla: str
    due_at: datetime
    detected_at: datetime
    order_id: str | None
    customer_id: str | None
    event_id: str
    correlation_id: str
    counts: Counts = ()  # besides the breach count


@dataclass(frozen=True)
class SetTimer:
    kind: str
    ref: str
    due_at: datetime
    lock_key: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelTimer:
    kind: str
    ref: str


@dataclass(frozen=True)
class Count:
    """A metric incremented when the handler's work commits, with no output of its own."""

    counter: Counter
    amount: float = 1


Effect = Emit | Breach | SetTimer | CancelTimer | Count
S = TypeVar("S")
Translate = Callable[[Any, S, int], Iterable[Effect]]
"""(domain event, scope, the event's index among the handler's events) -> effects."""


class Translations(Generic[S]):
    """The domain event classes of one service and what each becomes."""

    def __init__(self, translations: Mapping[type, Translate[S]]) -> None:
        self._translations = dict(translations)

    def effects(self, scope: S, events: Sequence[object]) -> list[Effect]:
        """Pure: what `events` become, in order (used by the fast tests too)."""
        effects: list[Effect] = []
        for index, event in enumerate(events):
            translate = self._translations.get(type(event))
            if translate is None:  # a new domain event must be declared here
                raise TypeError(f"unhandled domain event {type(event).__name__}")
            effects.extend(translate(event, scope, index))
        return effects

    async def apply(self, ctx: HandlerContext, scope: S, events: Sequence[object]) -> None:
        for effect in self.effects(scope, events):
            await carry_out(ctx, effect)


async def carry_out(ctx: HandlerContext, effect: Effect) -> None:
    if isinstance(effect, Emit):
        event = await ctx.emit(
            effect.event_type,
            effect.data,
            key=effect.key,
            discriminator=effect.discriminator,
            event_id=effect.event_id,
            correlation_id=effect.correlation_id,
        )
        if effect.counts and ctx.is_new(event):  # a replay finds it in the outbox: counted once
            for counter, amount in effect.counts:
                ctx.count(counter, amount)
    elif isinstance(effect, Breach):
        data = projected(SlaBreached, effect)
        counts: Counts = (
            (metrics.labelled(metrics.SLA_BREACHES, ctx.service, effect.sla), 1),
            *effect.counts,
        )
        await carry_out(
            ctx,
            Emit(
                SLA_BREACHED,
                data,
                event_id=effect.event_id,
                correlation_id=effect.correlation_id,
                counts=counts,
            ),
        )
    elif isinstance(effect, SetTimer):
        await ctx.timers.set(
            effect.kind,
            effect.ref,
            due_at=effect.due_at,
            lock_key=effect.lock_key,
            payload=dict(effect.payload),
        )
    elif isinstance(effect, CancelTimer):
        await ctx.timers.cancel(effect.kind, effect.ref, at=ctx.now)
    else:
        ctx.count(effect.counter, effect.amount)


# --- outputs that two services send alike -------------------------------------------------


def reshipment(
    case: CaseRef,
    *,
    order_id: str,
    customer_id: str,
    lines: Mapping[str, int],
    due_by: datetime,
    requested_at: datetime,
) -> Emit:
    """`reshipment.requested` for a case (a return or a complaint): once per case."""
    data = ReshipmentRequested(
        order_id=order_id,
        customer_id=customer_id,
        case=case,
        lines=[ReturnLine(line_id=k, quantity=q) for k, q in lines.items()],
        due_by=due_by,
        requested_at=requested_at,
    )
    return Emit(
        RESHIPMENT_REQUESTED,
        data,
        event_id=ids.reshipment_event_id(case.type, case.id),
        correlation_id=case.id,
    )


def refund_request(
    service: str,
    case: CaseRef,
    *,
    refund_id: str,
    order_id: str,
    customer_id: str,
    amount: int,
    currency: str,
    breakdown: Sequence[tuple[str, int]],
    due_by: datetime,
    requested_at: datetime,
    return_shipping_payer: str | None = None,
) -> Emit:
    """Ask the refund ledger, which caps, splits and issues it (SPEC 4.11); counted once."""
    fields: dict[str, Any] = {}
    if return_shipping_payer is not None:
        fields["return_shipping_payer"] = return_shipping_payer
    data = RefundRequested.model_validate(
        dict(
            refund_id=refund_id,
            order_id=order_id,
            customer_id=customer_id,
            case=case,
            amount=amount,
            currency=currency,
            breakdown=[{"kind": k, "amount": a} for k, a in breakdown],
            due_by=due_by,
            requested_at=requested_at,
            requested_by=service,
            **fields,
        )
    )
    counts: Counts = (
        (metrics.labelled(metrics.REFUND_REQUESTS, service, case.type), 1),
        (metrics.labelled(metrics.REFUND_REQUESTED_AMOUNT, service, currency), amount),
    )
    return Emit(
        REFUND_REQUESTED,
        data,
        event_id=ids.event_id(REFUND_REQUESTED, refund_id),
        correlation_id=case.id,
        counts=counts,
    )
