"""Personal data at rest (SPEC section 7): AES-GCM field encryption, key rotation, log masking."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
DEFAULT_KID = "k1"

_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class CryptoError(Exception):
    """A value cannot be encrypted or decrypted. Messages never contain the plaintext."""


class FieldCipher:
    """Encrypts single string fields with AES-256-GCM.

    Token format: `v1.<kid>.<base64url(nonce + ciphertext-and-tag)>`. The `context` (e.g.
    "customer:C1:phone") is bound as associated data, so a value copied to another row or
    column fails to decrypt. Old keys stay in the ring to decrypt; the primary encrypts.
    """

    def __init__(self, keys: Mapping[str, bytes], primary: str) -> None:
        if not keys:
            raise ValueError("the key ring is empty")
        for kid, key in keys.items():
            if not _KID.fullmatch(kid):
                raise ValueError(f"key id {kid!r} must be 1-32 letters, digits, '-' or '_'")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {kid!r} must be {KEY_BYTES} bytes, got {len(key)}")
        if primary not in keys:
            raise ValueError(f"primary key id {primary!r} is not in the key ring")
        self._ciphers = {kid: AESGCM(bytes(key)) for kid, key in keys.items()}
        self._primary = primary

    @property
    def primary_kid(self) -> str:
        return self._primary

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def encrypt(self, plaintext: str, *, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)  # fresh per value: GCM breaks on a reused nonce
        sealed = self._ciphers[self._primary].encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("utf-8")
        )
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{FORMAT_VERSION}.{self._primary}.{body}"

    def decrypt(self, token: str, *, context: str) -> str:
        kid, blob = _split(token)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise CryptoError(f"no key {kid!r} in the key ring (was it removed too early?)")
        try:
            plain = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode("utf-8"))
        except InvalidTag:
            raise CryptoError(
                f"cannot decrypt with key {kid!r}: wrong key, wrong context or tampered value"
            ) from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise CryptoError("decrypted value is not UTF-8 text") from None

    def needs_rotation(self, token: str) -> bool:
        """True when the value was encrypted with a key other than the primary."""
        kid, _ = _split(token)
        return kid != self._primary

    def rotate(self, token: str, *, context: str) -> str:
        """The same value under the primary key (unchanged if it already is)."""
        if not self.needs_rotation(token):
            return token
        return self.encrypt(self.decrypt(token, context=context), context=context)


def _split(token: str) -> tuple[str, bytes]:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != FORMAT_VERSION or not _KID.fullmatch(parts[1]):
        raise CryptoError(f"not an encrypted value (expected '{FORMAT_VERSION}.<kid>.<data>')")
    try:
        blob = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
    except (binascii.Error, ValueError):
        raise CryptoError("encrypted value is not valid base64url") from None
    if len(blob) < NONCE_BYTES + 16:  # nonce + GCM tag at the least
        raise CryptoError("encrypted value is too short")
    return parts[1], blob


def cipher_from_env(value: str) -> FieldCipher:
    """Build the cipher from AFTERSALES_ENCRYPTION_KEY.

    Either one base64 32-byte key (key id "k1"), or a ring `kid:base64key,kid:base64key`
    whose first entry is the primary. Errors never show key material.
    """
    text = value.strip()
    if not text:
        raise ValueError("AFTERSALES_ENCRYPTION_KEY is empty; set a base64 32-byte key")
    if ":" not in text and "," not in text:
        return FieldCipher({DEFAULT_KID: _decode_key(text, DEFAULT_KID)}, DEFAULT_KID)
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(text.split(","), start=1):
        kid, sep, material = entry.strip().partition(":")
        kid = kid.strip()
        if not sep or not kid or not material.strip():
            raise ValueError(
                f"AFTERSALES_ENCRYPTION_KEY entry {position} must look like 'kid:base64key'"
            )
        if not _KID.fullmatch(kid):
            raise ValueError(
                f"AFTERSALES_ENCRYPTION_KEY entry {position}: key id must be 1-32 letters, "
                "digits, '-' or '_'"
            )
        if kid in keys:
            raise ValueError(f"AFTERSALES_ENCRYPTION_KEY: key id {kid!r} appears twice")
        keys[kid] = _decode_key(material.strip(), kid)
    return FieldCipher(keys, next(iter(keys)))


def _decode_key(material: str, kid: str) -> bytes:
    # Accept standard and URL-safe alphabets, padded or not: both are common in secrets.
    normalized = material.replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    try:
        key = base64.b64decode(normalized, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"AFTERSALES_ENCRYPTION_KEY: key {kid!r} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"AFTERSALES_ENCRYPTION_KEY: key {kid!r} must decode to {KEY_BYTES} bytes, "
            f"got {len(key)}"
        )
    return key


def generate_key() -> str:
    """A new random key, base64-encoded, for AFTERSALES_ENCRYPTION_KEY."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")


# --- masking for logs -----------------------------------------------------------------------


def mask_phone(phone: str) -> str:
    """'13812345678' -> '138****5678'; short numbers keep less, tiny ones nothing."""
    if len(phone) >= 11:
        return f"{phone[:3]}****{phone[-4:]}"
    if len(phone) >= 7:
        return f"{phone[:2]}****{phone[-2:]}"
    return "****"


def mask_email(email: str) -> str:
    """'alice@example.com' -> 'a***@example.com'."""
    local, at, domain = email.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_name(name: str) -> str:
    """'张三' -> '张*', 'Alice' -> 'A****'; a one-character name is fully masked."""
    if len(name) <= 1:
        return "*"
    return name[0] + "*" * (len(name) - 1)


# Tried only where a run of the local part's characters starts (the match found there is the one
# any later start in the run would find): tried from every position, each attempt running to the
# run's end, 256 KiB of letters took minutes.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# 7+ digit runs, and numbers written in groups such as "138-1234-5678", "+86 138 1234 5678",
# "+86-13812345678" or "0755-12345678"; groups of 2 digits are not joined, so dates
# (2024-05-01) and times stay readable. A run glued to an ASCII letter, `_` or digit, directly
# or across a hyphen, is part of an identifier (R-df30123456788bb, O-2024050100012345, UUIDs,
# hex tokens): kept readable, so dead letters and logs still say which order is affected.
_ID_CHAR = "[A-Za-z0-9_]"
_PHONE = re.compile(
    rf"(?<!{_ID_CHAR})(?<!{_ID_CHAR}-)"
    r"(?:\+?\d{7,}|\+?\d{2,4}(?:[ -]\d{3,4}){2,}|\+\d{1,3}[ -]\d{7,}|0\d{2,3}-\d{7,8})"
    rf"(?!{_ID_CHAR})(?!-{_ID_CHAR})"
)


def redact(text: str) -> str:
    """Mask e-mail addresses and phone-number-like digit runs inside free text; digits that
    belong to an identifier stay as they are."""
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE.sub(lambda m: mask_phone(re.sub(r"[ -]", "", m.group(0))), text)
