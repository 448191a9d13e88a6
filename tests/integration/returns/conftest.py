"""A dedicated database for the returns service tests, migrated once with the real migrations.

Tests share it and keep apart by unique order and return ids; each test gets its own
ManualClock and a service wired over it (`svc`).
"""

from __future__ import annotations

from tests.harness import suite_fixtures

from .helpers import T0, ReturnsService

service_database, service_engine, clock, svc = suite_fixtures("returns", ReturnsService, T0)
