"""The Callback aggregate: one callback per case, coalescing a buyer's cases, sending at the
due time, never late, and the buyer's answer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from services.followup.domain.events import (
    CallbackDelivered,
    CallbackScheduled,
    CallbackSent,
    CallbackUndelivered,
    CaseMissed,
    SatisfactionRecorded,
    TimerSet,
)
from services.followup.domain.model import Callback, Case, close_case
from services.followup.domain.rules import (
    SURVEY_VALIDITY,
    AnswerRejected,
    CallbackStatus,
    CaseKey,
    CaseOutcome,
    CaseType,
    Delivery,
)
from shared.policy import Policy

POLICY = Policy()
H = timedelta(hours=1)
T = datetime.fromisoformat("2024-05-01T10:00:00+08:00")  # a case closes


def case(case_id: str, closed_at: datetime = T, *, kind: str = "return", buyer: str = "c-1"):
    return Case.closed(
        kind,
        case_id,
        order_id=f"o-{case_id}",
        customer_id=buyer,
        closed_at=closed_at,
        closed_by="refund.issued",
        policy=POLICY,
    )


def only(events, cls):
    return [event for event in events if isinstance(event, cls)]


def new(the_case: Case, now: datetime | None = None, pending=()):
    return close_case(
        the_case,
        list(pending),
        new_callback_id=f"cb-{the_case.case_id}",
        policy=POLICY,
        now=now or the_case.closed_at,
    )


def roundtrip(callback: Callback) -> Callback:
    return Callback.from_dict(json.loads(json.dumps(callback.to_dict())))


def test_a_closed_case_schedules_one_callback_at_close_plus_24h() -> None:
    callback, events = new(case("r1"))
    assert callback.status == CallbackStatus.SCHEDULED
    assert (callback.due_at, callback.deadline) == (T + 24 * H, T + 72 * H)
    assert events == [
        CallbackScheduled((CaseKey(CaseType.RETURN, "r1"),), T + 24 * H, T + 72 * H, 0),
        TimerSet(T + 24 * H),
    ]


def test_the_callback_is_sent_when_due_and_only_once() -> None:
    callback, _ = new(case("r1"))
    assert callback.on_due(POLICY, T + 23 * H) == [TimerSet(T + 24 * H)]  # early: keep waiting
    events = callback.on_due(POLICY, T + 24 * H)
    assert events == [
        CallbackSent(
            (CaseKey(CaseType.RETURN, "r1"),),
            due_at=T + 24 * H,
            deadline=T + 72 * H,
            sent_at=T + 24 * H,
            answer_by=T + 24 * H + SURVEY_VALIDITY,
        )
    ]
    assert callback.status == CallbackStatus.SENT
    assert callback.cases[0].outcome == CaseOutcome.SENT
    assert callback.on_due(POLICY, T + 25 * H) == []  # a repeated timer: nothing more


def test_a_timer_that_fires_late_in_quiet_hours_waits_for_their_end() -> None:
    callback, _ = new(case("r1"))
    late = datetime.fromisoformat("2024-05-02T22:00:00+08:00")  # the service was down
    events = callback.on_due(POLICY, late)
    morning = datetime.fromisoformat("2024-05-03T09:00:00+08:00")
    assert only(events, TimerSet) == [TimerSet(morning)]
    assert only(events, CallbackScheduled)[0].revision == 1
    assert callback.status == CallbackStatus.SCHEDULED and callback.due_at == morning
    assert only(callback.on_due(POLICY, morning), CallbackSent)


def test_a_timer_that_fires_after_the_deadline_sends_nothing_and_reports_the_breach() -> None:
    callback, _ = new(case("r1"))
    events = callback.on_due(POLICY, T + 72 * H)
    assert events == [CaseMissed(CaseKey(CaseType.RETURN, "r1"), "o-r1", T + 72 * H, T + 72 * H)]
    assert callback.status == CallbackStatus.MISSED
    assert callback.cases[0].outcome == CaseOutcome.MISSED
    # quiet until after the deadline also counts as missed
    callback, _ = new(case("r2", datetime.fromisoformat("2024-05-01T22:00:00+08:00")))
    quiet = datetime.fromisoformat("2024-05-04T21:30:00+08:00")  # deadline 22:00, quiet till 9
    assert only(callback.on_due(POLICY, quiet), CaseMissed)
    assert callback.status == CallbackStatus.MISSED


def test_a_close_event_too_late_for_any_callback_is_missed_at_once() -> None:
    callback, events = new(case("r1"), now=T + 80 * H)
    assert callback.status == CallbackStatus.MISSED
    assert events == [CaseMissed(CaseKey(CaseType.RETURN, "r1"), "o-r1", T + 72 * H, T + 80 * H)]
    assert callback.due_at == T + 24 * H  # when it would have gone out


def test_a_late_close_event_still_in_time_is_sent_at_the_next_allowed_instant() -> None:
    now = T + 30 * H  # 16:00 local: send at once
    callback, events = new(case("r1"), now=now)
    assert callback.due_at == now and TimerSet(now) in events


def test_cases_of_one_buyer_closing_within_one_window_get_one_callback() -> None:
    first, _ = new(case("r1"))
    second = case("c7", T + 5 * H, kind="complaint")
    joined, events = new(second, pending=[first])
    assert joined is first
    assert first.keys() == (CaseKey(CaseType.RETURN, "r1"), CaseKey(CaseType.COMPLAINT, "c7"))
    # it goes out when both have had their 24 hours, before the earliest deadline
    assert (first.due_at, first.deadline) == (T + 29 * H, T + 72 * H)
    assert events == [
        CallbackScheduled(first.keys(), T + 29 * H, T + 72 * H, 1),
        TimerSet(T + 29 * H),
    ]
    sent = only(first.on_due(POLICY, T + 29 * H), CallbackSent)[0]
    assert sent.cases == first.keys()


def test_a_case_that_closed_earlier_joins_without_moving_the_callback() -> None:
    first, _ = new(case("r1"))
    earlier = case("r0", T - 2 * H)  # its close event arrived late
    _, events = new(earlier, now=T + H, pending=[first])
    assert (first.due_at, first.deadline) == (T + 24 * H, T + 70 * H)  # earliest deadline
    assert not only(events, TimerSet)
    assert only(events, CallbackScheduled)[0].deadline == T + 70 * H


def test_a_case_outside_the_window_gets_its_own_callback() -> None:
    first, _ = new(case("r1"))
    first.due_at = T + 60 * H  # e.g. postponed by earlier coalescing
    late = case("r2", T + 50 * H)  # due at T + 74 h: past the first callback's deadline
    callback, events = new(late, pending=[first])
    assert callback is not first and callback.callback_id == "cb-r2"
    assert first.keys() == (CaseKey(CaseType.RETURN, "r1"),)
    assert only(events, TimerSet) == [TimerSet(T + 74 * H)]


def test_a_sent_callback_takes_no_more_cases() -> None:
    first, _ = new(case("r1"))
    first.on_due(POLICY, T + 24 * H)
    callback, _ = new(case("r2", T + 25 * H), pending=[first])
    assert callback is not first


def test_other_buyers_never_share_a_callback() -> None:
    first, _ = new(case("r1"))
    callback, _ = new(case("r2", T + H, buyer="c-2"), pending=[first])
    assert callback is not first


def test_a_late_timer_sends_for_the_cases_still_in_time_and_reports_the_others() -> None:
    first, _ = new(case("r1"))
    new(case("r2", T + 10 * H), pending=[first])  # joins: due T + 34 h, deadline T + 72 h
    late = T + 75 * H  # 13:00 local, past r1's deadline, before r2's (T + 82 h)
    events = first.on_due(POLICY, late)
    assert only(events, CaseMissed) == [
        CaseMissed(CaseKey(CaseType.RETURN, "r1"), "o-r1", T + 72 * H, late)
    ]
    sent = only(events, CallbackSent)[0]
    assert sent.cases == (CaseKey(CaseType.RETURN, "r2"),)
    assert sent.deadline == T + 82 * H
    assert [c.outcome for c in first.cases] == [CaseOutcome.MISSED, CaseOutcome.SENT]


def sent_callback() -> Callback:
    callback, _ = new(case("r1"))
    callback.on_due(POLICY, T + 24 * H)
    return callback


def answer(callback: Callback, score: int = 5, **changes):
    values = dict(customer_id="c-1", score=score, comment="很好", answered_at=T + 30 * H)
    values.update(changes)
    return callback.answer(policy=POLICY, **values)


@pytest.mark.parametrize(("score", "low"), [(1, True), (2, True), (3, False), (5, False)])
def test_an_answer_is_recorded_and_a_low_score_flagged(score: int, low: bool) -> None:
    callback = sent_callback()
    callback.on_delivered(T + 24 * H, T + 24 * H)
    events = answer(callback, score)
    assert events == [
        SatisfactionRecorded((CaseKey(CaseType.RETURN, "r1"),), score, low, T + 30 * H)
    ]
    assert (callback.score, callback.comment, callback.answered_at) == (score, "很好", T + 30 * H)


@pytest.mark.parametrize(
    ("reason", "prepare", "changes"),
    [
        ("already_answered", lambda cb: answer(cb), {}),
        ("customer_mismatch", None, {"customer_id": "c-2"}),
        ("survey_expired", None, {"answered_at": T + 24 * H + SURVEY_VALIDITY + H}),
        ("invalid_score", None, {"score": 6}),
    ],
)
def test_bad_answers_are_rejected_with_a_reason(reason, prepare, changes) -> None:
    callback = sent_callback()
    if prepare is not None:
        prepare(callback)
    with pytest.raises(AnswerRejected) as caught:
        answer(callback, **changes)
    assert caught.value.reason == reason
    assert "很好" not in str(caught.value)  # the free text never reaches the reason


def test_an_answer_at_the_end_of_the_validity_counts() -> None:
    callback = sent_callback()
    assert answer(callback, answered_at=T + 24 * H + SURVEY_VALIDITY)


def test_an_answer_to_a_callback_not_sent_is_rejected() -> None:
    callback, _ = new(case("r1"))
    with pytest.raises(AnswerRejected) as caught:
        answer(callback)
    assert caught.value.reason == "callback_not_sent"


def test_callbacks_round_trip_through_json() -> None:
    callback = sent_callback()
    new(case("r9", T + H), pending=[])  # unrelated
    answer(callback, 4)
    again = roundtrip(callback)
    assert again == callback
    pending, _ = new(case("r2"))
    assert roundtrip(pending) == pending


R1 = CaseKey(CaseType.RETURN, "r1")


def test_a_sent_callback_is_made_only_once_the_notifier_delivered_it() -> None:
    callback = sent_callback()
    assert callback.delivery == Delivery.AWAITING
    assert [case.outcome for case in callback.cases] == [CaseOutcome.SENT]  # requested only
    events = callback.on_delivered(T + 24 * H + H, now=T + 26 * H)
    assert events == [CallbackDelivered((R1,), T + 25 * H)]
    assert (callback.delivery, callback.delivered_at) == (Delivery.DELIVERED, T + 25 * H)
    assert [case.outcome for case in callback.cases] == [CaseOutcome.DELIVERED]
    # a repeated or contradicting status changes nothing
    assert callback.on_delivered(T + 30 * H, now=T + 30 * H) == []
    assert callback.on_undelivered("retries_exhausted", now=T + 30 * H) == []
    assert callback.delivered_at == T + 25 * H


def test_an_invitation_the_notifier_gave_up_misses_its_cases_once() -> None:
    callback = sent_callback()
    events = callback.on_undelivered("expired", now=T + 73 * H)
    assert events == [
        CallbackUndelivered((R1,), "expired"),
        CaseMissed(R1, "o-r1", T + 72 * H, T + 73 * H, "expired"),
    ]
    assert (callback.delivery, callback.delivery_failure) == (Delivery.FAILED, "expired")
    assert [case.outcome for case in callback.cases] == [CaseOutcome.UNDELIVERED]
    assert callback.on_undelivered("no_contact", now=T + 74 * H) == []
    assert callback.on_delivered(T + 25 * H, now=T + 74 * H) == []
    assert callback.status == CallbackStatus.SENT  # it was sent: an answer is still taken


def test_a_delivery_dated_past_a_case_deadline_misses_that_case() -> None:
    callback = sent_callback()
    events = callback.on_delivered(T + 72 * H, now=T + 73 * H)
    assert events == [CaseMissed(R1, "o-r1", T + 72 * H, T + 73 * H, "delivered_late")]
    assert [case.outcome for case in callback.cases] == [CaseOutcome.UNDELIVERED]


def test_an_answer_proves_the_delivery_whatever_status_comes_later() -> None:
    callback = sent_callback()
    events = answer(callback, 4)
    assert events[0] == CallbackDelivered((R1,), None)
    assert [case.outcome for case in callback.cases] == [CaseOutcome.DELIVERED]
    assert callback.on_undelivered("retries_exhausted", now=T + 31 * H) == []
    assert callback.on_delivered(T + 25 * H, now=T + 31 * H) == []  # only its instant is kept
    assert (callback.delivery, callback.delivered_at) == (Delivery.DELIVERED, T + 25 * H)


def test_a_status_for_a_callback_not_sent_changes_nothing() -> None:
    callback, _ = new(case("r1"))
    assert callback.on_delivered(T + 25 * H, now=T + 25 * H) == []
    assert callback.on_undelivered("expired", now=T + 25 * H) == []
    assert callback.delivery is None and callback.status == CallbackStatus.SCHEDULED
