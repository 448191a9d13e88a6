"""Which refund.issued the notifier tells: each refund once, by one notice."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from services.notifier.domain.refunds import told_by_its_case
from services.notifier.rendering import Renderer
from shared.contracts.ids import refund_id, reissue_refund_id


def test_a_complaint_s_own_refund_is_told_by_its_compensation_notice():
    assert told_by_its_case("complaint", "k1", refund_id("complaint", "k1"))


def test_a_re_issue_of_a_complaint_refund_is_told_by_the_notifier():
    reissue = reissue_refund_id(refund_id("complaint", "k1"), "alipay")
    assert not told_by_its_case("complaint", "k1", reissue)


def test_late_shipment_penalties_are_told_by_their_apology_and_re_issues_by_the_notifier():
    penalty = refund_id("late_shipment", "o1")
    assert told_by_its_case("late_shipment", "o1", penalty)
    assert not told_by_its_case("late_shipment", "o1", reissue_refund_id(penalty, "alipay"))


def test_return_refunds_are_told_by_the_notifier():
    assert not told_by_its_case("return", "r1", refund_id("return", "r1"))
    assert not told_by_its_case("return", "r1", refund_id("return", "r1", "return_shipping"))


def test_the_compensation_notice_states_the_amount_issued_in_each_language():
    renderer = Renderer(ZoneInfo("Asia/Shanghai"))
    params = {"complaint_id": "K1", "currency": "CNY", "refund_amount": 30500, "coupon_value": 500}
    en = renderer.render("complaint.compensated", params, ("en",)).body
    zh = renderer.render("complaint.compensated", params, ("zh-CN",)).body
    assert "We have refunded CNY 305.00 to your original payment method(s).\n" in en
    assert "separate message" not in en
    assert "我们已为您退款¥305.00" in zh and "以退款通知为准" not in zh
    cut = renderer.render(
        "complaint.compensated", {**params, "refund_already_refunded": 1}, ("en",)
    ).body
    assert "already been refunded with an earlier refund" in cut
