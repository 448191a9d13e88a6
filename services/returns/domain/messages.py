"""Customer-facing texts (zh-CN and English) for every return decision, made of the pieces in
`wording.py`.

Each refusal or wait explains why and what the buyer can do instead (SPEC 3, 6). Texts name
product titles, categories, dates and amounts only: never personal data, never agent notes.
"""

from __future__ import annotations

from collections.abc import Callable

from services.returns.domain.vocabulary import Payer, ReturnKind, ReturnStatus, Rule
from services.returns.domain.wording import (
    CATEGORY_NAMES,
    CONDITION_NAMES,
    NOTHING,
    Message,
    MessageFacts,
    item_names,
    last_day_text,
    listed,
    local_moment,
    money,
    other_items_note,
    quality_route,
    request_kind,
    wait_end,
    wait_length,
)


def _payer(facts: MessageFacts) -> Message:
    if facts.payer == Payer.MERCHANT:
        if facts.return_shipping_cap is None:  # no cap in the order's currency
            up_to = NOTHING
        else:
            cap = money(facts.return_shipping_cap, facts.currency)
            up_to = Message(f"（最高{cap.zh}）", f" (up to {cap.en})")
        return Message(
            f"寄回运费由商家承担，您先行支付的运费将在退货签收后报销{up_to.zh}，请保留运费凭证。",
            f" The merchant bears the return freight: what you pay to send it back is reimbursed "
            f"after the warehouse signs for it{up_to.en}; please keep the receipt.",
        )
    if facts.payer == Payer.INSURER:
        return _INSURER_PAYS
    if facts.payer == Payer.BUYER:
        return _BUYER_PAYS
    return NOTHING


_INSURER_PAYS = Message(
    "您的订单已投保退货运费险，寄回运费由保险承担。",
    " Your order has return-freight insurance, so the insurer covers the return freight.",
)
_BUYER_PAYS = Message(
    "无理由退换货的寄回运费由您承担。",
    " For a no-reason return the return freight is yours to pay.",
)


def _approved(rule: Rule, facts: MessageFacts) -> Message:
    kind = request_kind(facts)
    if rule == Rule.REVIEWED_APPROVE:
        head = Message(
            f"您好，经客服审核，您的{kind.zh}申请已通过。",
            f"Hello, after review by our customer service team your {kind.en} request has been "
            "approved.",
        )
    else:
        head = Message(
            f"您好，您的{kind.zh}申请已通过。", f"Hello, your {kind.en} request has been approved."
        )
    hours = facts.refund_deadline_hours
    if facts.kind == ReturnKind.EXCHANGE:
        step = Message(
            f"请将商品寄回，仓库签收后{hours}小时内会为您安排换货发出。",
            f" Please send the item back; the replacement is dispatched within {hours} hours of "
            "the warehouse signing for it.",
        )
        estimate = NOTHING
    else:
        step = Message(
            f"请将商品寄回，仓库签收后{hours}小时内为您退款。",
            f" Please send the item back; we refund within {hours} hours of the warehouse signing "
            "for it.",
        )
        if facts.amount is None:
            estimate = NOTHING
        else:
            amount = money(facts.amount, facts.currency)
            estimate = Message(
                f"预计退款{amount.zh}，最终金额以仓库签收后为准。",
                f" The estimated refund is {amount.en}; the final amount is confirmed once the "
                "warehouse signs for the parcel.",
            )
    payer = _payer(facts)
    return Message(
        head.zh + payer.zh + estimate.zh + step.zh, head.en + payer.en + estimate.en + step.en
    )


def _completed(facts: MessageFacts) -> Message:
    if facts.kind == ReturnKind.EXCHANGE:
        text = Message(
            "您好，仓库已签收您寄回的商品，换货商品正在为您安排发出，请留意物流信息。",
            "Hello, the warehouse has received your parcel and the replacement is being "
            "dispatched; please watch for its tracking updates.",
        )
        if facts.return_shipping > 0:
            text = Message(
                text.zh + "您支付的寄回运费将按原支付方式退回，退款金额以退款通知为准。",
                text.en + " The return freight you paid is being refunded to your original "
                "payment method; a separate message confirms the amount.",
            )
        return text
    return _REFUNDING if facts.amount else _NOTHING_DUE


_NOTHING_DUE = Message(
    "您好，您的退货已处理完成，本次退货没有需要退回的金额。如对金额有疑问，欢迎联系客服查询明细。",
    "Hello, your return has been completed; no amount is due back for it. If you have "
    "questions about the amount, customer service can walk you through the details.",
)
_REFUNDING = Message(
    "您好，仓库已签收您寄回的商品，退款正在按原支付方式退回，退款金额以退款通知为准。感谢您的耐心！",
    "Hello, the warehouse has received your return and your refund is on its way to your "
    "original payment method(s); a separate message confirms the amount. Thank you for "
    "your patience!",
)


def _cancelled(facts: MessageFacts) -> Message:
    return Message(
        "您好，您的售后申请已按您的要求撤销。如仍需办理，欢迎在售后期限内重新提交申请。",
        "Hello, your request has been cancelled as you asked. If you still need help, you are "
        "welcome to submit a new request within the after-sales period.",
    )


_NOT_YOUR_ORDER = Message(
    "您好，很抱歉，您的账户下没有找到这笔订单，本次申请已关闭。请核对申请中的订单号，"
    "并使用下单时的账户重新提交；如商品是他人为您购买的，请由下单人提交申请，或联系客服协助处理。",
    "Hello, we are sorry: we could not find this order among your account's orders, so the "
    "request has been closed. Please check the order number and submit it again from the "
    "account that placed the order; if someone else bought the item for you, they can submit "
    "the request, or customer service can help.",
)


def _unknown_order(status: ReturnStatus, facts: MessageFacts) -> Message:
    if facts.other_buyer:
        # Says nothing of the order or whose it is: only that it is not this buyer's.
        return _NOT_YOUR_ORDER
    if status == ReturnStatus.REJECTED:
        waited = wait_length(facts)
        return Message(
            f"您好，很抱歉，{waited.zh}仍未查到这笔订单的信息，本次申请已关闭。"
            "请核对订单号后重新提交申请，或联系客服协助处理。",
            f"Hello, we are sorry: we could not find this order {waited.en}, so the request "
            "has been closed. Please check the order number and submit again, or contact "
            "customer service for help.",
        )
    until = wait_end(facts)
    return Message(
        f"您好，我们暂时还没有查到这笔订单的信息，您的申请正在等待订单同步，无需重复提交。"
        f"我们会持续核对{until.zh}；请确认申请中的订单号是否正确。",
        f"Hello, we cannot find this order yet, so your request is waiting for it; there is no "
        f"need to submit it again. We keep checking {until.en}; please make sure the order "
        "number is right.",
    )


def _not_delivered(status: ReturnStatus, facts: MessageFacts) -> Message:
    if status == ReturnStatus.REJECTED:
        waited = wait_length(facts)
        return Message(
            f"您好，很抱歉，{waited.zh}仍未查到这笔订单的签收记录，本次申请已关闭。"
            "请在收到并签收包裹后重新提交申请；如包裹迟迟未送达，可联系客服查询物流。",
            f"Hello, we are sorry: no delivery signature for this order arrived {waited.en}, so "
            "the request has been closed. Please submit it again once you have signed for the "
            "parcel; if it has not arrived, customer service can trace it for you.",
        )
    until = wait_end(facts)
    return Message(
        f"您好，我们暂未收到这笔订单的签收记录。包裹签收信息同步后，您的申请会自动继续处理，无需重复提交"
        f"（最长等待{until.zh}）。如您尚未收到包裹，请耐心等待送达。",
        f"Hello, we have no delivery signature for this order yet. Your request continues on its "
        f"own once the signature comes in, with no need to submit it again (we wait "
        f"{until.en}). If the parcel has not reached you yet, please wait for its delivery.",
    )


def _evidence_missing(status: ReturnStatus, facts: MessageFacts) -> Message:
    waited = wait_length(facts)
    if status == ReturnStatus.REJECTED:
        return Message(
            f"您好，很抱歉，{waited.zh}未收到问题照片，本次质量问题申请已关闭。"
            "您可以重新提交申请并附上能看清问题的照片，我们会尽快处理。",
            f"Hello, we are sorry: no photos of the problem arrived {waited.en}, so this "
            "quality claim has been closed. You can submit it again with photos that show the "
            "problem and we will handle it promptly.",
        )
    if facts.wait_until is None:
        before = NOTHING
    else:
        moment = local_moment(facts.wait_until, facts.zone)
        before = Message(f"（{moment.zh}前）", f" (before {moment.en})")
    return Message(
        f"您好，质量问题类售后需要凭证。请在{waited.zh}{before.zh}上传能看清问题的商品照片，"
        "收到后我们会立即继续处理。",
        f"Hello, a quality claim needs evidence. Please upload photos that show the problem "
        f"{waited.en}{before.en}; we continue as soon as they arrive.",
    )


def _quality_window_expired(status: ReturnStatus, facts: MessageFacts) -> Message:
    ended = (
        NOTHING
        if facts.window_deadline is None
        else last_day_text(facts.window_deadline, facts.zone)
    )
    if facts.wait_until is None:
        by = Message("尽快", "as soon as possible")
    else:
        moment = local_moment(facts.wait_until, facts.zone)
        by = Message(f"在{moment.zh}前", f"by {moment.en}")
    days = facts.quality_claim_days
    ended_zh = f"（已于{ended.zh}结束）" if ended.zh else ""
    ended_en = f" (it ended on {ended.en})" if ended.en else ""
    return Message(
        f"您好，您的申请已超过签收后{days}天的质量问题申报期{ended_zh}。我们不会直接拒绝，"
        f"已转交客服人工审核，将{by.zh}给您答复。如有照片等凭证，欢迎补充上传。",
        f"Hello, your request comes after the {days}-day period for quality claims{ended_en}. "
        f"It is not refused for that: our customer service team reviews it and answers "
        f"{by.en}. Feel free to add photos or other evidence meanwhile.",
    )


def _window_expired(status: ReturnStatus, facts: MessageFacts) -> Message:
    days = facts.no_reason_days
    if facts.window_deadline is None:
        ended = Message("已结束", "has ended")
    else:
        last = last_day_text(facts.window_deadline, facts.zone)
        ended = Message(f"已于{last.zh}结束", f"ended on {last.en}")
    route = quality_route(facts)
    return Message(
        f"您好，很抱歉，{days}天无理由退货期限（自签收次日起计算）{ended.zh}，"
        f"本次无理由退货申请无法通过。{route.zh}",
        f"Hello, we are sorry: the {days}-day no-reason return period (counted from the day "
        f"after delivery) {ended.en}, so this no-reason return cannot be accepted.{route.en}",
    )


def _excluded_category(status: ReturnStatus, facts: MessageFacts) -> Message:
    lines = item_names(facts.lines)
    category = listed(
        facts.categories,
        CATEGORY_NAMES,
        none=Message("法定不适用无理由退货的商品", "goods the law exempts from no-reason returns"),
    )
    others = other_items_note(facts)
    route = quality_route(facts)
    return Message(
        f"您好，很抱歉，{lines.zh}属于{category.zh}，依据《消费者权益保护法》第二十五条不适用七天无理由退货，"
        f"因此本次申请无法通过。{others.zh}{route.zh}",
        f"Hello, we are sorry: {lines.en} {'belongs' if len(facts.lines) <= 1 else 'belong'} "
        f"to a statutory exception ({category.en}, "
        f"Consumer Rights Protection Law art. 25) with no no-reason return, so this request "
        f"cannot be accepted.{others.en}{route.en}",
    )


def _waived_at_purchase(status: ReturnStatus, facts: MessageFacts) -> Message:
    lines = item_names(facts.lines)
    others = other_items_note(facts)
    route = quality_route(facts)
    return Message(
        f"您好，很抱歉，购买{lines.zh}时您已确认该商品不支持七天无理由退货，因此本次申请无法通过。"
        f"{others.zh}{route.zh}",
        f"Hello, we are sorry: when buying {lines.en} you confirmed that no-reason returns do "
        f"not apply to it, so this request cannot be accepted.{others.en}{route.en}",
    )


def _not_intact(status: ReturnStatus, facts: MessageFacts) -> Message:
    conditions = listed(
        facts.conditions,
        CONDITION_NAMES,
        none=Message("商品已不完好", "the goods are no longer intact"),
    )
    route = quality_route(facts)
    return Message(
        f"您好，很抱歉，无理由退货需要商品保持完好（拆封查验和试用不影响），本次申请中{conditions.zh}，"
        f"因此无法通过。{route.zh}如有疑问，欢迎联系客服。",
        f"Hello, we are sorry: a no-reason return needs the goods intact (opening them for "
        f"inspection or trying them out is fine), and in this request {conditions.en}, so it "
        f"cannot be accepted.{route.en} Customer service is happy to help with any question.",
    )


def _quantity_exceeds(status: ReturnStatus, facts: MessageFacts) -> Message:
    lines = item_names(facts.lines)
    return Message(
        f"您好，很抱歉，{lines.zh}的申请数量超过了可退数量（购买数量减去已退或正在退货中的数量），"
        "本次申请无法通过。请按可退数量重新提交申请。",
        f"Hello, we are sorry: the quantity requested for {lines.en} is more than can still be "
        "returned (the quantity bought minus what is already returned or being returned), so "
        "this request cannot be accepted. Please submit it again with the quantity still "
        "returnable.",
    )


def _inspection_failed(status: ReturnStatus, facts: MessageFacts) -> Message:
    if facts.conditions:
        findings = listed(facts.conditions, CONDITION_NAMES, none=NOTHING)
        found = Message(f"（{findings.zh}）", f" ({findings.en})")
    else:
        found = NOTHING
    return Message(
        f"您好，很抱歉，仓库验货未通过{found.zh}，本次退款无法办理。如您对验货结果有异议，可联系客服申诉；"
        "如属于商品本身的质量问题，也可以以质量问题为由申请售后并上传照片。",
        f"Hello, we are sorry: the item did not pass the warehouse inspection{found.en}, so the "
        "refund cannot be made. If you disagree with the result, customer service will hear "
        "your appeal; if the item has a quality problem, you can report it as a quality issue "
        "with photos.",
    )


def _reviewed_reject(status: ReturnStatus, facts: MessageFacts) -> Message:
    return Message(
        "您好，客服已仔细审核您的申请，很遗憾本次无法通过。如您有新的照片或凭证，可以联系客服或重新提交申请，"
        "我们会再次核实。",
        "Hello, our customer service team has reviewed your request carefully and we are sorry "
        "it cannot be accepted. If you have new photos or evidence, contact customer service or "
        "submit a new request and we will look at it again.",
    )


def _pending(status: ReturnStatus, facts: MessageFacts) -> Message:
    return Message(
        "您好，您的申请正在处理中，我们会尽快给您答复，无需重复提交。",
        "Hello, your request is being processed and we will answer soon; there is no need to "
        "submit it again.",
    )


def _rejected(status: ReturnStatus, facts: MessageFacts) -> Message:
    return Message(
        "您好，很抱歉，您的申请未能通过。如有疑问，请联系客服，我们会协助您了解其他售后方式。",
        "Hello, we are sorry: your request could not be accepted. Customer service can help you "
        "find another way to resolve it.",
    )


_BY_RULE: dict[Rule, Callable[[ReturnStatus, MessageFacts], Message]] = {
    Rule.UNKNOWN_ORDER: _unknown_order,
    Rule.NOT_DELIVERED: _not_delivered,
    Rule.EVIDENCE_MISSING: _evidence_missing,
    Rule.QUALITY_WINDOW_EXPIRED: _quality_window_expired,
    Rule.WINDOW_EXPIRED: _window_expired,
    Rule.EXCLUDED_CATEGORY: _excluded_category,
    Rule.WAIVED_AT_PURCHASE: _waived_at_purchase,
    Rule.NOT_INTACT: _not_intact,
    Rule.QUANTITY_EXCEEDS_PURCHASED: _quantity_exceeds,
    Rule.INSPECTION_FAILED: _inspection_failed,
    Rule.REVIEWED_REJECT: _reviewed_reject,
}


def compose(status: ReturnStatus, rule: Rule, facts: MessageFacts) -> Message:
    """The buyer's message for a decision; every status and rule code has one."""
    if status == ReturnStatus.APPROVED:
        return _approved(rule, facts)
    if status == ReturnStatus.COMPLETED:
        return _completed(facts)
    if status == ReturnStatus.CANCELLED:
        return _cancelled(facts)
    composer = _BY_RULE.get(rule)
    if composer is None:
        composer = _rejected if status == ReturnStatus.REJECTED else _pending
    return composer(status, facts)
