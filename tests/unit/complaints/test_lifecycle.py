"""The Complaint lifecycle: acknowledgement, SLA timers and breaches, escalation, events out of
order, reopening after a low satisfaction score, idempotence and persistence."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.complaints.domain.events import (
    CouponGranted,
    Escalated,
    Notify,
    SlaBreached,
    TimerCancelled,
    TimerSet,
)
from services.complaints.domain.model import Complaint
from services.complaints.domain.rules import (
    ComplaintStatus,
    EscalationReason,
    Priority,
    Sla,
    Template,
    TimerKind,
)
from shared.catchup import CATCH_UP_GRACE

from . import COMPLAINT, DAY, POLICY, T0, Case, H, one, only

MIN = timedelta(minutes=1)

FR, RES = TimerKind.FIRST_RESPONSE, TimerKind.RESOLUTION
G = CATCH_UP_GRACE  # an SLA timer is due a grace after its deadline


def timers_set(events) -> dict[TimerKind, object]:
    return {e.kind: e.due_at for e in only(events, TimerSet)}


def templates(events) -> list[str]:
    return [e.template.value for e in only(events, Notify)]


# --- opening --------------------------------------------------------------------------------


def test_opening_acknowledges_at_once_with_the_simple_deadlines() -> None:
    case = Case()
    events = case.open("logistics_delay", at=T0, now=T0 + timedelta(minutes=1))
    ack = one(events, Notify)
    assert ack.template == Template.ACKNOWLEDGED
    assert ack.urgent is True
    assert ack.case == COMPLAINT
    assert ack.params == {
        "complaint_id": "k1",
        "category": "logistics_delay",
        "answer_within_hours": 2,
        "answer_by": (T0 + 2 * H).isoformat(),
    }
    assert timers_set(events) == {FR: T0 + 2 * H + G, RES: T0 + 2 * H + G}
    assert case.complaint.status == ComplaintStatus.OPEN
    assert case.complaint.acknowledged_at == T0 + timedelta(minutes=1)


@pytest.mark.parametrize("category", ["quality_issue", "not_received", "fake_shipment"])
def test_complex_categories_are_told_the_longer_deadline(category: str) -> None:
    events = Case().open(category)
    ack = one(events, Notify)
    assert ack.params["resolve_within_hours"] == 24
    assert ack.params["resolve_by"] == (T0 + 24 * H).isoformat()
    assert ack.params["answer_within_hours"] == 2
    assert ack.params["answer_by"] == (T0 + 2 * H).isoformat()
    assert timers_set(events) == {FR: T0 + 2 * H + G, RES: T0 + 24 * H + G}


def test_a_repeated_opening_has_no_effect() -> None:
    case = Case()
    case.open("wrong_item")
    assert case.open("wrong_item") == []
    assert case.open("other", at=T0 + H) == []
    assert case.complaint.category is not None and case.complaint.category.value == "wrong_item"


def test_an_unknown_category_is_refused() -> None:
    with pytest.raises(ValueError):
        Case().open("rude_parcel")


# --- responses, resolutions and their timers -------------------------------------------------


def test_a_response_cancels_the_first_response_timer_only() -> None:
    case = Case()
    case.open("quality_issue")
    events = case.respond(at=T0 + H)
    assert events == [TimerCancelled(FR)]
    assert case.complaint.status == ComplaintStatus.RESPONDED
    assert case.complaint.timers == {RES: T0 + 24 * H + G}
    assert case.respond(at=T0 + 2 * H) == []  # the first response counts


def test_a_resolution_cancels_both_timers() -> None:
    case = Case()
    case.open("quality_issue")
    events = case.resolve("not_upheld", at=T0 + H)
    assert set(only(events, TimerCancelled)) == {TimerCancelled(FR), TimerCancelled(RES)}
    assert case.complaint.timers == {}
    assert case.complaint.status == ComplaintStatus.RESOLVED
    assert not only(events, SlaBreached)


def test_a_response_exactly_at_the_deadline_is_in_time() -> None:
    case = Case()
    case.open("other")
    assert not only(case.respond(at=T0 + 2 * H), SlaBreached)


def test_first_response_timer_breaches_and_escalates_high() -> None:
    case = Case()
    case.open("quality_issue")
    events = case.timer(FR.value, T0 + 2 * H + G, now=T0 + 2 * H + G + timedelta(seconds=3))
    breach = one(events, SlaBreached)
    assert (breach.sla, breach.due_at, breach.case) == (Sla.FIRST_RESPONSE, T0 + 2 * H, COMPLAINT)
    assert breach.detected_at == T0 + 2 * H + G + timedelta(seconds=3)
    escalation = one(events, Escalated)
    assert escalation.reason == EscalationReason.FIRST_RESPONSE_OVERDUE
    assert escalation.priority == Priority.HIGH
    assert escalation.due_at == T0 + 2 * H
    assert templates(events) == ["complaint.escalated"]
    assert one(events, Notify).params == {
        "complaint_id": "k1",
        "reason": "first_response_overdue",
        "answer_by": (T0 + 24 * H).isoformat(),  # the resolution deadline still ahead
    }
    assert case.complaint.priority == Priority.HIGH
    assert case.complaint.timers == {RES: T0 + 24 * H + G}


def test_resolution_timer_breaches_and_escalates_urgent_telling_the_buyer_once() -> None:
    case = Case()
    case.open("wrong_item")  # both deadlines at T0 + 2 h
    first = case.timer(FR.value, T0 + 2 * H + G)
    second = case.timer(RES.value, T0 + 2 * H + G)
    assert one(second, SlaBreached).sla == Sla.RESOLUTION
    escalation = one(second, Escalated)
    assert (escalation.reason, escalation.priority) == (
        EscalationReason.RESOLUTION_OVERDUE,
        Priority.URGENT,
    )
    assert templates(first) == ["complaint.escalated"]
    assert "answer_by" not in one(first, Notify).params  # no deadline ahead to promise
    assert templates(second) == []  # the buyer was told once
    assert case.complaint.priority == Priority.URGENT


def test_an_answer_in_time_read_just_after_its_deadline_is_no_breach() -> None:
    # The agent answers a second before the deadline; the event reaches this service a second
    # after it. The timer, a grace after the deadline, finds the deadline met.
    case = Case()
    case.open("other")  # both deadlines at T0 + 2 h
    second = timedelta(seconds=1)
    assert case.timer(FR.value, T0 + 2 * H, now=T0 + 2 * H + second) == []  # no such timer
    events = case.respond(at=T0 + 2 * H - second, now=T0 + 2 * H + second)
    assert events == [TimerCancelled(FR)]
    events = case.resolve("not_upheld", at=T0 + 2 * H, now=T0 + 2 * H + 2 * second)
    assert not only(events, SlaBreached) and not only(events, Escalated)
    assert case.timer(RES.value, T0 + 2 * H + G) == []
    assert case.complaint.breaches == set() and case.complaint.escalations == set()


def test_sla_timers_that_fire_after_an_outage_wait_for_the_answers_behind_them() -> None:
    # The service was down across both deadlines: on its restart the scheduler fires the timers
    # at once, while the response and the resolution dated in time are still in the backlog.
    case = Case()
    case.open("other")
    restarted = T0 + 5 * H
    assert case.timer(FR.value, T0 + 2 * H + G, now=restarted) == [TimerSet(FR, restarted + G)]
    assert case.timer(RES.value, T0 + 2 * H + G, now=restarted) == [TimerSet(RES, restarted + G)]
    assert case.respond(at=T0 + H, now=restarted + timedelta(seconds=2)) == [TimerCancelled(FR)]
    events = case.resolve("not_upheld", at=T0 + 90 * MIN, now=restarted + timedelta(seconds=3))
    assert events == [TimerCancelled(RES)]
    assert case.timer(FR.value, restarted + G) == []
    assert case.timer(RES.value, restarted + G) == []
    assert case.complaint.breaches == set() and case.complaint.escalations == set()


def test_an_answer_dated_after_its_deadline_in_the_backlog_still_breaches() -> None:
    case = Case()
    case.open("other")
    restarted = T0 + 5 * H
    case.timer(FR.value, T0 + 2 * H + G, now=restarted)
    case.timer(RES.value, T0 + 2 * H + G, now=restarted)
    events = case.respond(at=T0 + 3 * H, now=restarted + timedelta(seconds=2))
    breach = one(events, SlaBreached)
    assert (breach.sla, breach.due_at) == (Sla.FIRST_RESPONSE, T0 + 2 * H)
    assert one(events, Escalated).reason == EscalationReason.FIRST_RESPONSE_OVERDUE
    assert templates(events) == []  # the buyer has the answer
    # no resolution in the backlog: the timer set again finds it missing, once
    events = case.timer(RES.value, restarted + G)
    breach = one(events, SlaBreached)
    assert (breach.sla, breach.due_at, breach.detected_at) == (
        Sla.RESOLUTION,
        T0 + 2 * H,
        restarted + G,
    )
    assert one(events, Escalated).reason == EscalationReason.RESOLUTION_OVERDUE


def test_an_sla_timer_set_again_after_an_outage_is_judged_however_late_it_fires() -> None:
    case = Case()
    case.open("other")
    restarted = T0 + 5 * H
    case.timer(FR.value, T0 + 2 * H + G, now=restarted)
    events = case.timer(FR.value, restarted + G, now=restarted + DAY)  # a scheduler far behind
    assert one(events, SlaBreached).due_at == T0 + 2 * H
    assert templates(events) == ["complaint.escalated"]


def test_an_sla_timer_within_a_grace_of_its_due_time_judges_at_once() -> None:
    case = Case()
    case.open("other")
    events = case.timer(FR.value, T0 + 2 * H + G, now=T0 + 2 * H + 2 * G)  # no second grace
    assert one(events, SlaBreached).detected_at == T0 + 2 * H + 2 * G


def test_an_sla_timer_at_its_deadline_set_before_the_grace_is_moved_to_it() -> None:
    # A complaint stored with its timers at the deadlines themselves.
    case = Case()
    case.open("other")
    case.complaint.timers = {FR: T0 + 2 * H, RES: T0 + 2 * H}
    assert case.timer(FR.value, T0 + 2 * H, now=T0 + 2 * H + timedelta(seconds=1)) == [
        TimerSet(FR, T0 + 2 * H + G)
    ]
    restarted = T0 + 5 * H  # fired after an outage: a grace from then
    assert case.timer(RES.value, T0 + 2 * H, now=restarted) == [TimerSet(RES, restarted + G)]
    assert one(case.timer(FR.value, T0 + 2 * H + G), SlaBreached).due_at == T0 + 2 * H
    assert case.complaint.breaches == {"complaint_first_response@0"}


def test_a_timer_after_its_deadline_was_met_or_moved_is_stale() -> None:
    case = Case()
    case.open("quality_issue")
    case.respond(at=T0 + H)
    assert case.timer(FR.value, T0 + 2 * H) == []  # cancelled: its row fired anyway
    assert case.timer(RES.value, T0 + 5 * H) == []  # another due time
    case.resolve("not_upheld", at=T0 + 3 * H)
    assert case.timer(RES.value, T0 + 24 * H) == []


def test_a_late_response_that_beat_its_timer_breaches_and_escalates_once() -> None:
    case = Case()
    case.open("quality_issue")
    events = case.respond(at=T0 + 2 * H + timedelta(minutes=1))
    assert one(events, SlaBreached).sla == Sla.FIRST_RESPONSE
    escalation = one(events, Escalated)
    assert (escalation.reason, escalation.priority, escalation.due_at) == (
        EscalationReason.FIRST_RESPONSE_OVERDUE,
        Priority.HIGH,
        T0 + 2 * H,
    )
    assert templates(events) == []  # the buyer has the answer
    assert case.complaint.priority == Priority.HIGH
    assert case.timer(FR.value, T0 + 2 * H) == []  # no second breach


def test_a_late_resolution_without_response_breaches_both_slas_once() -> None:
    case = Case()
    case.open("other")
    case.timer(FR.value, T0 + 2 * H + G)  # reported by the timer
    events = case.resolve("not_upheld", at=T0 + 3 * H)
    assert [b.sla for b in only(events, SlaBreached)] == [Sla.RESOLUTION]
    assert [(e.reason, e.priority) for e in only(events, Escalated)] == [
        (EscalationReason.RESOLUTION_OVERDUE, Priority.URGENT)
    ]


def test_a_late_resolution_before_its_timer_escalates_both_deadlines() -> None:
    case = Case()
    case.open("quality_issue")  # first response due at 2 h, resolution at 24 h
    events = case.resolve("not_upheld", at=T0 + 25 * H, now=T0 + 25 * H)
    assert [(e.reason, e.due_at) for e in only(events, Escalated)] == [
        (EscalationReason.FIRST_RESPONSE_OVERDUE, T0 + 2 * H),
        (EscalationReason.RESOLUTION_OVERDUE, T0 + 24 * H),
    ]
    assert case.complaint.priority == Priority.URGENT


def test_a_resolution_is_a_first_response() -> None:
    case = Case()
    case.open("quality_issue")
    events = case.resolve("not_upheld", at=T0 + 3 * H)
    assert [b.sla for b in only(events, SlaBreached)] == [Sla.FIRST_RESPONSE]


def test_a_repeated_or_older_resolution_has_no_effect() -> None:
    case = Case()
    case.open("wrong_item")
    assert coupons_in(case.resolve(at=T0 + H))
    assert case.resolve(at=T0 + H) == []
    assert case.resolve("not_upheld", at=T0 + H - timedelta(seconds=1)) == []
    assert case.complaint.resolution is not None
    assert case.complaint.resolution.outcome.value == "upheld"


def coupons_in(events) -> list[int]:
    return [e.value for e in only(events, CouponGranted)]


# --- out of order ---------------------------------------------------------------------------


def test_a_resolution_before_the_opening_is_applied_when_it_opens() -> None:
    case = Case()
    assert case.resolve("upheld", at=T0 + H) == []
    assert case.complaint.status == ComplaintStatus.NEW
    events = case.open("wrong_item", at=T0, now=T0 + 2 * H)
    assert coupons_in(events) == [1000]
    assert "complaint.acknowledged" not in templates(events)  # the buyer has the answer
    assert templates(events) == ["complaint.compensated"]
    assert not only(events, TimerSet)
    assert not only(events, SlaBreached)
    assert case.complaint.status == ComplaintStatus.RESOLVED


def test_a_late_resolution_before_the_opening_is_a_breach_and_an_escalation_on_opening() -> None:
    case = Case()
    case.resolve("not_upheld", at=T0 + 3 * H)
    events = case.open("wrong_item", at=T0, now=T0 + 4 * H)
    breaches = {b.sla: b for b in only(events, SlaBreached)}
    assert set(breaches) == {Sla.FIRST_RESPONSE, Sla.RESOLUTION}
    assert breaches[Sla.RESOLUTION].detected_at == T0 + 4 * H
    assert {e.reason for e in only(events, Escalated)} == {
        EscalationReason.FIRST_RESPONSE_OVERDUE,
        EscalationReason.RESOLUTION_OVERDUE,
    }
    assert templates(events) == []  # resolved before the buyer was even acknowledged


def test_a_response_before_the_opening_is_applied_when_it_opens() -> None:
    case = Case()
    assert case.respond(at=T0 + H) == []
    events = case.open("quality_issue", at=T0)
    assert templates(events) == ["complaint.acknowledged"]
    assert timers_set(events) == {RES: T0 + 24 * H + G}
    assert case.complaint.status == ComplaintStatus.RESPONDED


# --- reopening ------------------------------------------------------------------------------


def test_a_low_score_reopens_with_priority_and_a_new_resolution_timer() -> None:
    case = Case()
    case.open("quality_issue")
    case.resolve("not_upheld", at=T0 + H)
    reopened_at = T0 + 2 * DAY
    events = case.low_score("cb1", 2, now=reopened_at)
    assert case.complaint.status == ComplaintStatus.REOPENED
    assert case.complaint.round == 1
    assert case.complaint.priority == Priority.URGENT
    assert timers_set(events) == {RES: reopened_at + 24 * H + G}
    escalation = one(events, Escalated)
    assert escalation.reason == EscalationReason.LOW_SATISFACTION
    assert escalation.priority == Priority.URGENT
    assert escalation.due_at == reopened_at + 24 * H
    assert (escalation.score, escalation.callback_id, escalation.round) == (2, "cb1", 1)
    notice = one(events, Notify)
    assert notice.template == Template.REOPENED
    assert notice.params == {
        "complaint_id": "k1",
        "resolve_within_hours": 24,
        "resolve_by": (reopened_at + 24 * H).isoformat(),
    }
    assert case.low_score("cb1", 2, now=reopened_at + H) == []  # the same callback again


def test_a_reopened_complaint_breaches_again_in_its_new_round() -> None:
    case = Case()
    case.open("other")
    case.timer(RES.value, T0 + 2 * H + G)  # round 0 breach
    case.resolve("not_upheld", at=T0 + 3 * H)
    reopened_at = T0 + DAY
    case.low_score(now=reopened_at)
    events = case.timer(RES.value, reopened_at + 2 * H + G)
    breach = one(events, SlaBreached)
    assert (breach.sla, breach.round) == (Sla.RESOLUTION, 1)
    assert one(events, Escalated).priority == Priority.URGENT
    assert templates(events) == ["complaint.escalated"]  # a new round: told again


def test_a_reopened_complaint_is_resolved_again_and_old_resolutions_stay_old() -> None:
    case = Case()
    case.open("other")
    case.resolve("not_upheld", at=T0 + H)
    reopened_at = T0 + DAY
    case.low_score(now=reopened_at)
    stale = case.resolve("not_upheld", at=reopened_at - H)  # dated before the reopening
    assert stale == [] and case.complaint.status == ComplaintStatus.REOPENED
    events = case.resolve("not_upheld", at=reopened_at + H)
    assert case.complaint.status == ComplaintStatus.RESOLVED
    assert TimerCancelled(RES) in events
    assert not only(events, SlaBreached)


def test_a_low_score_before_the_resolution_waits_for_it() -> None:
    case = Case()
    case.open("other")
    assert case.low_score("cb1", 1, now=T0 + H) == []
    assert case.complaint.status == ComplaintStatus.OPEN
    events = case.resolve("not_upheld", at=T0 + 90 * timedelta(minutes=1))
    assert case.complaint.status == ComplaintStatus.REOPENED
    assert one(events, Escalated).reason == EscalationReason.LOW_SATISFACTION


def test_a_low_score_before_the_opening_applies_once_resolved() -> None:
    case = Case()
    case.resolve("not_upheld", at=T0 + H)
    case.low_score("cb1", 1, now=T0 + DAY)
    events = case.open("other", at=T0, now=T0 + DAY + H)
    assert case.complaint.status == ComplaintStatus.REOPENED
    assert templates(events) == ["complaint.reopened"]


def test_a_second_low_score_while_reopened_changes_nothing() -> None:
    case = Case()
    case.open("other")
    case.resolve("not_upheld", at=T0 + H)
    case.low_score("cb1", now=T0 + DAY)
    assert case.low_score("cb2", now=T0 + DAY + H) == []
    assert case.complaint.round == 1


def test_responses_to_a_resolved_case_change_nothing() -> None:
    case = Case()
    case.open("other")
    case.resolve("not_upheld", at=T0 + H)
    assert case.respond(at=T0 + 2 * H) == []
    case.low_score(now=T0 + DAY)
    assert case.respond(at=T0 + DAY + H) == []


# --- persistence ----------------------------------------------------------------------------


def test_a_complaint_round_trips_through_json_at_every_step() -> None:
    case = Case()
    steps = [
        lambda: case.open("quality_issue"),
        lambda: case.timer(FR.value, T0 + 2 * H),
        lambda: case.resolve("upheld", at=T0 + 3 * H),
        lambda: case.low_score("cb1", 1, now=T0 + DAY),
        lambda: case.timer(RES.value, T0 + 2 * DAY),
    ]
    for step in steps:
        step()
        document = json.loads(json.dumps(case.complaint.to_dict()))
        assert Complaint.from_dict(document) == case.complaint
    assert case.complaint.compensation is not None


def test_a_new_complaint_round_trips() -> None:
    complaint = Complaint.new("k9", "o9")
    assert Complaint.from_dict(json.loads(json.dumps(complaint.to_dict()))) == complaint


def test_opening_needs_aware_instants() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Case().open("other", at=T0.replace(tzinfo=None), now=T0)
    assert POLICY.first_response_hours == 2


# --- learnt of after its deadlines ----------------------------------------------------------


def test_deadlines_already_past_are_checked_after_a_grace() -> None:
    case = Case()
    now = T0 + 3 * H  # the service learns of the complaint an hour after both deadlines
    events = case.open("other", at=T0, now=now)
    assert timers_set(events) == {FR: now + CATCH_UP_GRACE, RES: now + CATCH_UP_GRACE}
    fired = case.timer(FR.value, now + CATCH_UP_GRACE)
    breach = one(fired, SlaBreached)
    assert breach.due_at == T0 + 2 * H  # the SLA's deadline, not the timer's
    assert one(fired, Escalated).due_at == T0 + 2 * H


def test_a_response_in_time_that_follows_a_late_opening_is_no_breach() -> None:
    case = Case()
    now = T0 + 3 * H
    case.open("quality_issue", at=T0, now=now)
    events = case.respond(at=T0 + H, now=now + timedelta(seconds=1))  # right behind it
    assert events == [TimerCancelled(FR)]
    assert case.timer(FR.value, now + CATCH_UP_GRACE) == []
