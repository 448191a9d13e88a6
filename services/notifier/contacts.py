"""The buyers' contact directory: AES-GCM at rest, key rotation, masking.

Only the notifier holds contact data (SPEC section 7). Name, phone and e-mail are stored as
`FieldCipher` tokens bound to the customer and the field (a token copied to another row or
column does not decrypt), under the primary key of `AFTERSALES_ENCRYPTION_KEY`'s ring. Older
keys stay in the ring to decrypt; a token under an older key is re-encrypted with the primary
whenever the contact is written or read, and `aftersales notifier rotate-keys` does it for all.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier import tables
from shared.crypto import FieldCipher, cipher_from_env, mask_email, mask_phone
from shared.settings import Settings
from shared.upserts import upsert

log = logging.getLogger("aftersales.notifier")

FIELDS = ("name", "phone", "email")
EPHEMERAL_KID = "dev-ephemeral"


class EncryptionKeyMissing(OSError):
    """Contact data was touched without a key. An OSError on purpose: the messaging layer
    treats it as a passing fault and retries the batch, so no event is ever dead-lettered for
    a configuration mistake. `preflight` keeps it from happening in a started service."""


class _NoKey(FieldCipher):
    """Stands in for the cipher when the service is only described (AsyncAPI, topics)."""

    def __init__(self) -> None:
        pass

    @property
    def primary_kid(self) -> str:
        return "(none)"

    def encrypt(self, plaintext: str, *, context: str) -> str:
        raise EncryptionKeyMissing(MISSING_KEY)

    def decrypt(self, token: str, *, context: str) -> str:
        raise EncryptionKeyMissing(MISSING_KEY)

    def needs_rotation(self, token: str) -> bool:
        raise EncryptionKeyMissing(MISSING_KEY)


MISSING_KEY = (
    "AFTERSALES_ENCRYPTION_KEY is not set: the notifier keeps buyers' contact data "
    "encrypted (AES-GCM) and does not start without a key. Set it to a base64 32-byte key "
    "(.venv/bin/python -c 'from shared.crypto import generate_key; print(generate_key())') "
    "or to a ring 'kid:key,kid:key' whose first key is the primary; for local development "
    "only, AFTERSALES_DEV_MODE=true uses an ephemeral key"
)


def _has_key(settings: Settings) -> bool:
    return bool(settings.aftersales_encryption_key and settings.aftersales_encryption_key.strip())


def check_key(settings: Settings) -> None:
    """Start-up check: a key ring that parses, or development mode; ValueError otherwise."""
    if _has_key(settings):
        cipher_from_env(settings.aftersales_encryption_key or "")
    elif not settings.aftersales_dev_mode:
        raise ValueError(MISSING_KEY)


def notifier_cipher(settings: Settings, *, required: bool = True) -> FieldCipher:
    """The cipher from AFTERSALES_ENCRYPTION_KEY; without a key the notifier does not start,
    except in development (AFTERSALES_DEV_MODE), where it makes up an ephemeral key.

    `required=False` (describing the service, not running it) gives a stand-in that fails
    on use instead of raising now; a malformed key raises either way.
    """
    if _has_key(settings):
        return cipher_from_env(settings.aftersales_encryption_key or "")
    if settings.aftersales_dev_mode:
        log.warning(
            "!!! AFTERSALES_ENCRYPTION_KEY is not set: development mode encrypts contact data "
            "with an EPHEMERAL key, so contacts stored now cannot be read after a restart. "
            "Never run production like this !!!",
            extra={"service": "notifier"},
        )
        return FieldCipher({EPHEMERAL_KID: os.urandom(32)}, EPHEMERAL_KID)
    if required:
        raise ValueError(MISSING_KEY)
    return _NoKey()


def _context(customer_id: str, name: str) -> str:
    return f"notifier:contact:{customer_id}:{name}"


@dataclass(frozen=True)
class Contact:
    """A buyer's contact data, decrypted; its repr never shows the personal data."""

    customer_id: str
    preferred_channel: str
    name: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)
    email: str | None = field(default=None, repr=False)
    language: str | None = None

    def address(self, channel: str) -> str | None:
        if channel == "sms":
            return self.phone
        if channel == "email":
            return self.email
        return None

    def masked(self, channel: str) -> str | None:
        """The masked address of `channel` (138****5678, a***@example.com); None for IM and
        webhook, which address the buyer by customer_id."""
        if channel == "sms" and self.phone:
            return mask_phone(self.phone)
        if channel == "email" and self.email:
            return mask_email(self.email)
        return None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


class ContactBook:
    """Reads and writes contacts in one session, encrypting and decrypting on the way."""

    def __init__(self, session: AsyncSession, cipher: FieldCipher) -> None:
        self._session = session
        self._cipher = cipher

    def _seal(self, contact: Contact) -> dict[str, str | None]:
        sealed: dict[str, str | None] = {}
        for name in FIELDS:
            value = _clean(getattr(contact, name))
            sealed[name] = (
                None
                if value is None
                else self._cipher.encrypt(value, context=_context(contact.customer_id, name))
            )
        return sealed

    async def save(
        self, contact: Contact, *, order_id: str, paid_at: datetime, now: datetime
    ) -> bool:
        """Store the contact of a paid order; an older order than the stored one changes
        nothing. Returns True when the row was written."""
        t = tables.contacts
        values = {
            "customer_id": contact.customer_id,
            **self._seal(contact),
            "preferred_channel": contact.preferred_channel,
            "language": contact.language,
            "key_id": self._cipher.primary_kid,
            "order_id": order_id,
            "paid_at": paid_at,
            "updated_at": now,
        }
        stored = upsert(
            t,
            values,
            key=["customer_id"],
            update=[k for k in values if k != "customer_id"],
            where=t.c.paid_at <= paid_at,
        ).returning(t.c.customer_id)
        return (await self._session.execute(stored)).first() is not None

    async def get(self, customer_id: str, *, now: datetime) -> Contact | None:
        """The decrypted contact (see `read`); None: none stored."""
        t = tables.contacts
        row = (
            (await self._session.execute(select(t).where(t.c.customer_id == customer_id)))
            .mappings()
            .first()
        )
        return None if row is None else await self.read(row, now=now)

    async def read(self, row: Any, *, now: datetime) -> Contact:
        """The contact of a row read already (CryptoError when no key of the ring opens it);
        tokens under an older key are re-encrypted with the primary on the way."""
        contact = self.open(row)
        if row["key_id"] != self._cipher.primary_kid or any(
            row[name] is not None and self._cipher.needs_rotation(row[name]) for name in FIELDS
        ):
            await self._reseal(row, contact, now)
        return contact

    def open(self, row: Any) -> Contact:
        customer_id = row["customer_id"]
        plain = {
            name: (
                None
                if row[name] is None
                else self._cipher.decrypt(row[name], context=_context(customer_id, name))
            )
            for name in FIELDS
        }
        return Contact(
            customer_id=customer_id,
            preferred_channel=row["preferred_channel"],
            language=row["language"],
            **plain,
        )

    async def _reseal(self, row: Any, contact: Contact, now: datetime) -> None:
        t = tables.contacts
        await self._session.execute(
            update(t)
            .where(t.c.customer_id == contact.customer_id, t.c.paid_at == row["paid_at"])
            .values(**self._seal(contact), key_id=self._cipher.primary_kid, updated_at=now)
        )


async def rotate_all(
    sessions: async_sessionmaker[AsyncSession],
    cipher: FieldCipher,
    now: datetime,
    *,
    batch: int = 500,
) -> int:
    """Re-encrypt every contact not under the primary key; returns how many were rotated.

    Batches of rows claimed with FOR UPDATE SKIP LOCKED, one transaction each, so it can run
    while the service runs (and twice at once). A row no key of the ring opens stops it with
    CryptoError: remove an old key only after this has run with the new primary.
    """
    t = tables.contacts
    total = 0
    while True:
        async with sessions() as session, session.begin():
            rows = (
                (
                    await session.execute(
                        select(t)
                        .where(t.c.key_id != cipher.primary_kid)
                        .order_by(t.c.customer_id)
                        .limit(batch)
                        .with_for_update(skip_locked=True)
                    )
                )
                .mappings()
                .all()
            )
            book = ContactBook(session, cipher)
            for row in rows:
                await book._reseal(row, book.open(row), now)
        total += len(rows)
        if len(rows) < batch:
            return total
