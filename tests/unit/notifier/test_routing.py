"""Channel choice with fallbacks, and the buyer's language."""

from __future__ import annotations

import pytest

from services.notifier.domain.routing import (
    channel_plan,
    intended_channel,
    language_order,
    pick_language,
)

ALL = ("sms", "im", "email", "webhook")


def plan(preferred: str, configured: tuple[str, ...] = ALL, **kw: object) -> list[str]:
    args: dict[str, object] = {"has_phone": True, "has_email": True, "configured": configured}
    args.update(kw)
    return channel_plan(preferred=preferred, **args)  # type: ignore[arg-type]


def test_preferred_channel_first_then_the_fixed_order() -> None:
    assert plan("email") == ["email", "sms", "im", "webhook"]
    assert plan("webhook") == ["webhook", "sms", "im", "email"]


def test_a_channel_without_gateway_falls_back_to_the_next_the_buyer_has() -> None:
    assert plan("sms", configured=("email",)) == ["email"]
    assert plan("sms", configured=("email", "im")) == ["im", "email"]
    # No phone: SMS is not a channel this buyer has, even with a gateway.
    assert plan("sms", configured=("sms", "email"), has_phone=False) == ["email"]
    assert plan("email", configured=("email",), has_email=False) == []


def test_refused_channels_are_left_out_and_the_log_comes_last_in_development() -> None:
    assert plan("sms", refused=("sms",)) == ["im", "email", "webhook"]
    assert plan("sms", configured=(), log_fallback=True) == ["log"]
    assert plan("sms", configured=("email",), log_fallback=True) == ["email", "log"]


def test_intended_channel_ignores_configuration() -> None:
    assert intended_channel("sms", has_phone=True, has_email=True) == "sms"
    assert intended_channel("sms", has_phone=False, has_email=True) == "im"
    assert intended_channel("email", has_phone=True, has_email=False) == "sms"


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        (None, "zh-CN"),
        ("", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("zh_Hans_CN", "zh-CN"),
        ("en", "en"),
        ("en-GB", "en"),
        ("fr-FR", "en"),
        ("ja", "en"),
    ],
)
def test_language(tag: str | None, language: str) -> None:
    assert pick_language(tag) == language


def test_language_order_falls_back_to_the_other() -> None:
    assert language_order(None) == ("zh-CN", "en")
    assert language_order("de") == ("en", "zh-CN")
