"""The garbage collector's settings for a long-lived process once it has started.

What start-up built (modules, schemas, compiled statements) lives as long as the process:
frozen, it is left out of the collector's full passes, which otherwise walk all of it again
every few batches. The young generation keeps Python's threshold: a higher one (50,000, which
saves the policy simulation's replay a quarter of its time) cut the collector's share of the
returns processor's CPU (~4 %) but made whole-service runs no faster and at times slower
(bench/README.md, item 36).
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Freeze what exists now: start-up's objects are left out of later collections."""
    gc.collect()
    gc.freeze()
