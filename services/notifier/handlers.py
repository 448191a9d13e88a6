"""The notifier service layer: thin handlers around the domain rules.

Consuming (in the consumer's batch transaction, never waiting on a gateway):
- `order.paid` stores the buyer's contact data, encrypted.
- `notification.requested` (other services), `return.*` decisions and `refund.issued` become a
  delivery row plus a timer due now, after the template was checked. Coupons are the complaints
  service's to tell (`complaint.compensated`, `complaint.compensation_approved`).

Delivering (the timer handler `deliver`) is `delivering.py`: the `Delivery` aggregate decides,
the message is sent outside the database transaction and its outcome recorded after.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from services.notifier import metrics
from services.notifier.channels import Channel
from services.notifier.contacts import Contact, ContactBook
from services.notifier.delivering import DELIVER, SERVICE, Deliverer, buyer_lock
from services.notifier.domain.delivery import timer_ref
from services.notifier.domain.refunds import told_by_its_case
from services.notifier.erasure import erased_since
from services.notifier.rendering import Renderer, TemplateProblem
from services.notifier.repository import DeliveryRepository
from shared.contracts import (
    NOTIFICATION_REQUESTED,
    ORDER_PAID,
    REFUND_ISSUED,
    RETURN_APPROVED,
    RETURN_COMPLETED,
    RETURN_PENDING,
    RETURN_REJECTED,
    CaseRef,
    CloudEvent,
    NotificationRequested,
    OrderPaid,
    RefundIssued,
    ReturnDecision,
    deterministic_id,
)
from shared.contracts.primitives import parse_timestamp
from shared.crypto import FieldCipher
from shared.messaging.context import EventHandler, HandlerContext, TimerHandler
from shared.messaging.errors import Rejected
from shared.policy import Policy
from shared.projection import projected

__all__ = ["DELIVER", "SERVICE", "NotifierHandlers", "derived_request_id"]

RETURN_DECISIONS = (RETURN_APPROVED, RETURN_REJECTED, RETURN_PENDING, RETURN_COMPLETED)

log = logging.getLogger("aftersales.notifier")


def derived_request_id(kind: str, key: str) -> str:
    """The request id of a notification the notifier raises itself (one per cause)."""
    return deterministic_id(SERVICE, kind, key)


class NotifierHandlers:
    def __init__(
        self,
        policy: Policy,
        cipher: FieldCipher,
        channels: Mapping[str, Channel],
        *,
        renderer: Renderer | None = None,
    ) -> None:
        self.policy = policy
        self.cipher = cipher
        self.channels = dict(channels)
        self.renderer = renderer or Renderer(policy.zone)
        self.deliverer = Deliverer(policy, cipher, self.channels, self.renderer)

    def events(self) -> Mapping[str, EventHandler]:
        handlers: dict[str, EventHandler] = {
            ORDER_PAID: self.order_paid,
            NOTIFICATION_REQUESTED: self.notification_requested,
            REFUND_ISSUED: self.refund_issued,
        }
        handlers.update({decision: self.return_decision for decision in RETURN_DECISIONS})
        return handlers

    def timers(self) -> Mapping[str, TimerHandler]:
        return {DELIVER: self.deliverer.deliver}

    async def close(self) -> None:
        """Close the gateways' connection pools (the service stops)."""
        for channel in self.channels.values():
            await channel.close()

    # --- the contact directory --------------------------------------------------------------

    async def order_paid(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(OrderPaid)
        if await erased_since(ctx.session, data.customer_id, data.paid_at):
            log.info(
                "contact of an order paid before the buyer's erasure ignored",
                extra={"service": SERVICE, "customer_id": data.customer_id},
            )
            return
        contact = projected(Contact, data.customer, customer_id=data.customer_id)
        stored = await ContactBook(ctx.session, self.cipher).save(
            contact, order_id=data.order_id, paid_at=data.paid_at, now=ctx.now
        )
        log.info(
            "contact stored" if stored else "contact of an older order ignored",
            extra={
                "service": SERVICE,
                "customer_id": data.customer_id,
                "order_id": data.order_id,
                "key_id": self.cipher.primary_kid,
            },
        )

    # --- accepting notifications ------------------------------------------------------------

    async def notification_requested(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(NotificationRequested)
        await self._accept(
            ctx,
            event,
            request_id=data.request_id,
            customer_id=data.customer_id,
            order_id=data.order_id,
            template=data.template,
            params=dict(data.params),
            urgent=data.urgent,
            case=data.case,
        )

    async def return_decision(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(ReturnDecision)
        params: dict[str, str | int] = {
            "return_id": data.return_id,
            "order_id": data.order_id,
            "kind": data.kind,
            "rule": data.rule,
            "message": data.message,
            "message_en": data.message_en or data.message,
        }
        if data.waiting_for is not None:
            params["waiting_for"] = data.waiting_for
        if data.return_shipping_payer is not None:
            params["return_shipping_payer"] = data.return_shipping_payer
        if data.refund_estimate is not None:
            params["refund_estimate"] = data.refund_estimate
        await self._accept(
            ctx,
            event,
            # The returns service's event ids are deterministic per decision.
            request_id=derived_request_id(event.type, event.id),
            customer_id=data.customer_id,
            order_id=data.order_id,
            template=event.type,
            params=params,
            urgent=False,
            case=CaseRef(type="return", id=data.return_id),
        )

    async def refund_issued(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data_as(RefundIssued)
        cut = any(item.kind == "already_refunded" for item in data.breakdown)
        # A refund of 0 is told only when the order-level cap cut it (the case expected more);
        # one that owed nothing was told so by its case (e.g. return.completed).
        told = told_by_its_case(data.case.type, data.case.id, data.refund_id)
        if told or (data.amount == 0 and not cut):
            ctx.count(metrics.NOTIFICATIONS.labels(SERVICE, REFUND_ISSUED, "skipped"))
            return
        params: dict[str, str | int] = {
            "refund_id": data.refund_id,
            "order_id": data.order_id,
            "case_type": data.case.type,
            "case_id": data.case.id,
            "amount": data.amount,
            "currency": data.currency,
            "issued_at": data.issued_at.isoformat(),
        }
        if cut:
            params["already_refunded"] = 1
        await self._accept(
            ctx,
            event,
            request_id=derived_request_id(REFUND_ISSUED, data.refund_id),
            customer_id=data.customer_id,
            order_id=data.order_id,
            template=REFUND_ISSUED,
            params=params,
            urgent=False,
            case=data.case,
        )

    async def _accept(
        self,
        ctx: HandlerContext,
        event: CloudEvent,
        *,
        request_id: str,
        customer_id: str,
        order_id: str | None,
        template: str,
        params: dict[str, str | int],
        urgent: bool,
        case: CaseRef | None,
    ) -> None:
        """Check the template against the parameters, record the delivery, arm its timer
        (due now).

        A template that does not exist or does not render is the requester's contract error:
        the event is dead-lettered (`unknown_template` / `template_error`) and can be replayed
        once the template or the request is fixed. A known request id changes nothing.
        """
        deadline = _deadline(template, params)
        try:
            self.renderer.check(template, params)
        except TemplateProblem as exc:
            # Counted when the transaction commits (its dead letter), not now: a batch applied
            # together first is rolled back by this refusal and applied again event by event,
            # which refuses the request once more.
            invalid = metrics.NOTIFICATIONS.labels(SERVICE, "(invalid)", exc.reason)
            ctx.uow.after_commit(invalid.inc)
            raise Rejected(exc.reason, exc.detail) from None
        repo = DeliveryRepository(ctx.session)
        created = await repo.add(
            delivery_id=request_id,
            source_event_id=event.id,
            source_type=event.type,
            customer_id=customer_id,
            order_id=order_id,
            case_type=case.type if case else None,
            case_id=case.id if case else None,
            template=template,
            params=params,
            urgent=urgent,
            deadline=deadline,
            now=ctx.now,
        )
        extra = {
            "service": SERVICE,
            "request_id": request_id,
            "customer_id": customer_id,
            "template": template,
            "urgent": urgent,
        }
        if not created:
            ctx.count(metrics.NOTIFICATIONS.labels(SERVICE, template, "duplicate"))
            log.info("notification request already known: ignored", extra=extra)
            return
        await ctx.timers.set(
            DELIVER,
            timer_ref(request_id, 0),
            due_at=ctx.now,
            lock_key=buyer_lock(customer_id),
            payload={"delivery_id": request_id, "attempt": 1, "reason": "new"},
        )
        ctx.count(metrics.NOTIFICATIONS.labels(SERVICE, template, "accepted"))
        log.info("notification accepted", extra=extra)


def _deadline(template: str, params: Mapping[str, str | int]) -> datetime | None:
    """The optional `deadline` parameter: the message is not sent after it."""
    value = params.get("deadline")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except ValueError:
            pass
    raise Rejected(
        "template_error",
        f"template {template!r}: parameter 'deadline' must be an RFC 3339 timestamp with an offset",
    )
