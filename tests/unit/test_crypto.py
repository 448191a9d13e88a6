"""Field encryption of personal data and masking for logs (SPEC section 7)."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.crypto import (
    CryptoError,
    FieldCipher,
    cipher_from_env,
    generate_key,
    mask_email,
    mask_name,
    mask_phone,
    redact,
)

KEY1 = bytes(range(32))
KEY2 = bytes(range(32, 64))
PHONE_CONTEXT = "customer:C1:phone"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.fixture
def cipher() -> FieldCipher:
    return FieldCipher({"k1": KEY1}, "k1")


@given(plaintext=st.text(max_size=200))
def test_round_trip(plaintext: str) -> None:
    cipher = FieldCipher({"k1": KEY1}, "k1")
    token = cipher.encrypt(plaintext, context=PHONE_CONTEXT)
    assert cipher.decrypt(token, context=PHONE_CONTEXT) == plaintext


def test_token_format_hides_the_value(cipher: FieldCipher) -> None:
    token = cipher.encrypt("13812345678", context=PHONE_CONTEXT)
    version, kid, body = token.split(".")
    assert (version, kid) == ("v1", "k1")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert len(raw) == 12 + len("13812345678") + 16  # nonce + ciphertext + tag
    assert "13812345678" not in token


def test_fresh_nonce_per_value(cipher: FieldCipher) -> None:
    first = cipher.encrypt("张三", context="customer:C1:name")
    second = cipher.encrypt("张三", context="customer:C1:name")
    assert first != second
    assert first.split(".")[2][:16] != second.split(".")[2][:16]


def test_wrong_context_fails(cipher: FieldCipher) -> None:
    token = cipher.encrypt("13812345678", context=PHONE_CONTEXT)
    with pytest.raises(CryptoError) as info:
        cipher.decrypt(token, context="customer:C2:phone")
    assert "13812345678" not in str(info.value)


def test_tampering_fails(cipher: FieldCipher) -> None:
    token = cipher.encrypt("alice@example.com", context="customer:C1:email")
    version, kid, body = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[15] ^= 0x01
    forged = f"{version}.{kid}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"
    with pytest.raises(CryptoError, match="tampered"):
        cipher.decrypt(forged, context="customer:C1:email")


@pytest.mark.parametrize(
    "token", ["", "13812345678", "v2.k1.AAAA", "v1.k1", "v1.k1.!!!", "v1.k1.AAAA", "v1.k 1.AAAA"]
)
def test_malformed_tokens_fail_clearly(cipher: FieldCipher, token: str) -> None:
    with pytest.raises(CryptoError) as info:
        cipher.decrypt(token, context=PHONE_CONTEXT)
    assert "13812345678" not in str(info.value)


def test_rotation() -> None:
    old = FieldCipher({"k1": KEY1}, "k1")
    legacy = old.encrypt("13812345678", context=PHONE_CONTEXT)

    rotated = FieldCipher({"k2": KEY2, "k1": KEY1}, "k2")
    assert rotated.needs_rotation(legacy)
    assert rotated.decrypt(legacy, context=PHONE_CONTEXT) == "13812345678"

    fresh = rotated.encrypt("13812345678", context=PHONE_CONTEXT)
    assert fresh.startswith("v1.k2.")
    assert not rotated.needs_rotation(fresh)
    renewed = rotated.rotate(legacy, context=PHONE_CONTEXT)
    assert renewed.startswith("v1.k2.")
    assert rotated.decrypt(renewed, context=PHONE_CONTEXT) == "13812345678"
    assert rotated.rotate(fresh, context=PHONE_CONTEXT) == fresh

    retired = FieldCipher({"k2": KEY2}, "k2")
    with pytest.raises(CryptoError, match="k1"):
        retired.decrypt(legacy, context=PHONE_CONTEXT)


def test_key_ring_is_validated() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        FieldCipher({"k1": b"short"}, "k1")
    with pytest.raises(ValueError, match="primary"):
        FieldCipher({"k1": KEY1}, "k9")
    with pytest.raises(ValueError, match="empty"):
        FieldCipher({}, "k1")
    with pytest.raises(ValueError, match="key id"):
        FieldCipher({"k.1": KEY1}, "k.1")


def test_cipher_from_env_single_key() -> None:
    cipher = cipher_from_env(f"  {b64(KEY1)}\n")
    assert cipher.primary_kid == "k1"
    token = cipher.encrypt("x", context="c")
    assert FieldCipher({"k1": KEY1}, "k1").decrypt(token, context="c") == "x"


def test_cipher_from_env_accepts_url_safe_unpadded_keys() -> None:
    text = base64.urlsafe_b64encode(KEY2).decode().rstrip("=")
    cipher = cipher_from_env(text)
    assert cipher.decrypt(FieldCipher({"k1": KEY2}, "k1").encrypt("x", context="c"), context="c")


def test_cipher_from_env_ring_first_is_primary() -> None:
    cipher = cipher_from_env(f"k2:{b64(KEY2)}, k1:{b64(KEY1)}")
    assert cipher.primary_kid == "k2"
    assert cipher.kids == ("k2", "k1")
    legacy = FieldCipher({"k1": KEY1}, "k1").encrypt("x", context="c")
    assert cipher.decrypt(legacy, context="c") == "x"


def test_generated_key_is_usable() -> None:
    assert cipher_from_env(generate_key()).primary_kid == "k1"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("not-base64!!", "base64"),
        (b64(b"0" * 16), "32 bytes"),
        (f"k1:{b64(KEY1)},k1:{b64(KEY2)}", "twice"),
        (f"k1:{b64(KEY1)},:{b64(KEY2)}", "kid:base64key"),
        (f"k1:{b64(KEY1)},{b64(KEY2)}", "kid:base64key"),
        (f"bad id:{b64(KEY1)}", "key id"),
    ],
)
def test_cipher_from_env_rejects_bad_input(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        cipher_from_env(value)
    assert b64(KEY1) not in str(info.value) and b64(KEY2) not in str(info.value)


def test_crypto_error_is_not_a_value_error() -> None:
    # Callers catch CryptoError specifically; a bad configuration is a ValueError instead.
    assert not issubclass(CryptoError, ValueError)


# --- masking --------------------------------------------------------------------------------


def test_mask_phone() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+8613812345678") == "+86****5678"
    assert mask_phone("12345678") == "12****78"
    assert mask_phone("12345") == "****"


def test_mask_email() -> None:
    assert mask_email("alice@example.com") == "a***@example.com"
    assert mask_email("@example.com") == "***@example.com"
    assert mask_email("no-at-sign") == "***"


def test_mask_name() -> None:
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("张") == "*"
    assert mask_name("") == "*"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call 13812345678 now", "call 138****5678 now"),
        ("电话13812345678，谢谢", "电话138****5678，谢谢"),
        ("tel 138-1234-5678 or +86 138 1234 5678", "tel 138****5678 or +86****5678"),
        ("mail alice@example.com please", "mail a***@example.com please"),
        ("order O1 paid 2024-05-01 10:00, 9000 fen", "order O1 paid 2024-05-01 10:00, 9000 fen"),
        ("tel:13812345678", "tel:138****5678"),
        ("(13812345678) or +86-13812345678;", "(138****5678) or +86****5678;"),
        ("phone=+8613812345678, office 0755-12345678", "phone=+86****5678, office 075****5678"),
        ('{"note": "13812345678"}', '{"note": "138****5678"}'),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "return R-df30123456788bb of order O-2024050100012345 failed",
        "event 550e8400-e29b-41d4-a716-446655440000 and 12345678-1234-1234-1234-123456789012",
        "refund rf-5aa8832c-1234-5678-9012-dfb5d6644e52, message evt-1234567890",
        "sku_1234567, ORDER1234567, hex 0123456789abcdef and deadbeef12345678",
        "batch 1234567890-abc",
    ],
)
def test_redact_leaves_identifiers_readable(text: str) -> None:
    assert redact(text) == text


@given(digits=st.text(alphabet="0123456789", min_size=7, max_size=15))
def test_redact_never_shows_a_whole_digit_run(digits: str) -> None:
    assert digits not in redact(f"x {digits} y")
    assert digits not in redact(f"电话{digits}。tel:{digits}")


@given(
    digits=st.text(alphabet="0123456789", min_size=7, max_size=32),
    before=st.sampled_from(["R-df", "O-", "evt_", "a", "x1-"]),
    after=st.sampled_from(["", "bb", "-e29b", "_2"]),
)
def test_redact_keeps_digits_glued_to_an_identifier(digits: str, before: str, after: str) -> None:
    token = f"{before}{digits}{after}"
    assert redact(f"id {token} failed") == f"id {token} failed"


@pytest.mark.parametrize(
    "run",
    ["a" * 256 * 1024, "1-" * 128 * 1024, "x." * 128 * 1024, "a@" + "b" * 256 * 1024],
    ids=["letters", "digits-and-hyphens", "dots", "after-an-at"],
)
def test_redact_takes_time_in_proportion_to_the_text(run: str) -> None:
    # A run of the characters an e-mail address starts with was tried from each of its
    # positions to its end: a record's 256 KiB took minutes to redact for its dead letter.
    started = time.perf_counter()
    assert redact(f"{run} mail alice@example.com") == f"{run} mail a***@example.com"
    assert time.perf_counter() - started < 2.0
