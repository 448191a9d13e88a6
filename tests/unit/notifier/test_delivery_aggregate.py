"""The Delivery aggregate: claiming attempts, recording outcomes, caps and quiet hours (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from services.notifier.domain.delivery import FAILED, SCHEDULED, SENDING, SENT, Delivery
from services.notifier.domain.schedule import (
    Defer,
    DeferReason,
    Drop,
    FailReason,
    GiveUp,
    Retry,
    Send,
    in_quiet_hours,
    local_day,
)
from shared.policy import LocalHours, NotifierPolicy

SH = ZoneInfo("Asia/Shanghai")
POLICY = NotifierPolicy()
LEASE = timedelta(seconds=30)
NOON = datetime(2024, 5, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def delivery(*, urgent: bool = False, deadline: datetime | None = None) -> Delivery:
    return Delivery(
        delivery_id="req-1",
        source_event_id="evt-1",
        customer_id="C1",
        order_id="O1",
        case_type="complaint",
        case_id="K1",
        template="complaint.acknowledged",
        params={},
        urgent=urgent,
        deadline=deadline,
    )


def fail(
    d: Delivery,
    *,
    permanent: bool = False,
    channels_left: bool = False,
    policy: NotifierPolicy = POLICY,
    recipient: str | None = None,
) -> Retry | GiveUp:
    status = 400 if permanent else 503
    return d.record_failure(
        NOON,
        permanent=permanent,
        detail=f"sms gateway: HTTP {status}",
        channel="sms",
        recipient=recipient,
        channels_left=channels_left,
        policy=policy,
    )


def test_an_attempt_is_claimed_before_the_send_and_recorded_after() -> None:
    d = delivery()
    assert d.is_live("req-1#0") and d.needs_slot
    decision = d.when_due(NOON, used_today=0, policy=POLICY, zone=SH)
    assert isinstance(decision, Send)
    attempt = d.start_attempt(NOON, channel="sms", slot_day=decision.slot_day, lease=LEASE)
    # Claimed: counted, holding its slot, its recovery timer due after the lease.
    assert (attempt.number, attempt.seq, attempt.confirm_by) == (1, 1, NOON + LEASE)
    assert (d.attempts, d.defer_reason, d.slot_day) == (1, SENDING, local_day(NOON, SH))
    assert d.unconfirmed and d.is_live("req-1#1") and not d.is_live("req-1#0")
    assert d.holds(attempt)
    d.record_sent(NOON, channel="sms", recipient="138****5678", language="zh-CN")
    assert (d.status, d.sent_at, d.next_attempt_at, d.defer_reason) == (SENT, NOON, None, None)
    assert not d.holds(attempt)  # recorded once: a second outcome changes nothing


def test_a_transient_failure_retries_with_the_policy_delays() -> None:
    policy = NotifierPolicy(retry_first_delay_seconds=2, retry_longest_delay_seconds=5)
    d = delivery()
    delays = []
    for _ in range(4):
        attempt = d.start_attempt(NOON, channel="sms", slot_day=None, lease=LEASE)
        step = fail(d, policy=policy)
        assert isinstance(step, Retry) and not d.holds(attempt)
        delays.append(step.at - NOON)
        assert d.timer_seq == attempt.seq + 1 and d.defer_reason == "retry"
    assert delays == [timedelta(seconds=s) for s in (2, 5, 5, 5)]
    d.start_attempt(NOON, channel="sms", slot_day=None, lease=LEASE)
    step = fail(d, policy=policy, recipient="138****5678")
    assert step == GiveUp(FailReason.RETRIES_EXHAUSTED)
    assert (d.status, d.fail_reason, d.fail_detail, d.attempts) == (
        FAILED,
        FailReason.RETRIES_EXHAUSTED,
        "sms gateway: HTTP 503",
        5,
    )
    assert d.slot_day is None  # a message that never reached the buyer frees its slot


def test_a_permanent_refusal_moves_to_the_next_channel_and_remembers_it() -> None:
    d = delivery()
    d.start_attempt(NOON, channel="sms", slot_day=None, lease=LEASE)
    step = fail(d, permanent=True, channels_left=True)
    assert step == Retry(NOON) and d.refused_channels == ("sms",)
    assert d.defer_reason == "next_channel"


def test_an_unrecorded_attempt_is_sent_again_then_given_up_after_the_last() -> None:
    d = delivery(urgent=True)
    d.start_attempt(NOON, channel="sms", slot_day=None, lease=LEASE)
    # The process stopped before the outcome was recorded: the recovery timer fires.
    later = NOON + LEASE
    assert d.is_live(d.timer_ref) and d.unconfirmed
    assert isinstance(d.when_due(later, used_today=0, policy=POLICY, zone=SH), Send)
    d.attempts = POLICY.retry_max_attempts  # every attempt used up, the last one unrecorded
    decision = d.when_due(later, used_today=0, policy=POLICY, zone=SH)
    assert isinstance(decision, Drop) and decision.reason == FailReason.RETRIES_EXHAUSTED
    assert "no outcome was recorded" in decision.detail


def test_no_contact_yet_is_a_transient_failure_without_a_send() -> None:
    d = delivery()
    step = d.no_contact_yet(NOON, slot_day=None, policy=POLICY)
    assert isinstance(step, Retry) and d.attempts == 1 and d.status == SCHEDULED
    d.attempts = POLICY.retry_max_attempts - 1
    assert d.no_contact_yet(NOON, slot_day=None, policy=POLICY) == GiveUp(FailReason.NO_CONTACT)


# --- properties: the daily cap and quiet hours -------------------------------------------------

instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)
hours = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@given(now=instants, cap=st.integers(1, 10), used=st.integers(0, 12))
def test_the_daily_cap_is_never_exceeded_and_nothing_is_dropped(
    now: datetime, cap: int, used: int
) -> None:
    none = LocalHours(start=time(0), end=time(0))  # no quiet hours: the cap alone
    policy = NotifierPolicy(max_non_urgent_per_day=cap, quiet_hours=none)
    decision = delivery().when_due(now, used_today=used, policy=policy, zone=SH)
    if used < cap:
        assert decision == Send(slot_day=local_day(now, SH))
    else:  # deferred to the next local day, never dropped without a deadline
        assert isinstance(decision, Defer) and decision.reason == DeferReason.DAILY_CAP
        assert local_day(decision.until, SH) == local_day(now, SH) + timedelta(days=1)
    # An urgent message neither counts nor waits.
    urgent = delivery(urgent=True).when_due(now, used_today=used, policy=policy, zone=SH)
    assert urgent == Send(slot_day=None)


@given(now=instants, start=hours, end=hours)
def test_quiet_hours_shift_forward_to_their_end_and_no_further(
    now: datetime, start: time, end: time
) -> None:
    quiet = LocalHours(start=start, end=end)
    policy = NotifierPolicy(quiet_hours=quiet)
    decision = delivery().when_due(now, used_today=0, policy=policy, zone=SH)
    if not in_quiet_hours(now, quiet, SH):
        assert isinstance(decision, Send)
        return
    assert isinstance(decision, Defer) and decision.reason == DeferReason.QUIET_HOURS
    until = decision.until
    assert now < until <= now + timedelta(hours=24)
    assert not in_quiet_hours(until, quiet, SH)  # it may go out then
    assert until.astimezone(SH).time() == end  # the end of the quiet period, no later
    assert in_quiet_hours(until - timedelta(minutes=1), quiet, SH)


@given(now=instants, left=st.integers(0, 600))
def test_a_deadline_is_never_missed_by_a_shift(now: datetime, left: int) -> None:
    deadline = now + timedelta(minutes=left)
    d = delivery(deadline=deadline)
    decision = d.when_due(now, used_today=99, policy=POLICY, zone=SH)
    if isinstance(decision, Defer):
        assert decision.until < deadline
    else:
        assert isinstance(decision, Drop) and decision.reason == FailReason.EXPIRED
