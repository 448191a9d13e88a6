"""A database of its own for the complaints service-layer tests, migrated with the real
migrations; tests keep apart by unique ids, each with its own ManualClock."""

from __future__ import annotations

from tests.harness import suite_fixtures

from .harness import T0, ComplaintsService

service_database, service_engine, clock, svc = suite_fixtures("complaints", ComplaintsService, T0)
