"""The returns domain: pure rules, money and the ReturnRequest aggregate (no I/O, no clock)."""

from services.returns.domain.events import (
    Decided,
    DomainEvent,
    RefundDue,
    ReshipmentDue,
    SlaBreached,
    TimerCancelled,
    TimerSet,
    event_from_dict,
    event_to_dict,
)
from services.returns.domain.messages import Message, MessageFacts, compose
from services.returns.domain.model import (
    Inspection,
    Order,
    OrderLedger,
    OrderLine,
    ReturnRequest,
)
from services.returns.domain.refunds import (
    Payment,
    RefundCalculation,
    calculate_refund,
    split_payments,
)
from services.returns.domain.rules import (
    Payer,
    ReturnKind,
    ReturnStatus,
    Rule,
    Sla,
    TimerKind,
    WaitingFor,
    add_working_hours,
    no_reason_deadline,
)

__all__ = [
    "Decided",
    "DomainEvent",
    "Inspection",
    "Message",
    "MessageFacts",
    "Order",
    "OrderLedger",
    "OrderLine",
    "Payer",
    "Payment",
    "RefundCalculation",
    "RefundDue",
    "ReshipmentDue",
    "ReturnKind",
    "ReturnRequest",
    "ReturnStatus",
    "Rule",
    "Sla",
    "SlaBreached",
    "TimerCancelled",
    "TimerKind",
    "TimerSet",
    "WaitingFor",
    "add_working_hours",
    "calculate_refund",
    "compose",
    "event_from_dict",
    "event_to_dict",
    "no_reason_deadline",
    "split_payments",
]
