"""The notifier service layer: thin handlers around the domain rules.

Consuming (in the consumer's batch transaction, never waiting on a gateway):
- `order.paid` stores the buyer's contact data, encrypted.
- `notification.requested` (other services), `return.*` decisions and `refund.issued` become a
  delivery row plus a timer due now, after the template was checked. Coupons are the complaints
  service's to tell (`complaint.compensated`, `complaint.compensation_approved`).

Delivering (the timer handler `deliver`, in the timer scheduler's transaction): quiet hours,
daily cap and expiry decide whether it goes now; then the contact is decrypted, the channel
picked, the template rendered and the message sent with a short timeout. Success emits
`notification.sent`; a failure re-arms the timer with backoff (a new timer row per attempt), or
gives up with a dead-letter record and `notification.failed`.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from services.notifier import metrics
from services.notifier.channels import Channel, Outgoing, Result, transient
from services.notifier.contacts import Contact, ContactBook
from services.notifier.domain import (
    CHANNELS,
    LOG,
    Defer,
    Drop,
    FailReason,
    GiveUp,
    after_failure,
    channel_plan,
    intended_channel,
    language_order,
    local_day,
    reachable,
    when_due,
)
from services.notifier.domain.refunds import told_by_its_case
from services.notifier.erasure import erased_since
from services.notifier.rendering import Renderer, TemplateProblem
from services.notifier.repository import (
    FAILED,
    SCHEDULED,
    SENT,
    Delivery,
    DeliveryRepository,
    timer_ref,
)
from shared.contracts import (
    NOTIFICATION_FAILED,
    NOTIFICATION_REQUESTED,
    NOTIFICATION_SENT,
    ORDER_PAID,
    REFUND_ISSUED,
    RETURN_APPROVED,
    RETURN_COMPLETED,
    RETURN_PENDING,
    RETURN_REJECTED,
    CaseRef,
    CloudEvent,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    OrderPaid,
    RefundIssued,
    ReturnDecision,
    deterministic_id,
    ids,
)
from shared.contracts.primitives import parse_timestamp
from shared.crypto import CryptoError, FieldCipher
from shared.messaging.context import EventHandler, HandlerContext, TimerHandler
from shared.messaging.errors import Rejected
from shared.messaging.store import Timer
from shared.policy import Policy

SERVICE = "notifier"
DELIVER = "deliver"
RETURN_DECISIONS = (RETURN_APPROVED, RETURN_REJECTED, RETURN_PENDING, RETURN_COMPLETED)

log = logging.getLogger("aftersales.notifier")


class SendBudget:
    """Bounds the time one scheduler transaction spends on gateways.

    The timer scheduler fires up to 100 timers in one transaction; sending them all there
    could hold it open for minutes with slow gateways. Once a transaction has sent for
    `max_seconds` (or `max_sends` messages), the remaining deliveries get a new timer due at
    once and go out in the scheduler's next transaction, a moment later.
    """

    def __init__(self, max_seconds: float = 8.0, max_sends: int = 25) -> None:
        self.max_seconds = max_seconds
        self.max_sends = max_sends
        self._spent: weakref.WeakKeyDictionary[object, tuple[float, int]] = (
            weakref.WeakKeyDictionary()
        )

    def allow(self, transaction: object) -> bool:
        started, sends = self._spent.get(transaction, (time.monotonic(), 0))
        if sends and (sends >= self.max_sends or time.monotonic() - started > self.max_seconds):
            return False
        self._spent[transaction] = (started, sends + 1)
        return True


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
        budget: SendBudget | None = None,
    ) -> None:
        self.policy = policy
        self.cipher = cipher
        self.channels = dict(channels)
        self.renderer = renderer or Renderer(policy.zone)
        self.budget = budget or SendBudget()
        self.log_fallback = LOG in self.channels
        self.configured = frozenset(c for c in self.channels if c in CHANNELS)

    def events(self) -> Mapping[str, EventHandler]:
        handlers: dict[str, EventHandler] = {
            ORDER_PAID: self.order_paid,
            NOTIFICATION_REQUESTED: self.notification_requested,
            REFUND_ISSUED: self.refund_issued,
        }
        handlers.update({decision: self.return_decision for decision in RETURN_DECISIONS})
        return handlers

    def timers(self) -> Mapping[str, TimerHandler]:
        return {DELIVER: self.deliver}

    # --- the contact directory --------------------------------------------------------------

    async def order_paid(self, event: CloudEvent, ctx: HandlerContext) -> None:
        data = event.data
        assert isinstance(data, OrderPaid)
        if await erased_since(ctx.session, data.customer_id, data.paid_at):
            log.info(
                "contact of an order paid before the buyer's erasure ignored",
                extra={"service": SERVICE, "customer_id": data.customer_id},
            )
            return
        customer = data.customer
        contact = Contact(
            customer_id=data.customer_id,
            preferred_channel=customer.preferred_channel,
            name=customer.name,
            phone=customer.phone,
            email=customer.email,
            language=customer.language,
        )
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
        data = event.data
        assert isinstance(data, NotificationRequested)
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
        data = event.data
        assert isinstance(data, ReturnDecision)
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
        data = event.data
        assert isinstance(data, RefundIssued)
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
            metrics.NOTIFICATIONS.labels(SERVICE, "(invalid)", exc.reason).inc()
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
        await self._arm(ctx, request_id, customer_id, seq=0, due=ctx.now, reason="new")
        ctx.count(metrics.NOTIFICATIONS.labels(SERVICE, template, "accepted"))
        log.info("notification accepted", extra=extra)

    async def _arm(
        self,
        ctx: HandlerContext,
        delivery_id: str,
        customer_id: str,
        *,
        seq: int,
        due: datetime,
        reason: str,
        attempt: int = 1,
    ) -> None:
        # The lock key is the buyer's (the daily cap counts per buyer), in a namespace of its
        # own: the consumer never waits for a delivery that talks to a slow gateway.
        await ctx.timers.set(
            DELIVER,
            timer_ref(delivery_id, seq),
            due_at=due,
            lock_key=f"notifier:buyer:{customer_id}",
            payload={"delivery_id": delivery_id, "attempt": attempt, "reason": reason},
        )

    # --- delivering -------------------------------------------------------------------------

    async def deliver(self, timer: Timer, ctx: HandlerContext) -> None:
        repo = DeliveryRepository(ctx.session)
        delivery = await repo.get(str(timer.payload.get("delivery_id", "")))
        if delivery is None or delivery.status != SCHEDULED or delivery.timer_ref != timer.ref:
            return  # superseded by a later timer of the same delivery
        now = ctx.now
        zone = self.policy.zone
        used = 0
        if not delivery.urgent and delivery.slot_day is None:
            used = await repo.used_today(
                delivery.customer_id, local_day(now, zone), other_than=delivery.delivery_id
            )
        decision = when_due(
            now=now,
            urgent=delivery.urgent,
            deadline=delivery.deadline,
            slot_day=delivery.slot_day,
            used_today=used,
            policy=self.policy.notifier,
            zone=zone,
        )
        if isinstance(decision, Drop):
            await self._give_up(ctx, repo, delivery, decision.reason, decision.detail)
            return
        if isinstance(decision, Defer):
            await self._defer(ctx, repo, delivery, decision)
            return
        if not self.budget.allow(ctx.uow):
            await self._reschedule(ctx, repo, delivery, at=now, reason="next_batch")
            return
        slot_day = decision.slot_day
        try:
            contact = await ContactBook(ctx.session, self.cipher).get(delivery.customer_id, now=now)
        except CryptoError as exc:  # its message never holds plaintext
            await self._give_up(ctx, repo, delivery, FailReason.CONTACT_UNREADABLE, str(exc))
            return
        attempts = delivery.attempts + 1
        if contact is None:
            await self._attempt_failed(
                ctx,
                repo,
                delivery,
                transient("no contact data for the buyer (no order.paid seen yet)"),
                attempts=attempts,
                slot_day=slot_day,
                channel=None,
                recipient=None,
                channels_left=False,
                no_contact=True,
            )
            return
        has = {"has_phone": bool(contact.phone), "has_email": bool(contact.email)}
        plan = channel_plan(
            preferred=contact.preferred_channel,
            configured=self.configured,
            refused=delivery.refused_channels,
            log_fallback=self.log_fallback,
            **has,
        )
        if not plan:
            reach = [c for c in CHANNELS if reachable(c, **has)]
            await self._give_up(
                ctx,
                repo,
                delivery,
                FailReason.NO_CHANNEL,
                f"no configured gateway reaches the buyer (buyer's channels: {', '.join(reach)};"
                f" configured: {', '.join(sorted(self.configured)) or 'none'};"
                f" refused: {', '.join(delivery.refused_channels) or 'none'})",
                attempts=delivery.attempts,
            )
            return
        try:
            rendered = self.renderer.render(
                delivery.template, delivery.params, language_order(contact.language)
            )
        except TemplateProblem as exc:
            await self._give_up(ctx, repo, delivery, FailReason.TEMPLATE_ERROR, exc.detail)
            return
        channel = plan[0]
        intended = intended_channel(contact.preferred_channel, **has)
        recipient = contact.masked(intended if channel == LOG else channel)
        message = Outgoing(
            delivery_id=delivery.delivery_id,
            channel=channel,
            customer_id=delivery.customer_id,
            order_id=delivery.order_id,
            template=delivery.template,
            language=rendered.language,
            subject=rendered.subject,
            body=rendered.body,
            urgent=delivery.urgent,
            at=now,
            address=contact.address(channel),
            display_name=contact.name if channel == "email" else None,
            recipient=recipient,
            stands_in_for=intended if channel == LOG else None,
        )
        result = await self.channels[channel].send(message)
        kind = "ok" if result.ok else ("transient" if result.transient else "permanent")
        metrics.ATTEMPTS.labels(SERVICE, channel, kind).inc()
        if result.ok:
            await self._sent(ctx, repo, delivery, message, attempts=attempts, slot_day=slot_day)
            return
        await self._attempt_failed(
            ctx,
            repo,
            delivery,
            result,
            attempts=attempts,
            slot_day=slot_day,
            channel=channel,
            recipient=recipient,
            channels_left=len(plan) > 1,
        )

    async def _defer(
        self, ctx: HandlerContext, repo: DeliveryRepository, delivery: Delivery, decision: Defer
    ) -> None:
        await self._reschedule(ctx, repo, delivery, at=decision.until, reason=decision.reason)
        metrics.NOTIFICATIONS.labels(SERVICE, delivery.template, "deferred").inc()
        until = decision.until.astimezone(self.policy.zone)
        text = f"notification deferred until {until:%Y-%m-%d %H:%M} {self.policy.timezone}"
        text += f" ({decision.reason.replace('_', ' ')})"
        if self.log_fallback:  # development: show what will go out, at any hour
            text += await self._preview(ctx, delivery)
        log.info(
            text,
            extra={
                "service": SERVICE,
                "request_id": delivery.delivery_id,
                "customer_id": delivery.customer_id,
                "template": delivery.template,
                "reason": str(decision.reason),
                "due_at": decision.until.isoformat(),
            },
        )

    async def _preview(self, ctx: HandlerContext, delivery: Delivery) -> str:
        try:
            contact = await ContactBook(ctx.session, self.cipher).get(
                delivery.customer_id, now=ctx.now
            )
            rendered = self.renderer.render(
                delivery.template,
                delivery.params,
                language_order(contact.language if contact else None),
            )
        except (CryptoError, TemplateProblem):
            return ""
        body = " ".join(line.strip() for line in rendered.body.splitlines() if line.strip())
        return f": [{delivery.template}, {rendered.language}] {rendered.subject} | {body}"

    async def _reschedule(
        self,
        ctx: HandlerContext,
        repo: DeliveryRepository,
        delivery: Delivery,
        *,
        at: datetime,
        reason: str,
        attempt: int | None = None,
        **values: Any,
    ) -> None:
        seq = delivery.timer_seq + 1
        await repo.update(
            delivery.delivery_id,
            ctx.now,
            timer_seq=seq,
            next_attempt_at=at,
            defer_reason=reason,
            **values,
        )
        await self._arm(
            ctx,
            delivery.delivery_id,
            delivery.customer_id,
            seq=seq,
            due=at,
            reason=reason,
            attempt=attempt if attempt is not None else delivery.attempts + 1,
        )

    async def _attempt_failed(
        self,
        ctx: HandlerContext,
        repo: DeliveryRepository,
        delivery: Delivery,
        result: Result,
        *,
        attempts: int,
        slot_day: Any,
        channel: str | None,
        recipient: str | None,
        channels_left: bool,
        no_contact: bool = False,
    ) -> None:
        permanent = not result.transient
        refused = list(delivery.refused_channels)
        if permanent and channel is not None and channel not in refused:
            refused.append(channel)
        step = after_failure(
            now=ctx.now,
            attempts=attempts,
            max_attempts=self.policy.notifier.retry_max_attempts,
            permanent=permanent,
            channels_left=channels_left,
            deadline=delivery.deadline,
            no_contact=no_contact,
        )
        if isinstance(step, GiveUp):
            await self._give_up(
                ctx,
                repo,
                delivery,
                step.reason,
                result.detail,
                attempts=attempts,
                channel=channel,
                recipient=recipient,
            )
            return
        await self._reschedule(
            ctx,
            repo,
            delivery,
            at=step.at,
            reason="retry" if not permanent else "next_channel",
            attempt=attempts + 1,
            attempts=attempts,
            refused_channels=refused,
            slot_day=slot_day,
            last_error=result.detail,
        )
        metrics.NOTIFICATIONS.labels(SERVICE, delivery.template, "retried").inc()
        log.warning(
            "notification attempt failed; trying again",
            extra={
                "service": SERVICE,
                "request_id": delivery.delivery_id,
                "customer_id": delivery.customer_id,
                "template": delivery.template,
                "channel": channel,
                "attempts": attempts,
                "error": result.detail,
                "retry_at": step.at.isoformat(),
            },
        )

    async def _sent(
        self,
        ctx: HandlerContext,
        repo: DeliveryRepository,
        delivery: Delivery,
        message: Outgoing,
        *,
        attempts: int,
        slot_day: Any,
    ) -> None:
        await repo.update(
            delivery.delivery_id,
            ctx.now,
            status=SENT,
            attempts=attempts,
            channel=message.channel,
            recipient=message.recipient,
            language=message.language,
            slot_day=slot_day,
            sent_at=ctx.now,
            next_attempt_at=None,
            defer_reason=None,
            last_error=None,
        )
        new = await self._emit(
            ctx,
            delivery,
            NOTIFICATION_SENT,
            NotificationSent(
                request_id=delivery.delivery_id,
                customer_id=delivery.customer_id,
                order_id=delivery.order_id,
                template=delivery.template,
                case=_case(delivery),
                urgent=delivery.urgent,
                channel=message.channel,  # type: ignore[arg-type]
                recipient=message.recipient,
                language=message.language,
                attempts=attempts,
                sent_at=ctx.now,
            ),
        )
        if new:  # counted once per notification, as its event
            metrics.NOTIFICATIONS.labels(SERVICE, delivery.template, "sent").inc()
        log.info(
            "notification sent",
            extra={
                "service": SERVICE,
                "request_id": delivery.delivery_id,
                "customer_id": delivery.customer_id,
                "template": delivery.template,
                "channel": message.channel,
                "recipient": message.recipient,
                "attempts": attempts,
            },
        )

    async def _give_up(
        self,
        ctx: HandlerContext,
        repo: DeliveryRepository,
        delivery: Delivery,
        reason: FailReason,
        detail: str,
        *,
        attempts: int | None = None,
        channel: str | None = None,
        recipient: str | None = None,
    ) -> None:
        attempts = delivery.attempts if attempts is None else attempts
        detail = detail[:2000]
        await repo.update(
            delivery.delivery_id,
            ctx.now,
            status=FAILED,
            attempts=attempts,
            channel=channel,
            recipient=recipient,
            slot_day=None,  # it never reached the buyer: it does not use up the day's quota
            failed_at=ctx.now,
            next_attempt_at=None,
            last_error=f"{reason}: {detail}",
        )
        await repo.dead_letter(
            delivery,
            reason=str(reason),
            detail=detail,
            attempts=attempts,
            channel=channel,
            now=ctx.now,
        )
        new = await self._emit(
            ctx,
            delivery,
            NOTIFICATION_FAILED,
            NotificationFailed(
                request_id=delivery.delivery_id,
                customer_id=delivery.customer_id,
                order_id=delivery.order_id,
                template=delivery.template,
                case=_case(delivery),
                urgent=delivery.urgent,
                reason=str(reason),  # type: ignore[arg-type]
                detail=detail,
                channel=channel,  # type: ignore[arg-type]
                recipient=recipient,
                attempts=attempts,
                failed_at=ctx.now,
            ),
        )
        if new:
            metrics.NOTIFICATIONS.labels(SERVICE, delivery.template, "failed").inc()
        log.warning(
            "notification failed: dead-letter record written",
            extra={
                "service": SERVICE,
                "request_id": delivery.delivery_id,
                "customer_id": delivery.customer_id,
                "template": delivery.template,
                "reason": str(reason),
                "detail": detail,
                "attempts": attempts,
            },
        )

    async def _emit(
        self, ctx: HandlerContext, delivery: Delivery, event_type: str, data: BaseModel
    ) -> bool:
        """Queue a status event; False when the outbox already held it (a replay)."""
        # Caused by the event that asked for the notification (not the timer that sent it),
        # correlated with its case; keyed like every order or buyer event (SPEC 1).
        event = await ctx.emit(
            event_type,
            data,
            event_id=ids.notifier_status_event_id(event_type, delivery.delivery_id),
            correlation_id=delivery.case_id or delivery.order_id,
            causation_id=delivery.source_event_id,
        )
        return ctx.is_new(event)


def _case(delivery: Delivery) -> CaseRef | None:
    if delivery.case_type is None or delivery.case_id is None:
        return None
    return CaseRef.model_validate({"type": delivery.case_type, "id": delivery.case_id})


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
