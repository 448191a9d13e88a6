"""`aftersales send` checks what it is given before sending anything: events the services
themselves publish (a refund finance pays, a refund request the ledger pays, a decision) are
never sent by hand: they would bypass the ledger and its cap."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from aftersales import send
from aftersales_dev.events import refund_issued
from shared.contracts import parse_event, topics
from shared.contracts.events import OUTPUTS, service_source
from tests.e2e.test_send import survey_answer
from tests.refund_events import refund_requested

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def encoded(event: dict) -> bytes:
    return json.dumps(event).encode()


def test_a_refund_issued_is_refused_finance_would_pay_it_past_the_ledger() -> None:
    issued = refund_issued(
        "rf-1", "O-1", "C-1", ("return", "R-1"), at=NOW, breakdown=[("goods", 9900)]
    )
    parse_event(encoded(issued), topic=topics.REFUNDS)  # a valid one, as the ledger's
    with pytest.raises(send.SendRefused) as refused:
        send.check(encoded(issued), origin="stdin")
    assert "refund.issued" in str(refused.value)
    assert str(refused.value).endswith("nothing was sent")


def test_a_refund_request_in_a_services_name_is_refused() -> None:
    requested = refund_requested("O-2", "complaint", "K-2", [("compensation", 500)], NOW, NOW)
    requested["source"] = service_source("complaints")
    parse_event(encoded(requested), topic=topics.REFUND_REQUESTS)  # a valid one
    with pytest.raises(send.SendRefused) as refused:
        send.check(encoded(requested), origin="stdin")
    assert "refund.requested" in str(refused.value)


@pytest.mark.parametrize("event_type", sorted(OUTPUTS))
def test_no_type_the_services_publish_is_sent(event_type: str) -> None:
    with pytest.raises(send.SendRefused):
        send.topic_of(event_type)


def test_a_platform_event_is_still_sent_to_its_topic() -> None:
    answered = survey_answer("C-3")
    [outgoing] = send.check(encoded(answered), origin="stdin")
    assert outgoing.topic == topics.SURVEYS and outgoing.key == "C-3"
