"""`aftersales notifier rotate-keys`: re-encrypt every stored contact with the primary key.

Rotation, step by step (docs/decisions-notifier.md):
1. Put a new key first in AFTERSALES_ENCRYPTION_KEY, keeping the old one after it
   (`new:<base64>,old:<base64>`), and restart the notifier: new and updated contacts are
   written with the new key, and every contact read for a delivery is re-encrypted on the way.
2. Run `aftersales notifier rotate-keys` to re-encrypt the rest (safe while the service runs,
   and to repeat).
3. When it reports nothing left under an old key, remove the old key from the ring.
"""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import func, select

from services.notifier import tables
from services.notifier.contacts import notifier_cipher, rotate_all
from shared.clock import SystemClock
from shared.db import create_engine, session_factory
from shared.settings import Settings


async def rotate(settings: Settings) -> int:
    cipher = notifier_cipher(settings)
    engine = create_engine(settings.database_url, pool_size=2, limits=settings.database_limits())
    try:
        sessions = session_factory(engine)
        rotated = await rotate_all(sessions, cipher, SystemClock().now())
        async with sessions() as session:
            left = await session.scalar(
                select(func.count()).where(tables.contacts.c.key_id != cipher.primary_kid)
            )
    finally:
        await engine.dispose()
    print(f"{rotated} contact(s) re-encrypted with key {cipher.primary_kid!r}")
    if left:
        print(f"{left} contact(s) still under an older key (busy rows): run it again")
        return 1
    print("no contact left under an older key: older keys may now leave the ring")
    return 0


def main(settings: Settings) -> int:
    return asyncio.run(rotate(settings))


if __name__ == "__main__":
    from shared.settings import load_settings

    sys.exit(main(load_settings()))
