"""The follow-up service on the real database, driven without Kafka: input records go straight
to its EventProcessor, due timers to its TimerScheduler, and what it emits is read back from
its outbox. Each test gets its own copy of the `followup` schema (schema_translate_map) and a
ManualClock, so every instant is chosen by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from aftersales_dev import events
from aftersales_dev.events import cloud_event, kettle_order
from services.followup import tables
from services.followup.bootstrap import build
from shared.clock import ManualClock
from shared.contracts import ids
from shared.policy import Policy
from tests.harness import ServiceHarness, fresh_schema

T0 = datetime.fromisoformat("2024-05-01T10:00:00+08:00")


SENT_AT = "2024-05-01T10:00:00+08:00"


def envelope_of(*, event_id: str | None = None) -> dict[str, Any]:
    """The envelope's fields every event here has: one sending time, the test platform."""
    return {"time": SENT_AT, "id": event_id, "platform": "/test"}


def envelope(event_type: str, data: dict[str, Any], *, event_id: str | None = None) -> dict:
    return cloud_event(event_type, data, SENT_AT, id=event_id, platform="/test")


def iso(instant: datetime) -> str:
    return instant.isoformat()


class Events:
    """Builders of the CloudEvents the follow-up service reads (SPEC sections 2 and 3)."""

    @staticmethod
    def order_paid(order_id: str, shop_id: str, customer_id: str, **kw: Any) -> dict:
        buyer = {"name": "Li Lei", "phone": "13812345678", "preferred_channel": "sms"}
        paid_at = "2024-04-20T10:00:00+08:00"
        data = kettle_order(
            order_id, customer_id, buyer, paid_at=paid_at, shop_id=shop_id, line_id="l1", sku="s1"
        )
        return envelope("order.paid", data, **kw)

    @staticmethod
    def refund_issued(
        case_id: str,
        order_id: str,
        customer_id: str,
        issued_at: datetime,
        *,
        case_type: str = "return",
        **kw: Any,
    ) -> dict:
        return events.refund_issued(
            f"rf-{case_id}",
            order_id,
            customer_id,
            (case_type, case_id),
            at=issued_at,
            breakdown=[("goods", 5000)],
            **envelope_of(**kw),
        )

    @staticmethod
    def return_completed(
        return_id: str,
        order_id: str,
        customer_id: str,
        decided_at: datetime,
        *,
        rule: str = "eligible",
        kind: str = "refund",
        **kw: Any,
    ) -> dict:
        return envelope(
            "return.completed",
            {
                "return_id": return_id,
                "order_id": order_id,
                "customer_id": customer_id,
                "kind": kind,
                "rule": rule,
                "message": "退货完成",
                "decided_at": iso(decided_at),
            },
            **kw,
        )

    @staticmethod
    def reshipment_requested(
        return_id: str, order_id: str, customer_id: str, requested_at: datetime, **kw: Any
    ) -> dict:
        return envelope(
            "reshipment.requested",
            {
                "order_id": order_id,
                "customer_id": customer_id,
                "case": {"type": "return", "id": return_id},
                "lines": [{"line_id": "l1", "quantity": 1}],
                "due_by": iso(requested_at),
                "requested_at": iso(requested_at),
            },
            **kw,
        )

    @staticmethod
    def complaint_opened(
        complaint_id: str, order_id: str, customer_id: str, opened_at: datetime, **kw: Any
    ) -> dict:
        return events.complaint_opened(
            complaint_id,
            order_id,
            customer_id,
            at=opened_at,
            category="wrong_item",
            description="发错货了",
            **envelope_of(**kw),
        )

    @staticmethod
    def complaint_resolved(
        complaint_id: str,
        order_id: str,
        resolved_at: datetime,
        *,
        outcome: str = "upheld",
        **kw: Any,
    ) -> dict:
        return events.complaint_resolved(
            complaint_id,
            order_id,
            at=resolved_at,
            outcome=outcome,
            remedy="refund",
            agent_id="agent-1",
            **envelope_of(**kw),
        )

    @staticmethod
    def survey_answered(
        callback_id: str,
        customer_id: str,
        score: Any,
        answered_at: datetime,
        *,
        comment: str = "",
        **kw: Any,
    ) -> dict:
        return events.survey_answered(
            callback_id,
            customer_id,
            at=answered_at,
            score=score,
            comment=comment,
            **envelope_of(**kw),
        )

    @staticmethod
    def survey_delivered(
        callback_id: str,
        customer_id: str,
        sent_at: datetime,
        *,
        order_id: str | None = None,
        request_id: str | None = None,
        template: str = "survey.invitation",
        **kw: Any,
    ) -> dict:
        """The notifier's `notification.sent` for a callback's survey invitation."""
        data = {
            **_survey_status(callback_id, customer_id, order_id, request_id, template),
            "channel": "sms",
            "recipient": "138****5678",
            "language": "zh-CN",
            "attempts": 1,
            "sent_at": iso(sent_at),
        }
        return envelope("notification.sent", data, **kw)

    @staticmethod
    def survey_failed(
        callback_id: str,
        customer_id: str,
        failed_at: datetime,
        *,
        reason: str = "expired",
        order_id: str | None = None,
        request_id: str | None = None,
        template: str = "survey.invitation",
        **kw: Any,
    ) -> dict:
        """The notifier's `notification.failed` for a callback's survey invitation."""
        data = {
            **_survey_status(callback_id, customer_id, order_id, request_id, template),
            "reason": reason,
            "detail": "it could not go out before its deadline",
            "attempts": 0,
            "failed_at": iso(failed_at),
        }
        return envelope("notification.failed", data, **kw)


class FollowupService(ServiceHarness):
    """One follow-up service instance over one schema; `restart()` builds a new one."""

    def __init__(self, engine: AsyncEngine, policy: Policy, clock: ManualClock) -> None:
        super().__init__(
            build,
            engine,
            clock,
            policy,
            key_of=lambda event: "k",
        )
        self.ev = Events

    async def send(self, *events: dict | bytes, topic: str | None = None) -> None:
        """Deliver events in one batch, each on the topic the platform/services use."""
        await self.feed(*events, topic=topic)

    async def at(self, instant: datetime) -> int:
        """Move the clock and fire every timer due by then."""
        self.clock.set(instant)
        return await self.scheduler.run_all_due()

    async def emitted(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Events in the outbox, oldest first, each with `_topic` and `_key`."""
        return [
            {**row["event"], "_topic": row["topic"], "_key": row["key"]}
            for row in await self.outbox_rows()
            if event_type is None or row["event"]["type"] == event_type
        ]

    async def dead_letters(self) -> list[dict[str, Any]]:
        return [e["data"] for e in await self.emitted("event.deadlettered")]

    async def rows(self, table: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(select(table))).mappings().all()]


@pytest.fixture
async def schema_engine(database_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The `followup` tables in a fresh schema of their own, for this test only."""
    async with fresh_schema(database_engine, tables.metadata.schema, tables.metadata) as engine:
        yield engine


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def service(schema_engine: AsyncEngine, clock: ManualClock) -> FollowupService:
    return FollowupService(schema_engine, Policy(), clock)


def _survey_status(
    callback_id: str,
    customer_id: str,
    order_id: str | None,
    request_id: str | None,
    template: str,
) -> dict[str, Any]:
    """What every notifier status of a survey invitation says of it."""
    return {
        "request_id": request_id or ids.survey_request_id(callback_id),
        "customer_id": customer_id,
        "order_id": order_id,
        "template": template,
        "urgent": False,
    }
