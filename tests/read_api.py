"""A service's read API served in-process over its test database (no HTTP port)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aftersales.readapp import router
from shared.clock import Clock
from shared.messaging.runtime import ServiceDefinition, service_read_routes
from shared.policy import Policy
from shared.settings import Settings


def read_api_client(
    definition: ServiceDefinition,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    policy: Policy | None = None,
) -> httpx.AsyncClient:
    app = FastAPI()
    routes = service_read_routes(definition, sessions, Settings(), policy or Policy(), clock)
    app.include_router(router(definition.name, routes))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
