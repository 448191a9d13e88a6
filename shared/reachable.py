"""Start-up's wait for a dependency that cannot be reached yet (the database, the broker)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger("aftersales.startup")


async def once_reachable(
    attempt: Callable[[], Awaitable[object]],
    *,
    what: str,
    passing: Callable[[BaseException], bool],
    wait_s: float,
    about: Mapping[str, str] | None = None,
    cause: Callable[[BaseException], BaseException] = lambda exc: exc,
    stop: asyncio.Event | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> bool:
    """`attempt`, tried again while it fails with a `passing` error (`what` not up yet), for up
    to `wait_s` seconds, pausing 0.5 s, then twice as long each time up to 5 s, with a warning
    each time. Past the wait, or on another error, the error is raised. False when `stop` is
    set while waiting (SIGTERM): nothing more to do."""
    deadline = monotonic() + wait_s
    pause = 0.5
    while True:
        try:
            await attempt()
            return True
        except Exception as exc:
            left = deadline - monotonic()
            if left <= 0 or not passing(exc):
                raise
            pause = min(pause, left)
            log.warning(
                f"{what} cannot be reached yet; trying again",
                extra={
                    **(about or {}),
                    "error": type(cause(exc)).__name__,
                    "retry_in_s": round(pause, 1),
                    "gives_up_in_s": round(left, 1),
                },
            )
            if stop is None:
                await sleep(pause)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                if stop.is_set():
                    return False
            pause = min(pause * 2, 5.0)
