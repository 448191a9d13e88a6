"""The contact directory on the real database: encrypted at rest, latest order wins, rotation."""

from __future__ import annotations

from typing import Any

import pytest

from services.notifier import tables
from services.notifier.contacts import ContactBook, rotate_all
from shared.crypto import CryptoError, cipher_from_env, generate_key


async def test_contacts_are_encrypted_at_rest(make_harness: Any, kit: Any) -> None:
    h = make_harness()
    customer = kit.uid("C")
    await h.consume(kit.order_paid(customer, language="en-GB"))
    [row] = await h.rows(tables.contacts, tables.contacts.c.customer_id == customer)
    for column, clear in (("phone", kit.PHONE), ("email", kit.EMAIL), ("name", kit.NAME)):
        assert row[column].startswith("v1.k1."), column
        assert clear not in row[column]
    assert row["key_id"] == "k1" and row["language"] == "en-GB"
    # A fresh nonce per value: the same phone encrypts differently for another buyer.
    other = kit.uid("C")
    await h.consume(kit.order_paid(other))
    [row2] = await h.rows(tables.contacts, tables.contacts.c.customer_id == other)
    assert row2["phone"] != row["phone"]
    async with h.sessions() as session:
        contact = await ContactBook(session, h.cipher).get(customer, now=h.clock.now())
    assert contact is not None
    assert (contact.phone, contact.email, contact.name) == (kit.PHONE, kit.EMAIL, kit.NAME)
    # Bound to the buyer: a token copied to another row does not decrypt there.
    with pytest.raises(CryptoError):
        h.cipher.decrypt(row["phone"], context=f"notifier:contact:{other}:phone")


async def test_the_latest_paid_order_wins(make_harness: Any, kit: Any) -> None:
    h = make_harness()
    customer = kit.uid("C")
    await h.consume(kit.order_paid(customer, paid_at="2024-05-01T09:00:00+08:00"))
    await h.consume(
        kit.order_paid(
            customer,
            phone=kit.PHONE_2,
            email=kit.EMAIL_2,
            name=kit.NAME_2,
            preferred="email",
            paid_at="2024-05-01T09:30:00+08:00",
        )
    )
    # An older order arriving late changes nothing.
    await h.consume(kit.order_paid(customer, paid_at="2024-04-01T09:00:00+08:00"))
    async with h.sessions() as session:
        contact = await ContactBook(session, h.cipher).get(customer, now=h.clock.now())
    assert contact is not None
    assert (contact.phone, contact.email, contact.preferred_channel) == (
        kit.PHONE_2,
        kit.EMAIL_2,
        "email",
    )


async def test_key_rotation(make_harness: Any, kit: Any) -> None:
    old_key, new_key = generate_key(), generate_key()
    old_ring = cipher_from_env(f"old:{old_key}")
    h = make_harness(cipher=old_ring)
    customers = [kit.uid("C") for _ in range(3)]
    for customer in customers:
        await h.consume(kit.order_paid(customer))

    new_ring = cipher_from_env(f"new:{new_key},old:{old_key}")
    # Read with the new ring: decrypts with the old key and re-encrypts with the primary.
    async with h.sessions() as session, session.begin():
        contact = await ContactBook(session, new_ring).get(customers[0], now=h.clock.now())
    assert contact is not None and contact.phone == kit.PHONE
    rotated = await rotate_all(h.sessions, new_ring, h.clock.now(), batch=1)
    assert rotated == 2  # the one read was rotated already
    rows = await h.rows(tables.contacts, tables.contacts.c.customer_id.in_(customers))
    assert {r["key_id"] for r in rows} == {"new"}
    assert all(r[c].startswith("v1.new.") for r in rows for c in ("phone", "email", "name"))
    # The old key may now leave the ring.
    only_new = cipher_from_env(f"new:{new_key}")
    async with h.sessions() as session:
        book = ContactBook(session, only_new)
        for customer in customers:
            found = await book.get(customer, now=h.clock.now())
            assert found is not None and found.email == kit.EMAIL
    assert await rotate_all(h.sessions, new_ring, h.clock.now()) == 0
