"""Channel adapters without a network: URLs, status classes, payloads; the key ring rules."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from services.notifier.channels import (
    HttpGateway,
    LogChannel,
    Outgoing,
    SmtpChannel,
    channels_from_settings,
    http_status_result,
    log_line,
    parse_smtp_url,
    smtp_code_result,
)
from services.notifier.contacts import EPHEMERAL_KID, Contact, notifier_cipher
from shared.crypto import generate_key
from shared.settings import Settings

PHONE = "13812345678"
EMAIL = "zhang.san@example.com"


def outgoing(channel: str, **kw: object) -> Outgoing:
    args: dict[str, object] = {
        "delivery_id": "N1",
        "channel": channel,
        "customer_id": "C1",
        "order_id": "O1",
        "template": "return.approved",
        "language": "zh-CN",
        "subject": "售后申请已通过",
        "body": "您好，您的退货申请已通过。\n订单号：O1",
        "urgent": False,
        "at": datetime(2024, 5, 1, 2, 0, tzinfo=UTC),
    }
    args.update(kw)
    return Outgoing(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "ok", "transient"),
    [
        (200, True, False),
        (202, True, False),
        (400, False, False),
        (404, False, False),
        (408, False, True),
        (429, False, True),
        (500, False, True),
        (503, False, True),
        (301, False, False),
    ],
)
def test_http_status_classes(status: int, ok: bool, transient: bool) -> None:
    result = http_status_result("sms gateway", status)
    assert (result.ok, result.transient) == (ok, transient)


def test_smtp_codes() -> None:
    assert smtp_code_result(451, "x").transient
    assert not smtp_code_result(550, "x").transient


def test_smtp_urls() -> None:
    t = parse_smtp_url("smtp://mail.example.com:2525?from=shop@example.com")
    assert (t.host, t.port, t.use_tls, t.start_tls, t.sender) == (
        "mail.example.com",
        2525,
        False,
        None,
        "shop@example.com",
    )
    s = parse_smtp_url("smtps://user:p%40ss@mail.example.com?starttls=false")
    assert (s.port, s.use_tls, s.start_tls, s.username, s.password) == (
        465,
        True,
        False,
        "user",
        "p@ss",
    )
    assert "p@ss" not in repr(s)
    for bad in ("http://x", "smtp://", "smtp://h:notaport", "smtp://h?starttls=maybe"):
        with pytest.raises(ValueError, match="AFTERSALES_SMTP_URL"):
            parse_smtp_url(bad)


def test_payloads_carry_personal_data_only_where_needed() -> None:
    sms = HttpGateway("sms", "http://x").payload(outgoing("sms", address=PHONE))
    assert sms["to"] == PHONE and sms["text"].startswith("售后申请已通过\n")
    im = HttpGateway("im", "http://x").payload(outgoing("im", address=None))
    assert im["to"] == "C1" and PHONE not in str(im)
    hook = HttpGateway("webhook", "http://x").payload(outgoing("webhook"))
    assert hook["customer_id"] == "C1" and "to" not in hook


def test_email_message() -> None:
    target = parse_smtp_url("smtp://127.0.0.1:25?from=shop@example.com")
    msg = SmtpChannel(target).message(
        outgoing("email", address=EMAIL, display_name="张三", language="zh-CN")
    )
    assert msg["Subject"] == "售后申请已通过" and msg["From"] == "shop@example.com"
    assert EMAIL in msg["To"] and msg["Content-Language"] == "zh-CN"
    assert (
        msg["Message-ID"]
        == SmtpChannel(target).message(outgoing("email", address=EMAIL))["Message-ID"]
    )


async def test_log_channel_line_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    message = outgoing("log", address=None, recipient="138****5678", stands_in_for="sms")
    line = log_line(message)
    assert line.startswith("✉ to 138****5678 via log (instead of sms) [return.approved, zh-CN]")
    assert "\n" not in line
    with caplog.at_level(logging.INFO, logger="aftersales.notifier.delivery"):
        assert (await LogChannel().send(message)).ok
    assert caplog.records[-1].getMessage() == line


def test_channels_from_settings() -> None:
    assert channels_from_settings(Settings()) == {}
    channels = channels_from_settings(
        Settings(
            aftersales_sms_gateway_url="http://127.0.0.1:9/sms",
            aftersales_smtp_url="smtp://127.0.0.1:25",
            aftersales_dev_mode=True,
        )
    )
    assert sorted(channels) == ["email", "log", "sms"]
    with pytest.raises(ValueError, match="AFTERSALES_IM_GATEWAY_URL"):
        channels_from_settings(Settings(aftersales_im_gateway_url="ftp://x"))


def test_the_notifier_refuses_to_start_without_a_key() -> None:
    with pytest.raises(ValueError, match="AFTERSALES_ENCRYPTION_KEY is not set"):
        notifier_cipher(Settings(aftersales_encryption_key=None))
    with pytest.raises(ValueError, match="not valid base64"):
        notifier_cipher(Settings(aftersales_encryption_key="k1:???"))


def test_development_makes_up_an_ephemeral_key_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        cipher = notifier_cipher(Settings(aftersales_dev_mode=True))
    assert cipher.primary_kid == EPHEMERAL_KID
    assert "EPHEMERAL" in caplog.text
    key = generate_key()
    assert notifier_cipher(Settings(aftersales_encryption_key=f"k2:{key}")).primary_kid == "k2"


def test_contact_repr_hides_personal_data() -> None:
    contact = Contact("C1", "sms", name="张三", phone=PHONE, email=EMAIL)
    assert PHONE not in repr(contact) and EMAIL not in repr(contact) and "张三" not in repr(contact)
    assert contact.masked("sms") == "138****5678"
    assert contact.masked("email") == "z***@example.com"
    assert contact.masked("im") is None


def test_preflight_refuses_to_start_but_describing_needs_no_key() -> None:
    from aftersales.registry import definition, preflight
    from shared.clock import SystemClock
    from shared.policy import Policy

    with pytest.raises(ValueError, match="AFTERSALES_ENCRYPTION_KEY is not set"):
        preflight("notifier", Settings())
    with pytest.raises(ValueError, match="AFTERSALES_WEBHOOK_URL"):
        preflight(
            "notifier",
            Settings(aftersales_encryption_key=generate_key(), aftersales_webhook_url="x"),
        )
    preflight("notifier", Settings(aftersales_dev_mode=True))
    preflight("returns", Settings())  # no preflight of its own
    described = definition("notifier", Policy(), SystemClock())
    assert "aftersales.notifications.status" in described.publishes


async def test_without_key_contact_data_is_a_passing_fault_never_a_dead_letter() -> None:
    from services.notifier.contacts import EncryptionKeyMissing
    from shared.messaging.errors import is_transient

    cipher = notifier_cipher(Settings(), required=False)
    with pytest.raises(EncryptionKeyMissing) as err:
        cipher.encrypt("13812345678", context="x")
    assert is_transient(err.value)


def test_smtp_credentials_require_tls() -> None:
    assert parse_smtp_url("smtp://user:pw@mail.example.com").start_tls is True
    assert parse_smtp_url("smtp://user:pw@mail.example.com?starttls=true").start_tls is True
    assert parse_smtp_url("smtps://user:pw@mail.example.com").use_tls is True
    assert parse_smtp_url("smtp://mail.example.com").start_tls is None  # opportunistic
    with pytest.raises(ValueError, match="credentials and starttls=false"):
        parse_smtp_url("smtp://user:pw@mail.example.com?starttls=false")


def test_a_webhook_without_secret_is_a_warning_at_start(caplog: pytest.LogCaptureFixture) -> None:
    from services.notifier.bootstrap import preflight

    key = generate_key()
    with caplog.at_level(logging.WARNING, logger="aftersales.notifier"):
        preflight(
            Settings(aftersales_encryption_key=key, aftersales_webhook_url="https://h.example/")
        )
    assert any("without AFTERSALES_WEBHOOK_SECRET" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aftersales.notifier"):
        preflight(
            Settings(
                aftersales_encryption_key=key,
                aftersales_webhook_url="https://h.example/",
                aftersales_webhook_secret="s",
            )
        )
    assert not any("WEBHOOK_SECRET" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "address", ["zhang.san@例子.中国", "josé@example.com", "a@example.com\r\nBcc: x@example.com"]
)
async def test_an_address_no_e_mail_can_carry_is_refused_for_good(address: str) -> None:
    # Never becomes a message: retrying it only delays the buyer's next channel.
    channel = SmtpChannel(parse_smtp_url("smtp://127.0.0.1:9"))
    result = await channel.send(outgoing("email", address=address))
    assert not result.ok and not result.transient
    assert address not in result.detail and "@" not in result.detail


def test_a_name_with_line_breaks_is_only_a_display_name() -> None:
    target = parse_smtp_url("smtp://127.0.0.1:25")
    msg = SmtpChannel(target).message(
        outgoing("email", address=EMAIL, display_name="Zhang\r\nBcc: x@example.com\tSan")
    )
    assert EMAIL in msg["To"] and msg["Bcc"] is None
    assert "\n" not in msg["To"] and "\r" not in msg["To"]
