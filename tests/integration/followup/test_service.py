"""The follow-up service on the real database with a ManualClock: what closes a case, one
callback per case, coalescing, the due time, late and duplicate events, restarts, answers."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from services.followup import tables
from shared.contracts import ids

T0 = datetime.fromisoformat("2024-05-01T10:00:00+08:00")
H = timedelta(hours=1)


def cb_id(case_type: str, case_id: str) -> str:
    return ids.callback_id(case_type, case_id)


async def types(service, event_type=None):
    return [e["type"] for e in await service.emitted(event_type)]


async def test_a_resolved_complaint_gets_one_callback_at_close_plus_24h(service) -> None:
    ev = service.ev
    await service.send(
        ev.order_paid("o-1", "shop-a", "c-1"),
        ev.complaint_opened("k-1", "o-1", "c-1", T0 - 5 * H),
        ev.complaint_resolved("k-1", "o-1", T0),
    )
    [scheduled] = await service.emitted("callback.scheduled")
    cid = cb_id("complaint", "k-1")
    assert scheduled["_topic"] == "aftersales.followups" and scheduled["_key"] == "c-1"
    assert scheduled["data"]["callback_id"] == cid
    assert scheduled["data"]["customer_id"] == "c-1"
    assert scheduled["data"]["cases"] == [{"type": "complaint", "id": "k-1"}]
    assert datetime.fromisoformat(scheduled["data"]["due_at"]) == T0 + 24 * H
    assert datetime.fromisoformat(scheduled["data"]["deadline"]) == T0 + 72 * H
    assert scheduled["correlationid"] == "k-1"

    assert await service.at(T0 + 24 * H - timedelta(seconds=1)) == 0
    assert await types(service, "callback.sent") == []
    assert await service.at(T0 + 24 * H) == 1
    [notification] = await service.emitted("notification.requested")
    assert notification["_topic"] == "aftersales.notifications" and notification["_key"] == "c-1"
    data = notification["data"]
    assert data["template"] == "survey.invitation" and data["urgent"] is False
    assert data["params"]["callback_id"] == cid
    assert data["params"]["cases"] == "complaint:k-1"
    assert datetime.fromisoformat(data["params"]["deadline"]) == T0 + 72 * H
    assert datetime.fromisoformat(data["params"]["answer_by"]) == T0 + 24 * H + 7 * 24 * H
    assert data["order_id"] == "o-1" and data["case"] == {"type": "complaint", "id": "k-1"}
    [sent] = await service.emitted("callback.sent")
    assert sent["_key"] == "c-1" and sent["data"]["cases"] == [{"type": "complaint", "id": "k-1"}]

    # the buyer answers 2: recorded, and low (the complaints service reopens the case)
    await service.send(ev.survey_answered(cid, "c-1", 2, T0 + 30 * H, comment="很差 13812345678"))
    [recorded] = await service.emitted("satisfaction.recorded")
    [low] = await service.emitted("satisfaction.low")
    for event in (recorded, low):
        assert event["_topic"] == "aftersales.followups" and event["_key"] == "c-1"
        assert event["data"]["score"] == 2 and event["data"]["callback_id"] == cid
    [row] = await service.rows(tables.callbacks)
    assert (row["status"], row["score"]) == ("sent", 2)
    assert row["state"]["comment"] == "很差 13812345678"  # kept in the database only
    assert await service.at(T0 + 100 * H) == 0  # nothing more: one callback, no reminders


async def test_a_high_score_is_not_low(service) -> None:
    ev = service.ev
    await service.send(ev.refund_issued("r-1", "o-1", "c-1", T0))
    await service.at(T0 + 24 * H)
    await service.send(ev.survey_answered(cb_id("return", "r-1"), "c-1", 3, T0 + 25 * H))
    assert await types(service, "satisfaction.recorded") == ["satisfaction.recorded"]
    assert await types(service, "satisfaction.low") == []


async def test_refund_and_completion_of_one_return_and_redeliveries_are_one_case(service) -> None:
    ev = service.ev
    refund = ev.refund_issued("r-1", "o-1", "c-1", T0)
    await service.send(refund, refund)  # the same event twice in one batch
    await service.send(ev.return_completed("r-1", "o-1", "c-1", T0))
    await service.send(refund)  # and again later
    service.clock.set(T0 + 2 * H)
    await service.send(ev.refund_issued("r-1", "o-1", "c-1", T0))  # re-sent with a new id
    assert await types(service) == ["callback.scheduled"]
    assert len(await service.rows(tables.cases)) == 1
    await service.at(T0 + 24 * H)
    await service.at(T0 + 48 * H)
    assert await types(service, "callback.sent") == ["callback.sent"]
    assert await types(service, "notification.requested") == ["notification.requested"]


async def test_an_exchange_closes_with_its_reshipment(service) -> None:
    ev = service.ev
    await service.send(ev.reshipment_requested("r-2", "o-2", "c-2", T0))
    await service.send(ev.return_completed("r-2", "o-2", "c-2", T0, kind="exchange"))
    [scheduled] = await service.emitted("callback.scheduled")
    assert scheduled["data"]["cases"] == [{"type": "return", "id": "r-2"}]


async def test_cases_without_a_service_to_rate_get_no_callback(service) -> None:
    ev = service.ev
    await service.send(
        ev.return_completed("r-1", "o-1", "c-1", T0, rule="cancelled"),
        ev.refund_issued("o-1", "o-1", "c-1", T0, case_type="late_shipment"),
        ev.refund_issued("k-9", "o-1", "c-1", T0, case_type="complaint"),
        ev.complaint_opened("k-2", "o-1", "c-1", T0 - H),
        ev.complaint_resolved("k-2", "o-1", T0, outcome="withdrawn"),
    )
    await service.at(T0 + 80 * H)
    assert await service.emitted() == []
    assert await service.rows(tables.callbacks) == []


async def test_a_buyers_cases_closing_within_one_window_get_one_callback(service) -> None:
    ev = service.ev
    await service.send(ev.refund_issued("r-1", "o-1", "c-1", T0))
    service.clock.set(T0 + 3 * H)
    await service.send(
        ev.complaint_opened("k-1", "o-2", "c-1", T0 - 10 * H),
        ev.complaint_resolved("k-1", "o-2", T0 + 3 * H),
        ev.refund_issued("r-9", "o-9", "c-other", T0 + 3 * H),  # another buyer: own callback
    )
    cid = cb_id("return", "r-1")
    plans = [e["data"] for e in await service.emitted("callback.scheduled")]
    assert [(p["callback_id"], len(p["cases"])) for p in plans] == [
        (cid, 1),
        (cid, 2),
        (cb_id("return", "r-9"), 1),
    ]
    assert datetime.fromisoformat(plans[1]["due_at"]) == T0 + 27 * H
    assert datetime.fromisoformat(plans[1]["deadline"]) == T0 + 72 * H  # the earliest
    assert await service.at(T0 + 24 * H) == 0  # r-1 alone would have been due: it waits
    assert await service.at(T0 + 27 * H) == 2
    sent = {e["data"]["callback_id"]: e["data"] for e in await service.emitted("callback.sent")}
    assert sent[cid]["cases"] == [
        {"type": "return", "id": "r-1"},
        {"type": "complaint", "id": "k-1"},
    ]
    notes = await service.emitted("notification.requested")
    mine = [n["data"] for n in notes if n["data"]["customer_id"] == "c-1"]
    assert len(mine) == 1 and mine[0]["params"]["cases"] == "return:r-1,complaint:k-1"
    assert mine[0]["params"]["case_count"] == 2 and mine[0]["case"] is None


async def test_a_close_event_arriving_too_late_is_reported_not_sent(service) -> None:
    ev = service.ev
    service.clock.set(T0 + 80 * H)
    await service.send(ev.refund_issued("r-1", "o-1", "c-1", T0))
    [breach] = await service.emitted("sla.breached")
    assert breach["_topic"] == "aftersales.sla" and breach["_key"] == "o-1"
    assert breach["data"]["case"] == {"type": "return", "id": "r-1"}
    assert breach["data"]["sla"] == "callback"
    assert datetime.fromisoformat(breach["data"]["due_at"]) == T0 + 72 * H
    assert datetime.fromisoformat(breach["data"]["detected_at"]) == T0 + 80 * H
    assert await types(service) == ["sla.breached"]
    await service.send(ev.return_completed("r-1", "o-1", "c-1", T0))  # still one case
    assert await types(service) == ["sla.breached"]


async def test_a_service_down_past_the_deadline_reports_instead_of_sending(service) -> None:
    ev = service.ev
    await service.send(ev.refund_issued("r-1", "o-1", "c-1", T0))
    service.restart()  # stopped, and back only after the deadline
    assert await service.at(T0 + 73 * H) == 1
    assert await types(service) == ["callback.scheduled", "sla.breached"]
    [row] = await service.rows(tables.callbacks)
    assert row["status"] == "missed"


async def test_a_timer_late_into_quiet_hours_waits_for_the_morning(service) -> None:
    ev = service.ev
    await service.send(ev.refund_issued("r-1", "o-1", "c-1", T0))  # due 05-02 10:00 local
    night = datetime.fromisoformat("2024-05-02T22:00:00+08:00")  # the service was down
    service.restart()
    assert await service.at(night) == 1
    assert await types(service, "callback.sent") == []
    morning = datetime.fromisoformat("2024-05-03T09:00:00+08:00")
    [timer] = await service.rows(tables.messaging.timers)
    assert timer["due_at"] == morning and timer["fired_at"] is None  # re-armed, not lost
    assert await service.at(morning - timedelta(seconds=1)) == 0
    assert await service.at(morning) == 1
    [sent] = await service.emitted("callback.sent")
    assert datetime.fromisoformat(sent["data"]["due_at"]) == morning


async def test_a_restart_with_callbacks_due_loses_none_and_sends_none_twice(service) -> None:
    ev = service.ev
    await service.send(
        ev.refund_issued("r-1", "o-1", "c-1", T0),
        ev.refund_issued("r-2", "o-2", "c-2", T0 + H),
    )
    service.restart()
    assert await service.at(T0 + 30 * H) == 2
    service.restart()
    assert await service.at(T0 + 40 * H) == 0
    sent = [e["data"]["callback_id"] for e in await service.emitted("callback.sent")]
    assert sorted(sent) == sorted([cb_id("return", "r-1"), cb_id("return", "r-2")])


async def test_a_resolution_seen_before_its_complaint_waits_for_the_buyer(service) -> None:
    ev = service.ev
    await service.send(ev.complaint_resolved("k-1", "o-1", T0))
    assert await service.emitted() == []
    service.clock.set(T0 + 2 * H)
    await service.send(ev.complaint_opened("k-1", "o-1", "c-1", T0 - 5 * H))
    [scheduled] = await service.emitted("callback.scheduled")
    assert datetime.fromisoformat(scheduled["data"]["due_at"]) == T0 + 24 * H  # from resolved_at


async def test_of_several_resolutions_before_the_opening_the_latest_counts(service) -> None:
    """Withdrawn, then corrected to upheld, both before the opening: the callback follows the
    correction; and the other way round no callback is scheduled."""
    ev = service.ev
    await service.send(
        ev.complaint_resolved("k-1", "o-1", T0, outcome="withdrawn"),
        ev.complaint_resolved("k-1", "o-1", T0 + H, outcome="upheld"),
        ev.complaint_resolved("k-1", "o-1", T0 - H, outcome="withdrawn"),  # older: stale
        ev.complaint_resolved("k-2", "o-2", T0, outcome="upheld"),
        ev.complaint_resolved("k-2", "o-2", T0 + H, outcome="withdrawn"),
    )
    service.clock.set(T0 + 2 * H)
    await service.send(
        ev.complaint_opened("k-1", "o-1", "c-1", T0 - 5 * H),
        ev.complaint_opened("k-2", "o-2", "c-2", T0 - 5 * H),
    )
    [scheduled] = await service.emitted("callback.scheduled")
    assert scheduled["data"]["cases"] == [{"type": "complaint", "id": "k-1"}]
    assert datetime.fromisoformat(scheduled["data"]["due_at"]) == T0 + 25 * H  # the latest


async def test_survey_answers_good_and_bad(service, caplog) -> None:
    ev = service.ev
    await service.send(ev.refund_issued("r-1", "o-1", "c-1", T0))
    cid = cb_id("return", "r-1")
    secret = "差评 private remark"
    caplog.set_level(logging.DEBUG)
    await service.send(ev.survey_answered(cid, "c-1", 4, T0 + H, comment=secret))  # not sent yet
    await service.at(T0 + 24 * H)
    await service.send(
        ev.survey_answered("cb-nope", "c-1", 5, T0 + 25 * H),
        ev.survey_answered(cid, "c-2", 5, T0 + 25 * H),  # another buyer
        ev.survey_answered(cid, "c-1", 6, T0 + 25 * H),  # out of range: invalid
        ev.survey_answered(cid, "c-1", 4, T0 + 24 * H + 8 * 24 * H),  # after 7 days
        ev.survey_answered(cid, "c-1", 5, T0 + 26 * H, comment=secret),  # good
        ev.survey_answered(cid, "c-1", 1, T0 + 27 * H),  # a second answer
    )
    reasons = [letter["reason"] for letter in await service.dead_letters()]
    assert reasons == [
        "callback_not_sent",
        "unknown_callback",
        "customer_mismatch",
        "invalid_data",
        "survey_expired",
        "already_answered",
    ]
    for letter in await service.dead_letters():
        assert letter["detail"] and secret not in letter["detail"]
    [recorded] = await service.emitted("satisfaction.recorded")
    assert recorded["data"]["score"] == 5
    assert await types(service, "satisfaction.low") == []
    assert all(secret not in record.getMessage() for record in caplog.records)
    assert all(secret not in str(vars(record)) for record in caplog.records)


async def test_lock_keys_are_the_buyer(service) -> None:
    import json

    from services.followup.handlers import lock_keys
    from shared.contracts import parse_event

    ev = service.ev
    keyed = {
        "order.paid": ev.order_paid("o-1", "shop-a", "c-1"),
        "refund.issued": ev.refund_issued("r-1", "o-1", "c-1", T0),
        "return.completed": ev.return_completed("r-1", "o-1", "c-1", T0),
        "reshipment.requested": ev.reshipment_requested("r-1", "o-1", "c-1", T0),
        "complaint.opened": ev.complaint_opened("k-1", "o-1", "c-1", T0),
        "survey.answered": ev.survey_answered("cb-1", "c-1", 3, T0),
    }
    for event in keyed.values():
        assert lock_keys(parse_event(json.dumps(event).encode())) == ["c-1"]
    # complaint.resolved does not name the buyer: its order, then the buyer in the handler
    resolved = parse_event(json.dumps(ev.complaint_resolved("k-1", "o-1", T0)).encode())
    assert lock_keys(resolved) == ["o-1"]


async def test_metrics_count_a_callback_and_its_answer_once_not_their_replays(service) -> None:
    import uuid

    from prometheus_client import REGISTRY

    from services.followup.domain.events import (
        CallbackSent,
        CaseMissed,
        DomainEvent,
        SatisfactionRecorded,
    )
    from services.followup.handlers import FollowupHandlers
    from services.followup.repository import FollowupRepository
    from shared.db import UnitOfWork, session_factory
    from shared.messaging.context import HandlerContext

    shop = f"shop-{uuid.uuid4().hex[:8]}"  # the counters are the process's: a shop of its own
    ev = service.ev
    await service.send(ev.order_paid("o-1", shop, "c-1"), ev.refund_issued("r-1", "o-1", "c-1", T0))
    await service.at(T0 + 24 * H)
    cid = cb_id("return", "r-1")

    def counted() -> list[float]:
        samples = [
            ("aftersales_followup_callbacks_sent_total", {"shop": shop}),
            ("aftersales_followup_cases_due_total", {"shop": shop}),
            ("aftersales_followup_cases_on_time_total", {"shop": shop}),
            ("aftersales_followup_answers_total", {"shop": shop, "score": "5"}),
        ]
        return [REGISTRY.get_sample_value(name, labels) or 0.0 for name, labels in samples]

    def breaches() -> float:
        labels = {"service": "followup", "sla": "callback"}
        return REGISTRY.get_sample_value("aftersales_sla_breaches_total", labels) or 0.0

    # Requested: the case falls due with the notifier's status.
    assert counted() == [1, 0, 0, 0]
    await service.send(ev.survey_delivered(cid, "c-1", T0 + 24 * H))
    await service.send(ev.survey_delivered(cid, "c-1", T0 + 24 * H))  # again, another id
    await service.send(ev.survey_answered(cid, "c-1", 5, T0 + 25 * H))
    assert counted() == [1, 1, 1, 1]
    delivered = REGISTRY.get_sample_value(
        "aftersales_followup_callbacks_delivered_total", {"shop": shop}
    )
    assert delivered == 1
    handlers = FollowupHandlers(service.policy)

    async def publish_again() -> None:
        async with UnitOfWork(session_factory(service.engine)) as uow:
            ctx = HandlerContext(
                uow=uow, tables=tables.messaging, service="followup", now=T0, cause_id="x"
            )
            repo = FollowupRepository(uow.session)
            callback = await repo.callback(cid)
            assert callback is not None
            keys = tuple(case.key for case in callback.cases)
            due, deadline = callback.due_at, callback.deadline
            assert due is not None and deadline is not None
            events: list[DomainEvent] = [
                CallbackSent(keys, due, deadline, due, due + 7 * 24 * H),
                SatisfactionRecorded(keys, 5, False, T0 + 25 * H),
                CaseMissed(keys[0], "o-1", deadline, deadline),
            ]
            await handlers._store(repo, ctx, callback, events)
            uow.after_commit(*ctx.on_commit)  # as the consumer does
            await uow.commit()

    before = breaches()
    await publish_again()  # the miss is new here; the invitation and the answer are replays
    assert counted() == [1, 2, 1, 1]  # a missed case is due too
    assert breaches() == before + 1
    await publish_again()
    assert counted() == [1, 2, 1, 1] and breaches() == before + 1


async def test_a_survey_the_notifier_could_not_deliver_is_a_breach_once(service) -> None:
    """The invitation was requested in time, but the notifier gave it up (quiet hours and the
    daily cap pushed it past its deadline): no callback reached the buyer within 72 hours."""
    ev = service.ev
    await service.send(ev.refund_issued("r-1", "o-1", "c-1", T0))
    await service.at(T0 + 24 * H)
    cid = cb_id("return", "r-1")
    assert await types(service, "callback.sent") == ["callback.sent"]
    assert await types(service, "sla.breached") == []

    service.clock.set(T0 + 72 * H + 5 * H)
    failed = ev.survey_failed(cid, "c-1", T0 + 72 * H, order_id="o-1")
    await service.send(failed, failed)
    [breach] = await service.emitted("sla.breached")
    assert breach["_topic"] == "aftersales.sla" and breach["_key"] == "o-1"
    assert breach["data"]["case"] == {"type": "return", "id": "r-1"}
    assert breach["data"]["sla"] == "callback"
    assert datetime.fromisoformat(breach["data"]["due_at"]) == T0 + 72 * H
    assert datetime.fromisoformat(breach["data"]["detected_at"]) == T0 + 77 * H
    [row] = await service.rows(tables.callbacks)
    assert (row["status"], row["delivery"]) == ("sent", "failed")
    assert row["state"]["delivery_failure"] == "expired"
    [case] = await service.rows(tables.cases)
    assert case["outcome"] == "undelivered"

    # Repeated or contradicting statuses (new event ids) have no second effect.
    await service.send(
        ev.survey_failed(cid, "c-1", T0 + 73 * H, reason="retries_exhausted", order_id="o-1"),
        ev.survey_delivered(cid, "c-1", T0 + 25 * H, order_id="o-1"),
    )
    assert await types(service, "sla.breached") == ["sla.breached"]
    [row] = await service.rows(tables.callbacks)
    assert row["delivery"] == "failed"


async def test_a_delivered_survey_makes_its_cases_on_time(service) -> None:
    ev = service.ev
    await service.send(ev.refund_issued("r-1", "o-1", "c-1", T0))
    await service.at(T0 + 24 * H)
    cid = cb_id("return", "r-1")
    [case] = await service.rows(tables.cases)
    assert case["outcome"] == "sent"  # requested: not yet known to have reached the buyer
    await service.send(ev.survey_delivered(cid, "c-1", T0 + 24 * H + timedelta(minutes=30)))
    [case] = await service.rows(tables.cases)
    assert case["outcome"] == "delivered"
    [row] = await service.rows(tables.callbacks)
    assert row["delivery"] == "delivered"
    # A failure reported afterwards (a different event id) changes nothing.
    await service.send(ev.survey_failed(cid, "c-1", T0 + 26 * H, reason="retries_exhausted"))
    assert await types(service, "sla.breached") == []
    [case] = await service.rows(tables.cases)
    assert case["outcome"] == "delivered"


async def test_statuses_of_other_notifications_and_unknown_callbacks_are_ignored(service) -> None:
    ev = service.ev
    await service.send(ev.refund_issued("r-1", "o-1", "c-1", T0))
    await service.at(T0 + 24 * H)
    cid = cb_id("return", "r-1")
    before = await service.emitted()
    await service.send(
        # another template with the survey's request id, another service's request
        ev.survey_failed(cid, "c-1", T0 + 25 * H, template="complaint.acknowledged"),
        ev.survey_failed(cid, "c-1", T0 + 25 * H, request_id="ack-k-1"),
        # a survey of a callback this service does not know, and one sent to another buyer
        ev.survey_failed("cb-unknown", "c-1", T0 + 25 * H),
        ev.survey_failed(cid, "c-2", T0 + 25 * H),
        ev.survey_delivered("cb-unknown", "c-9", T0 + 25 * H),
    )
    assert await service.emitted() == before  # no breach, no dead letter
    [row] = await service.rows(tables.callbacks)
    assert row["delivery"] == "awaiting"
    # and the partition goes on: the real status is still taken
    await service.send(ev.survey_failed(cid, "c-1", T0 + 72 * H))
    assert await types(service, "sla.breached") == ["sla.breached"]


async def test_the_service_reads_the_notifiers_statuses() -> None:
    from services.followup.bootstrap import build
    from shared.clock import SystemClock
    from shared.contracts import topics
    from shared.policy import Policy

    definition = build(Policy(), SystemClock())
    assert topics.NOTIFICATION_STATUS in definition.topics
    assert {"notification.sent", "notification.failed"} <= set(definition.handlers)
