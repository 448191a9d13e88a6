"""The pieces of the buyer's messages about returns (zh-CN and English): local dates and
moments in the shop's zone, amounts, item, category and condition names, and the clauses several
decisions' messages share (`messages.py` composes them). No personal data, never agent notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from services.returns.domain.vocabulary import Payer, ReturnKind
from shared.money import format_money

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Message(NamedTuple):
    zh: str
    en: str


@dataclass(frozen=True)
class MessageFacts:
    """What a message may mention. Instants are rendered as local dates in `zone`."""

    kind: ReturnKind = ReturnKind.REFUND
    zone: ZoneInfo = SHANGHAI
    currency: str = "CNY"
    lines: tuple[str, ...] = ()  # titles of the lines the decision is about
    other_lines: bool = False  # the request also holds lines the decision is not about
    categories: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()  # condition flags or inspection findings
    other_buyer: bool = False  # the order is not the requesting buyer's
    window_deadline: datetime | None = None  # first late instant of the missed window
    quality_deadline: datetime | None = None  # first late instant of the quality window
    wait_until: datetime | None = None  # end of a wait, or when a review is due
    wait_hours: int | None = None
    no_reason_days: int = 7
    quality_claim_days: int = 15
    # The estimate on approval; on completion what was requested (its amount is never stated:
    # the refund ledger may cut it, and the refund notice tells what was issued).
    amount: int | None = None
    return_shipping: int = 0  # freight requested back on a completed exchange
    payer: Payer | None = None
    return_shipping_cap: int | None = None
    refund_deadline_hours: int = 24


CATEGORY_NAMES: dict[str, Message] = {
    "custom_made": Message("按消费者要求定作的商品", "goods made to the buyer's specifications"),
    "fresh_perishable": Message("鲜活易腐的商品", "fresh and perishable goods"),
    "digital_content": Message(
        "在线下载或消费者拆封的音像制品、计算机软件等数字化商品",
        "digital content downloaded online or unsealed by the buyer (audio-visual products, "
        "software)",
    ),
    "periodical": Message("交付的报纸、期刊", "newspapers and periodicals already delivered"),
}

CONDITION_NAMES: dict[str, Message] = {
    "opened_for_inspection": Message("已拆封查验", "opened for inspection"),
    "trial_use": Message("已试用", "tried out"),
    "seal_broken": Message("包装封条已破损", "the seal is broken"),
    "tags_removed": Message("吊牌已剪除", "the tags have been removed"),
    "soiled_or_damaged": Message("商品有污损或损坏", "the item is soiled or damaged"),
    "activated": Message("商品已激活", "the item has been activated"),
    "repaired_or_modified": Message("商品经过维修或改装", "the item has been repaired or modified"),
    "serial_tampered": Message("序列号有改动痕迹", "the serial number has been tampered with"),
    "accessories_missing": Message("配件不全", "accessories are missing"),
}

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@lru_cache(maxsize=1024)
def money(amount: int, currency: str) -> Message:
    """In the currency's own ISO 4217 digits (shared.money: the one place for it). Kept for
    the amounts said again (the policy's freight cap in every approval, common prices)."""
    return Message(format_money(amount, currency, "zh-CN"), format_money(amount, currency, "en"))


_BEIJING_TIME = Message("北京时间", "Beijing time")


def zone_label(zone: ZoneInfo) -> Message:
    if zone.key == "Asia/Shanghai":
        return _BEIJING_TIME
    return Message(f"{zone.key}当地时间", f"{zone.key} local time")


def local_day(day: date) -> Message:
    return Message(
        f"{day.year}年{day.month}月{day.day}日", f"{day.day} {_MONTHS[day.month - 1]} {day.year}"
    )


def last_day(deadline: datetime, zone: ZoneInfo) -> date:
    """The last local day a window still covers; `deadline` is its first late instant."""
    return (deadline.astimezone(UTC) - timedelta(microseconds=1)).astimezone(zone).date()


def last_day_text(deadline: datetime, zone: ZoneInfo) -> Message:
    day = local_day(last_day(deadline, zone))
    label = zone_label(zone)
    return Message(f"{day.zh}（{label.zh}）", f"{day.en} ({label.en})")


def local_moment(instant: datetime, zone: ZoneInfo) -> Message:
    local = instant.astimezone(zone)
    day = local_day(local.date())
    label = zone_label(zone)
    clock = f"{local:%H:%M}"  # formatted once for both languages
    return Message(f"{day.zh} {clock}（{label.zh}）", f"{clock} on {day.en} ({label.en})")


def item_names(titles: tuple[str, ...]) -> Message:
    if not titles:
        return Message("部分商品", "some items")
    return Message("、".join(f"「{t}」" for t in titles), english_list([f'"{t}"' for t in titles]))


def english_list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def listed(codes: tuple[str, ...], names: dict[str, Message], *, none: Message) -> Message:
    if not codes:
        return none
    found = [names.get(code, Message(code, code)) for code in codes]
    return Message("、".join(m.zh for m in found), english_list([m.en for m in found]))


# Texts that never vary, made once rather than for every message that says them.
NOTHING = Message("", "")
_EXCHANGE = Message("换货", "exchange")
_RETURN = Message("退货退款", "return")


def request_kind(facts: MessageFacts) -> Message:
    return _EXCHANGE if facts.kind == ReturnKind.EXCHANGE else _RETURN


def other_items_note(facts: MessageFacts) -> Message:
    if not facts.other_lines:
        return NOTHING
    return Message(
        "本次申请中的其他商品不受影响，您可以将它们单独重新提交申请。",
        " The other items in this request are not affected: you may request them on their own.",
    )


def quality_route(facts: MessageFacts) -> Message:
    """A seller-fault claim is the buyer's alternative to a refused no-reason return."""
    if facts.quality_deadline is None:
        return Message(
            "如果商品存在质量问题，您仍可以以质量问题为由申请售后并上传照片。",
            " If the item has a quality problem, you can still report it as a quality issue "
            "with photos.",
        )
    until = last_day_text(facts.quality_deadline, facts.zone)
    return Message(
        f"如果商品存在质量问题，截至{until.zh}您仍可以以质量问题为由申请售后并上传照片，"
        "逾期提交的质量问题也会由客服人工审核。",
        f" If the item has a quality problem, you can still report it as a quality issue with "
        f"photos until the end of {until.en}; later quality claims are still reviewed by our "
        "team.",
    )


def wait_end(facts: MessageFacts) -> Message:
    """When a wait ends, e.g. "至2026年3月5日 10:00（北京时间）" / "until 10:00 on ..."."""
    if facts.wait_until is None:
        return Message("一段时间", "for a while")
    moment = local_moment(facts.wait_until, facts.zone)
    return Message(f"至{moment.zh}", f"until {moment.en}")


def wait_length(facts: MessageFacts) -> Message:
    """How long a wait that ended lasted."""
    if facts.wait_hours is None:
        return Message("在等待期限内", "within the waiting period")
    return Message(f"{facts.wait_hours}小时内", f"within {facts.wait_hours} hours")
