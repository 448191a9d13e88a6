"""Delivering a notification: the timer handler `deliver` around the `Delivery` aggregate.

1. The timer fires in the timer scheduler's transaction: the aggregate decides (quiet hours,
   daily cap, expiry); to send, the contact is decrypted, the channel picked and the message
   rendered, and the attempt is claimed (`Delivery.start_attempt`): the attempt counts, its
   slot of the daily cap is taken and its recovery timer armed (`SEND_LEASE` later). Commit.
2. The scheduler sends, outside any transaction, every claimed message of its batch at once
   (`HandlerContext.run_outside`), each bounded by `SEND_DEADLINE`.
3. It records the outcomes in one more short transaction: `notification.sent`, or a retry
   with backoff, the next channel, or a give-up with a dead-letter record and
   `notification.failed`.

A crash between 2 and 3 loses only the outcome: the recovery timer fires, finds the attempt
unrecorded and sends it again under the same request id (`Idempotency-Key`, `Message-ID`), so
the gateway recognises it; an outcome arriving after its recovery timer took over changes
nothing (`Delivery.holds`). Each notification ends with one status event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from services.notifier import metrics
from services.notifier.channels import Channel, Outgoing, Result, transient
from services.notifier.contacts import Contact, ContactBook
from services.notifier.domain.delivery import FAILED, SCHEDULED, SENT, Attempt, Delivery
from services.notifier.domain.routing import (
    CHANNELS,
    LOG,
    channel_plan,
    intended_channel,
    language_order,
    reachable,
)
from services.notifier.domain.schedule import Defer, Drop, FailReason, local_day
from services.notifier.rendering import Renderer, TemplateProblem
from services.notifier.repository import DeliveryRepository
from shared.contracts import (
    NOTIFICATION_FAILED,
    NOTIFICATION_SENT,
    CaseRef,
    NotificationFailed,
    NotificationSent,
    ids,
)
from shared.crypto import CryptoError, FieldCipher
from shared.messaging.context import HandlerContext
from shared.messaging.store import Timer
from shared.policy import Policy
from shared.projection import projected

SERVICE = "notifier"
DELIVER = "deliver"
# The longest one send may take, whatever the gateway does (a slow drip of bytes included).
SEND_DEADLINE = 10.0
# When an attempt whose outcome was never recorded is taken up again: well past the send's
# deadline and the recording transaction, so a live send is not overtaken.
SEND_LEASE = timedelta(seconds=30)
# When a message handed back by a busy gateway (no free slot) is tried again.
BUSY_RETRY = timedelta(seconds=5)
# Why a notification of a buyer who asked to be forgotten ends (`no_contact`), at once.
ERASED = "no contact data: the buyer's contact data was erased"

log = logging.getLogger("aftersales.notifier")


def buyer_lock(customer_id: str) -> str:
    # The buyer's key (the daily cap counts per buyer), in a namespace of its own: of the
    # consumer's events only the erasure takes it (its writes must not interleave with a
    # delivery's), so the consumer otherwise never waits for a delivery.
    return f"notifier:buyer:{customer_id}"


async def arm(ctx: HandlerContext, delivery: Delivery, reason: str) -> None:
    """The timer of the delivery's current step."""
    assert delivery.next_attempt_at is not None
    await ctx.timers.set(
        DELIVER,
        delivery.timer_ref,
        due_at=delivery.next_attempt_at,
        lock_key=buyer_lock(delivery.customer_id),
        payload={
            "delivery_id": delivery.delivery_id,
            "attempt": delivery.attempts + 1,
            "reason": reason,
        },
    )


@dataclass(frozen=True)
class Claimed:
    """An attempt claimed in the timer's transaction, with what the send needs."""

    attempt: Attempt
    message: Outgoing
    channels_left: bool
    # The buyer's erasure as of the claim (None: none): a later one voids the recipient.
    erased_at: datetime | None


class Deliverer:
    def __init__(
        self,
        policy: Policy,
        cipher: FieldCipher,
        channels: dict[str, Channel],
        renderer: Renderer,
    ) -> None:
        self.policy = policy
        self.cipher = cipher
        self.channels = channels  # shared with the handlers (tests swap gateways in it)
        self.renderer = renderer

    @property
    def log_fallback(self) -> bool:
        return LOG in self.channels

    @property
    def configured(self) -> frozenset[str]:
        return frozenset(c for c in self.channels if c in CHANNELS)

    # --- 1. in the timer's transaction -----------------------------------------------------

    async def deliver(self, timer: Timer, ctx: HandlerContext) -> None:
        now, zone = ctx.now, self.policy.zone
        repo = DeliveryRepository(ctx.session)
        # One statement: the delivery, and of its buyer the slots used today, the contact row
        # and the erasure (all under the buyer's lock, which the erasure takes too).
        due = await repo.due(str(timer.payload.get("delivery_id", "")), local_day(now, zone))
        if due is None or not due.delivery.is_live(timer.ref):
            return  # superseded by a later timer of the same delivery
        delivery = due.delivery
        decision = delivery.when_due(
            now, used_today=due.used_today, policy=self.policy.notifier, zone=zone
        )
        if isinstance(decision, Drop):
            delivery.give_up(now, decision.reason, decision.detail)
            await self.store(ctx, repo, delivery)
            return
        if isinstance(decision, Defer):
            delivery.defer(decision)
            await self.store(ctx, repo, delivery)
            await self._deferred(ctx, delivery, decision, due.contact)
            return
        try:
            contact = await self._contact(ctx, due.contact)
        except CryptoError as exc:  # its message never holds plaintext
            delivery.give_up(now, FailReason.CONTACT_UNREADABLE, str(exc))
            await self.store(ctx, repo, delivery)
            return
        if contact is None and delivery.unconfirmed:  # erased since the attempt went out
            delivery.give_up(now, FailReason.NO_CONTACT, ERASED)
            await self.store(ctx, repo, delivery)
            return
        if contact is None:
            delivery.no_contact_yet(now, slot_day=decision.slot_day, policy=self.policy.notifier)
            await self.store(ctx, repo, delivery)
            return
        claimed = self._prepare(delivery, contact, now)
        if claimed is None:  # given up: no channel, or the template no longer renders
            await self.store(ctx, repo, delivery)
            return
        channel, message, channels_left = claimed
        attempt = delivery.start_attempt(
            now, channel=channel, slot_day=decision.slot_day, lease=SEND_LEASE
        )
        await self.store(ctx, repo, delivery, reason="unconfirmed")
        erased_at = due.erased_at
        ctx.run_outside(
            lambda: self.send(message),
            record=lambda result, rctx: self.record(
                rctx, Claimed(attempt, message, channels_left, erased_at), result
            ),
            lock_key=buyer_lock(delivery.customer_id),
        )

    async def _contact(self, ctx: HandlerContext, row: Mapping[str, Any] | None) -> Contact | None:
        """The buyer's contact, decrypted from the row read with the delivery."""
        if row is None:
            return None
        return await ContactBook(ctx.session, self.cipher).read(row, now=ctx.now)

    def _prepare(
        self, delivery: Delivery, contact: Contact, now: datetime
    ) -> tuple[str, Outgoing, bool] | None:
        """The channel, the rendered message and whether another channel is left; None (and
        the delivery given up) when nothing can go out."""
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
            delivery.give_up(
                now,
                FailReason.NO_CHANNEL,
                f"no configured gateway reaches the buyer (buyer's channels: {', '.join(reach)};"
                f" configured: {', '.join(sorted(self.configured)) or 'none'};"
                f" refused: {', '.join(delivery.refused_channels) or 'none'})",
            )
            return None
        try:
            rendered = self.renderer.render(
                delivery.template, delivery.params, language_order(contact.language)
            )
        except TemplateProblem as exc:
            delivery.give_up(now, FailReason.TEMPLATE_ERROR, exc.detail)
            return None
        channel = plan[0]
        intended = intended_channel(contact.preferred_channel, **has)
        message = projected(
            Outgoing,
            delivery,  # its ids, template and urgency
            channel=channel,
            language=rendered.language,
            subject=rendered.subject,
            body=rendered.body,
            at=now,
            address=contact.address(channel),
            display_name=contact.name if channel == "email" else None,
            recipient=contact.masked(intended if channel == LOG else channel),
            stands_in_for=intended if channel == LOG else None,
        )
        return channel, message, len(plan) > 1

    # --- 2. outside any transaction --------------------------------------------------------

    async def send(self, message: Outgoing) -> Result:
        """Send one message; never raises (a gateway problem is a `Result`)."""
        try:
            async with asyncio.timeout(SEND_DEADLINE):
                result = await self.channels[message.channel].send(message)
        except TimeoutError:
            result = transient(f"{message.channel}: no answer within {SEND_DEADLINE:.0f} s")
        except Exception as exc:  # a channel that raised after all: retried later
            result = transient(f"{message.channel}: {type(exc).__name__}")
        if result.ok:
            kind = "ok"
        elif not result.attempted:
            kind = "busy"
        else:
            kind = "transient" if result.transient else "permanent"
        metrics.ATTEMPTS.labels(SERVICE, message.channel, kind).inc()
        return result

    # --- 3. the outcome, in a short transaction of its own ---------------------------------

    async def record(self, ctx: HandlerContext, claimed: Claimed, result: Result) -> None:
        repo = DeliveryRepository(ctx.session)
        attempt, message = claimed.attempt, claimed.message
        # One statement: the delivery, whether the buyer's contact is still there, and their
        # latest erasure.
        outcome = await repo.outcome(attempt.delivery_id)
        if outcome is None or not outcome.delivery.holds(attempt):
            log.info(
                "late outcome of a notification attempt ignored (sent again meanwhile)",
                extra={"service": SERVICE, "request_id": attempt.delivery_id, "ok": result.ok},
            )
            return
        delivery = outcome.delivery
        unconfirmed = delivery.timer_ref
        # Under the buyer's lock, which the erasure takes too: an erasure since the claim
        # (the contact gone, or a later request) keeps the recipient out and ends a failure.
        erased = not outcome.has_contact or outcome.erased_at != claimed.erased_at
        recipient = None if erased else message.recipient
        if result.ok:
            delivery.record_sent(
                ctx.now, channel=message.channel, recipient=recipient, language=message.language
            )
        elif not result.attempted and not erased:
            delivery.hand_back(ctx.now + BUSY_RETRY)
        elif erased:
            delivery.give_up(ctx.now, FailReason.NO_CONTACT, ERASED, channel=message.channel)
        else:
            delivery.record_failure(
                ctx.now,
                permanent=not result.transient,
                detail=result.detail,
                channel=message.channel,
                recipient=recipient,
                channels_left=claimed.channels_left,
                policy=self.policy.notifier,
            )
        await ctx.timers.cancel(DELIVER, unconfirmed, at=ctx.now)
        await self.store(ctx, repo, delivery)

    # --- storing a step and telling its outcome --------------------------------------------

    async def store(
        self,
        ctx: HandlerContext,
        repo: DeliveryRepository,
        delivery: Delivery,
        *,
        reason: str | None = None,
    ) -> None:
        """Save the aggregate, arm its next timer, or tell how it ended."""
        await repo.save(delivery, ctx.now)
        if delivery.status == SCHEDULED:
            await arm(ctx, delivery, reason or delivery.defer_reason or "next")
            if delivery.defer_reason in ("retry", "next_channel"):
                self._retried(ctx, delivery)
        elif delivery.status == SENT:
            await self._sent(ctx, delivery)
        elif delivery.status == FAILED:
            await failed(ctx, repo, delivery)

    async def _sent(self, ctx: HandlerContext, delivery: Delivery) -> None:
        assert delivery.channel is not None and delivery.language is not None
        new = await _emit(
            ctx,
            delivery,
            NOTIFICATION_SENT,
            NotificationSent.model_validate(
                {**_status(delivery), "language": delivery.language, "sent_at": delivery.sent_at}
            ),
        )
        if new:  # counted once per notification, as its event
            ctx.count(metrics.NOTIFICATIONS.labels(SERVICE, delivery.template, "sent"))
        log.info(
            "notification sent",
            extra={
                **_fields(delivery),
                "channel": delivery.channel,
                "recipient": delivery.recipient,
                "attempts": delivery.attempts,
            },
        )

    def _retried(self, ctx: HandlerContext, delivery: Delivery) -> None:
        ctx.count(metrics.NOTIFICATIONS.labels(SERVICE, delivery.template, "retried"))
        assert delivery.next_attempt_at is not None
        log.warning(
            "notification attempt failed; trying again",
            extra={
                **_fields(delivery),
                "channel": delivery.channel,
                "attempts": delivery.attempts,
                "error": delivery.last_error,
                "retry_at": delivery.next_attempt_at.isoformat(),
            },
        )

    async def _deferred(
        self,
        ctx: HandlerContext,
        delivery: Delivery,
        decision: Defer,
        contact: Mapping[str, Any] | None,
    ) -> None:
        ctx.count(metrics.NOTIFICATIONS.labels(SERVICE, delivery.template, "deferred"))
        until = decision.until.astimezone(self.policy.zone)
        text = f"notification deferred until {until:%Y-%m-%d %H:%M} {self.policy.timezone}"
        text += f" ({decision.reason.replace('_', ' ')})"
        if self.log_fallback:  # development: show what will go out, at any hour
            text += await self._preview(ctx, delivery, contact)
        log.info(
            text,
            extra={
                **_fields(delivery),
                "reason": str(decision.reason),
                "due_at": decision.until.isoformat(),
            },
        )

    async def _preview(
        self, ctx: HandlerContext, delivery: Delivery, row: Mapping[str, Any] | None
    ) -> str:
        try:
            contact = await self._contact(ctx, row)
            rendered = self.renderer.render(
                delivery.template,
                delivery.params,
                language_order(contact.language if contact else None),
            )
        except (CryptoError, TemplateProblem):
            return ""
        body = " ".join(line.strip() for line in rendered.body.splitlines() if line.strip())
        return f": [{delivery.template}, {rendered.language}] {rendered.subject} | {body}"


async def failed(ctx: HandlerContext, repo: DeliveryRepository, delivery: Delivery) -> None:
    """Tell how a notification given up (and saved) ended: its dead-letter record,
    `notification.failed`, the metric and a log line."""
    await repo.dead_letter(delivery, ctx.now)
    reason = str(delivery.fail_reason)
    new = await _emit(
        ctx,
        delivery,
        NOTIFICATION_FAILED,
        NotificationFailed.model_validate(
            {
                **_status(delivery),
                "reason": reason,
                "detail": delivery.fail_detail,
                "failed_at": delivery.failed_at,
            }
        ),
    )
    if new:
        ctx.count(metrics.NOTIFICATIONS.labels(SERVICE, delivery.template, "failed"))
    log.warning(
        "notification failed: dead-letter record written",
        extra={
            **_fields(delivery),
            "reason": reason,
            "detail": delivery.fail_detail,
            "attempts": delivery.attempts,
        },
    )


async def _emit(ctx: HandlerContext, delivery: Delivery, event_type: str, data: BaseModel) -> bool:
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


def _fields(delivery: Delivery) -> dict[str, object]:
    return {
        "service": SERVICE,
        "request_id": delivery.delivery_id,
        "customer_id": delivery.customer_id,
        "template": delivery.template,
    }


def _status(delivery: Delivery) -> dict[str, object]:
    """What both status events say of the notification."""
    return {
        "request_id": delivery.delivery_id,
        "customer_id": delivery.customer_id,
        "order_id": delivery.order_id,
        "template": delivery.template,
        "case": _case(delivery),
        "urgent": delivery.urgent,
        "channel": delivery.channel,
        "recipient": delivery.recipient,
        "attempts": delivery.attempts,
    }


def _case(delivery: Delivery) -> CaseRef | None:
    if delivery.case_type is None or delivery.case_id is None:
        return None
    return CaseRef.model_validate({"type": delivery.case_type, "id": delivery.case_id})
