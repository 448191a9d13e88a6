"""One notification on its way to the buyer: the delivery aggregate (no I/O, no clock).

A delivery is `scheduled` until it ends `sent` or `failed`. Every step that waits (a deferral,
a retry, an attempt whose outcome is not yet recorded) takes the next timer sequence number:
the service layer arms the timer `<delivery_id>#<timer_seq>` due at `next_attempt_at`, and a
timer with an older number is stale. An attempt is claimed before the message goes out
(`start_attempt`: it counts, it holds a slot of the daily cap, its timer is the recovery
timer due at `confirm_by`) and its outcome recorded afterwards (`record_sent`,
`record_failure`), so the send itself needs no open transaction; an attempt whose outcome
never got recorded (the process died) is found by its recovery timer and sent again under
the same request id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.policy import NotifierPolicy

from .schedule import Defer, Drop, DueDecision, FailReason, GiveUp, Retry, after_failure, when_due

SCHEDULED = "scheduled"
SENT = "sent"
FAILED = "failed"
# `defer_reason` of a delivery whose attempt went out and whose outcome is not recorded yet.
SENDING = "sending"
# `defer_reason` of a delivery whose attempt was handed back: the gateway had no free slot.
GATEWAY_BUSY = "gateway_busy"
# The longest a detail (a gateway's status line) is kept.
DETAIL_LIMIT = 2000


def timer_ref(delivery_id: str, seq: int) -> str:
    return f"{delivery_id}#{seq}"


@dataclass(frozen=True)
class Attempt:
    """One attempt, claimed: its number, the timer that finds it if never recorded, the
    channel it goes by."""

    delivery_id: str
    number: int
    seq: int
    channel: str
    confirm_by: datetime


@dataclass
class Delivery:
    delivery_id: str
    source_event_id: str
    customer_id: str
    order_id: str | None
    case_type: str | None
    case_id: str | None
    template: str
    params: dict[str, Any]
    urgent: bool
    deadline: datetime | None
    status: str = SCHEDULED
    attempts: int = 0
    # Channels that refused this message for good: not tried again.
    refused_channels: tuple[str, ...] = ()
    timer_seq: int = 0
    # The local day whose non-urgent quota the message uses; None: none (yet).
    slot_day: date | None = None
    next_attempt_at: datetime | None = None
    defer_reason: str | None = None
    channel: str | None = None
    recipient: str | None = None  # masked
    language: str | None = None
    last_error: str | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    # Why it was given up, for the status event and the dead-letter record.
    fail_reason: FailReason | None = field(default=None, compare=False)
    fail_detail: str = field(default="", compare=False)

    @property
    def timer_ref(self) -> str:
        return timer_ref(self.delivery_id, self.timer_seq)

    def is_live(self, ref: str) -> bool:
        """Whether the timer `ref` is this delivery's current step (not superseded)."""
        return self.status == SCHEDULED and self.timer_ref == ref

    @property
    def needs_slot(self) -> bool:
        """Non-urgent and holding no slot of the daily cap yet: the cap must be counted."""
        return not self.urgent and self.slot_day is None

    @property
    def unconfirmed(self) -> bool:
        """An attempt went out and its outcome was never recorded (the process stopped)."""
        return self.defer_reason == SENDING

    # --- when it is due --------------------------------------------------------------------

    def when_due(
        self, now: datetime, *, used_today: int, policy: NotifierPolicy, zone: ZoneInfo
    ) -> DueDecision:
        """Send, defer or drop, by quiet hours, the daily cap and the deadline (`when_due`).

        An attempt never recorded is sent again while attempts are left (under the same
        request id, so the gateway can tell); after the last one it is given up.
        """
        if self.unconfirmed and self.attempts >= policy.retry_max_attempts:
            return Drop(
                FailReason.RETRIES_EXHAUSTED,
                "no outcome was recorded for the last attempt (the service stopped while sending)",
            )
        return when_due(
            now=now,
            urgent=self.urgent,
            deadline=self.deadline,
            slot_day=self.slot_day,
            used_today=used_today,
            policy=policy,
            zone=zone,
        )

    def defer(self, decision: Defer) -> None:
        self._next_step(decision.until, str(decision.reason))

    def reschedule(self, at: datetime, reason: str) -> None:
        """Take the next timer at `at` (e.g. when the gateways are busy)."""
        self._next_step(at, reason)

    # --- attempts ---------------------------------------------------------------------------

    def start_attempt(
        self, now: datetime, *, channel: str, slot_day: date | None, lease: timedelta
    ) -> Attempt:
        """Claim an attempt before it goes out: it counts, it takes its slot of the day, and
        its recovery timer is due at `now + lease`."""
        self.attempts += 1
        self.slot_day = slot_day
        self._next_step(now + lease, SENDING)
        assert self.next_attempt_at is not None
        return Attempt(
            self.delivery_id, self.attempts, self.timer_seq, channel, self.next_attempt_at
        )

    def hand_back(self, at: datetime) -> None:
        """The attempt never reached a gateway (every connection to it busy): it does not
        count, and the message is tried again at `at` (its slot of the day kept)."""
        self.attempts = max(self.attempts - 1, 0)
        self._next_step(at, GATEWAY_BUSY)

    def holds(self, attempt: Attempt) -> bool:
        """Whether `attempt` is still the delivery's current step: its outcome may be recorded.

        False once its recovery timer took over (the attempt was sent again) or the delivery
        ended: a late outcome then changes nothing."""
        return self.status == SCHEDULED and self.timer_seq == attempt.seq

    def record_sent(
        self, now: datetime, *, channel: str, recipient: str | None, language: str
    ) -> None:
        self.status = SENT
        self.channel, self.recipient, self.language = channel, recipient, language
        self.sent_at = now
        self.next_attempt_at = None
        self.defer_reason = None
        self.last_error = None

    def record_failure(
        self,
        now: datetime,
        *,
        permanent: bool,
        detail: str,
        channel: str | None,
        recipient: str | None,
        channels_left: bool,
        policy: NotifierPolicy,
        no_contact: bool = False,
    ) -> Retry | GiveUp:
        """The attempt failed: retry later (transient), on the next channel at once (a
        permanent refusal with another channel left) or give up."""
        if permanent and channel is not None and channel not in self.refused_channels:
            self.refused_channels = (*self.refused_channels, channel)
        step = after_failure(
            now=now,
            attempts=self.attempts,
            max_attempts=policy.retry_max_attempts,
            permanent=permanent,
            channels_left=channels_left,
            deadline=self.deadline,
            no_contact=no_contact,
            first_delay=timedelta(seconds=policy.retry_first_delay_seconds),
            longest_delay=timedelta(seconds=policy.retry_longest_delay_seconds),
        )
        if isinstance(step, GiveUp):
            self.give_up(now, step.reason, detail, channel=channel, recipient=recipient)
            return step
        self._next_step(step.at, "next_channel" if permanent else "retry")
        self.channel = channel  # the channel that failed last (shown while it is retried)
        self.last_error = detail
        return step

    def no_contact_yet(
        self, now: datetime, *, slot_day: date | None, policy: NotifierPolicy
    ) -> Retry | GiveUp:
        """No contact data for the buyer (no `order.paid` yet): an attempt that failed
        transiently, without a send."""
        self.attempts += 1
        self.slot_day = slot_day
        return self.record_failure(
            now,
            permanent=False,
            detail="no contact data for the buyer (no order.paid seen yet)",
            channel=None,
            recipient=None,
            channels_left=False,
            policy=policy,
            no_contact=True,
        )

    def give_up(
        self,
        now: datetime,
        reason: FailReason,
        detail: str,
        *,
        channel: str | None = None,
        recipient: str | None = None,
    ) -> None:
        detail = detail[:DETAIL_LIMIT]
        self.status = FAILED
        self.channel, self.recipient = channel, recipient
        self.slot_day = None  # it never reached the buyer: it does not use up the day's quota
        self.failed_at = now
        self.next_attempt_at = None
        self.last_error = f"{reason}: {detail}"
        self.fail_reason, self.fail_detail = reason, detail

    def _next_step(self, at: datetime, reason: str) -> None:
        self.timer_seq += 1
        self.next_attempt_at = at
        self.defer_reason = reason
