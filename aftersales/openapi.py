"""The OpenAPI document of each service's read API (shared/messaging/readapi.py), generated
from its routes and pydantic models.

`aftersales openapi` writes them to docs/openapi/; `aftersales openapi --check` fails when the
committed ones are stale (`make lint` runs it). A running process serves the document of the
services it runs at /openapi.json.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker

from aftersales.asyncapi import write_documents
from aftersales.readapp import router
from aftersales.registry import SERVICES, definition
from shared.clock import SystemClock
from shared.messaging.runtime import service_read_routes
from shared.policy import Policy
from shared.settings import Settings


def document(name: str) -> dict[str, object]:
    """One service's read API, as its process serves it (nothing is connected to)."""
    policy, clock, settings = Policy(), SystemClock(), Settings()
    built = definition(name, policy, clock, settings)
    app = FastAPI(
        title=f"aftersales {name} read API",
        summary=f"What the {name} service answers for its own data; no personal data.",
        version="1",
    )
    routes = service_read_routes(built, async_sessionmaker(), settings, policy, clock)
    app.include_router(router(name, routes))
    return app.openapi()


def render_all(names: Iterable[str] | None = None) -> dict[str, str]:
    return {
        name: json.dumps(document(name), indent=2, ensure_ascii=False) + "\n"
        for name in (names or SERVICES)
    }


def write_or_check(directory: Path, *, check: bool) -> list[str]:
    """Write the documents, or (check) list the ones that are missing or stale."""
    return write_documents(directory, render_all(), check=check)
