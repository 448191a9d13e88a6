"""Which channel reaches the buyer, and in which language (pure rules)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal, get_args

# The buyer-facing channels of the contract (order.paid customer.preferred_channel), in the
# order they are tried after the buyer's preferred one.
BuyerChannel = Literal["sms", "im", "email", "webhook"]
CHANNELS: tuple[str, ...] = get_args(BuyerChannel)
LOG = "log"  # development only: the message is written to the log instead of being sent

ZH_CN = "zh-CN"
EN = "en"
LANGUAGES: tuple[str, ...] = (ZH_CN, EN)
DEFAULT_LANGUAGE = ZH_CN


def reachable(channel: str, *, has_phone: bool, has_email: bool) -> bool:
    """Whether the buyer has an address on `channel`.

    SMS needs a phone number and e-mail an address; the IM and the webhook channel address the
    buyer by platform account (`customer_id`), which every buyer has.
    """
    if channel == "sms":
        return has_phone
    if channel == "email":
        return has_email
    return channel in CHANNELS


def preference_order(preferred: str) -> list[str]:
    """The buyer's preferred channel first, then the others in the fixed order sms, im, email,
    webhook."""
    if preferred not in CHANNELS:
        return list(CHANNELS)
    return [preferred, *(c for c in CHANNELS if c != preferred)]


def intended_channel(preferred: str, *, has_phone: bool, has_email: bool) -> str:
    """The channel the buyer would be reached on if every gateway were configured."""
    for channel in preference_order(preferred):
        if reachable(channel, has_phone=has_phone, has_email=has_email):
            return channel
    return "im"  # unreachable: IM always reaches the buyer


def channel_plan(
    *,
    preferred: str,
    has_phone: bool,
    has_email: bool,
    configured: Collection[str],
    refused: Collection[str] = (),
    log_fallback: bool = False,
) -> list[str]:
    """The channels to try, best first.

    The preferred channel, then the next channels the buyer has, keeping only those with a
    gateway configured and leaving out the ones that already refused this message for good;
    in development (`log_fallback`) the log channel comes last.
    """
    plan = [
        channel
        for channel in preference_order(preferred)
        if reachable(channel, has_phone=has_phone, has_email=has_email)
        and channel in configured
        and channel not in refused
    ]
    if log_fallback and LOG not in refused:
        plan.append(LOG)
    return plan


def pick_language(tag: str | None) -> str:
    """The buyer's language: zh-CN unless the buyer's language tag (BCP 47) says otherwise.

    Chinese in any script or region (`zh`, `zh-TW`, `zh-Hans-CN`) gets zh-CN, the only Chinese
    the templates are written in; any other language gets English, the fallback language.
    """
    if tag is None or not tag.strip():
        return DEFAULT_LANGUAGE
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    return ZH_CN if primary == "zh" else EN


def language_order(tag: str | None) -> tuple[str, ...]:
    """Languages to try for a template: the buyer's, then the other one."""
    first = pick_language(tag)
    return (first, *(lang for lang in LANGUAGES if lang != first))
