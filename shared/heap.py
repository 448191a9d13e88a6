"""The garbage collector's settings for a long-lived process once it has started.

What start-up built (modules, schemas, compiled statements) lives as long as the process:
frozen, it is left out of the collector's full passes, which otherwise walk all of it again
every few batches. Young objects are collected every `YOUNG_THRESHOLD` allocations instead of
Python's 700: a batch of events allocates tens of thousands of short-lived objects, almost all
freed by reference counting, and the collector's passes over them cost ~4 % of a service's CPU
per event (bench/README.md). The memory this can hold back is a young generation of that many
objects at most.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def settle() -> None:
    """Freeze what exists now and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
