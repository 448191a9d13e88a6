"""Customer-facing messages: one for every status and rule, explaining and offering a way on."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from services.returns.domain.messages import compose
from services.returns.domain.model import ReturnRequest
from services.returns.domain.order_returns import OrderLedger, OrderReturns
from services.returns.domain.vocabulary import Payer, ReturnKind, ReturnStatus, Rule
from services.returns.domain.wording import MessageFacts, money

from . import SIGNED, SOON, Case, at, decided, line, order, policy

CJK = re.compile(r"[\u4e00-\u9fff]")
RICH = MessageFacts(
    lines=("Blue T-shirt",),
    other_lines=True,
    categories=("fresh_perishable",),
    conditions=("seal_broken",),
    window_deadline=at("2026-03-10T00:00:00+08:00"),
    quality_deadline=at("2026-03-18T00:00:00+08:00"),
    wait_until=at("2026-03-05T10:00:00+08:00"),
    wait_hours=72,
    amount=12345,
    payer=Payer.MERCHANT,
    return_shipping_cap=3000,
)


@pytest.mark.parametrize("status", list(ReturnStatus))
@pytest.mark.parametrize("rule", list(Rule))
@pytest.mark.parametrize("kind", list(ReturnKind))
def test_every_status_and_rule_has_a_polite_message(status, rule, kind):
    for facts in (MessageFacts(kind=kind), RICH, replace(RICH, other_buyer=True)):
        text = compose(status, rule, facts)
        assert CJK.search(text.zh), text.zh
        assert not CJK.search(text.en), text.en
        assert "None" not in text.zh + text.en
        assert not re.search(r"「」|，，|，。|属于，|（）|申请中，因此", text.zh), text.zh
        assert not re.search(r"  | ,| \.|\(\)|\bon \(", text.en), text.en
        assert "您好" in text.zh and "Hello" in text.en


def test_window_expired_names_the_last_day_and_the_quality_route():
    event = decided(
        Case(order(signed_at=SIGNED)).submit(requested_at=at("2026-03-10T00:00:00+08:00"))
    )
    assert "7天无理由退货期限" in event.message and "2026年3月9日" in event.message
    assert "9 March 2026" in event.message_en and "Beijing time" in event.message_en
    assert "2026年3月17日" in event.message and "质量问题" in event.message
    assert "17 March 2026" in event.message_en and "quality issue" in event.message_en


def test_window_expired_in_another_zone_names_the_local_date_and_zone():
    case = Case(order(signed_at=at("2026-03-01T04:30:00Z")), policy(timezone="America/New_York"))
    event = decided(case.submit(requested_at=at("2026-03-08T05:00:00Z")))
    assert "7 March 2026 (America/New_York local time)" in event.message_en
    assert "2026年3月7日" in event.message


def test_excluded_category_names_the_statutory_category_and_the_line():
    the_order = order(line("l1", category="fresh_perishable", title="Lychee box"), line("l2"))
    event = decided(Case(the_order).submit(lines={"l1": 1, "l2": 1}))
    assert "鲜活易腐" in event.message and "「Lychee box」" in event.message
    assert "perishable" in event.message_en and '"Lychee box"' in event.message_en
    assert "消费者权益保护法" in event.message


def test_single_line_refusal_does_not_talk_about_other_lines():
    event = decided(Case(order(line(category="periodical"))).submit())
    assert "单独" not in event.message and "on their own" not in event.message_en


def test_not_intact_names_the_conditions():
    event = decided(Case(order()).submit(condition=["tags_removed", "activated", "trial_use"]))
    assert "吊牌已剪除、商品已激活" in event.message
    assert "the tags have been removed and the item has been activated" in event.message_en


def test_waits_say_until_when_and_what_to_do():
    unknown = decided(Case(None).submit(requested_at=at("2026-03-03T10:00:00+08:00")))
    assert "2026年3月5日 10:00" in unknown.message and "order number" in unknown.message_en
    undelivered = decided(Case(order(signed_at=None)).submit())
    assert "签收" in undelivered.message and "delivery" in undelivered.message_en
    evidence = decided(Case(order()).submit(reason="quality_issue"))
    assert "照片" in evidence.message and "72" in evidence.message_en
    review = decided(
        Case(order()).submit(reason="quality_issue", requested_at=at("2026-03-20T10:00:00+08:00"))
    )
    assert "人工审核" in review.message and "2026年3月21日 13:00" in review.message


def test_approval_explains_who_pays_the_freight_and_the_estimate():
    buyer = decided(Case(order(line(paid=12345))).submit())
    assert "预计退款¥123.45" in buyer.message  # labelled as an estimate
    assert "estimated refund is CNY 123.45" in buyer.message_en
    assert "由您承担" in buyer.message
    insured = decided(Case(order(insurance=True)).submit())
    assert "运费险" in insured.message and "insurer" in insured.message_en
    merchant = decided(Case(order()).submit(reason="quality_issue", evidence=["u"]))
    assert "商家承担" in merchant.message and "¥30.00" in merchant.message


def test_completion_and_cancellation_messages():
    case = Case(order(line(paid=12345)))
    case.submit()
    done = decided(case.sign(SOON + timedelta(days=1)))
    assert done.status == ReturnStatus.COMPLETED
    # The refund ledger may cut the amount: the refund notice states what it issued.
    assert "123.45" not in done.message + done.message_en
    assert "退款通知" in done.message and "separate message confirms" in done.message_en
    freight = Case(order(line(paid=12345)))
    freight.submit(kind="exchange", reason="quality_issue", evidence=["u"])
    freight.ship(1200)
    exchanged = decided(freight.sign(SOON + timedelta(days=1)))
    assert "运费" in exchanged.message and "return freight" in exchanged.message_en
    assert "12.00" not in exchanged.message + exchanged.message_en
    nothing = Case(order(line(paid=0)))
    nothing.submit()
    nothing_due = decided(nothing.sign(SOON + timedelta(days=1)))
    assert "no amount is due back" in nothing_due.message_en
    cancelled = decided(Case(order()).cancel(SOON))
    assert "撤销" in cancelled.message and "cancelled" in cancelled.message_en


def test_messages_carry_no_personal_data():
    request = ReturnRequest.new("r1", "o1")
    events = request.submit(
        customer_id="buyer-8f3a9",
        kind="refund",
        reason="quality_issue",
        lines={"l1": 1},
        condition=[],
        evidence_urls=[],
        requested_at=SOON,
        returns=OrderReturns(order(), OrderLedger("o1")),
        policy=policy(),
        now=SOON,
    )
    text = decided(events).message + decided(events).message_en
    assert "buyer-8f3a9" not in text and "o1" not in text


@pytest.mark.parametrize(
    ("amount", "currency", "zh", "en"),
    [
        (12345, "CNY", "¥123.45", "CNY 123.45"),
        (5, "CNY", "¥0.05", "CNY 0.05"),
        (-800, "CNY", "-¥8.00", "-CNY 8.00"),
        (1200, "JPY", "1200 JPY", "JPY 1200"),
        (1999, "USD", "19.99 USD", "USD 19.99"),
        (12345, "KWD", "12.345 KWD", "KWD 12.345"),  # ISO 4217: 3 digits
        (12345, "CLP", "12345 CLP", "CLP 12345"),  # no minor unit
        (12345, "IQD", "12.345 IQD", "IQD 12.345"),  # ISO's 3 digits, not CLDR's 0
    ],
)
def test_money_formatting_uses_integers(amount, currency, zh, en):
    assert money(amount, currency) == (zh, en)


def test_a_decision_message_shows_the_order_currency_digits():
    kwd = MessageFacts(kind=ReturnKind.REFUND, currency="KWD", amount=12345)
    text = compose(ReturnStatus.APPROVED, Rule.ELIGIBLE, kwd)  # the estimate states it
    assert "12.345 KWD" in text.zh and "KWD 12.345" in text.en
    assert "123.45" not in text.zh + text.en


def test_zone_label_for_shanghai_is_beijing_time():
    facts = MessageFacts(
        wait_until=at("2026-03-05T02:00:00Z"), wait_hours=48, zone=ZoneInfo("Asia/Shanghai")
    )
    text = compose(ReturnStatus.PENDING, Rule.NOT_DELIVERED, facts)
    assert "2026年3月5日 10:00（北京时间）" in text.zh


@pytest.mark.parametrize(
    ("titles", "verb"), [(("Fresh mooncakes",), "belongs to"), (("Mooncakes", "Milk"), "belong to")]
)
def test_excluded_category_message_agrees_with_the_number_of_lines(titles, verb):
    facts = MessageFacts(kind=ReturnKind.REFUND, lines=titles, categories=("fresh_perishable",))
    text = compose(ReturnStatus.REJECTED, Rule.EXCLUDED_CATEGORY, facts)
    assert verb in text.en
    assert "(s)" not in text.en
