"""Health, metrics and the services' read APIs over HTTP: /health/live, /health/ready,
/metrics, /<service>/api/... (documented at /openapi.json)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI
from faststream.asgi import AsgiFastStream, AsgiResponse
from faststream.asgi.types import ASGIApp, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aftersales.readapp import router
from shared.messaging.runtime import ServiceRuntime
from shared.policy import Policy

JSON = {"content-type": "application/json"}


class HealthApp(AsgiFastStream):
    """FastStream's ASGI router without brokers of its own: each ServiceRuntime starts and
    stops its broker, and uvicorn runs with lifespan off, so nothing here starts one. What it
    has no route for goes to the read API (`fallback`), when there is one."""

    fallback: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Routes match the exact path; a probe may ask for /health/ready/.
            scope = {**scope, "path": scope["path"].rstrip("/")}
        await super().__call__(scope, receive, send)

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fallback is not None:
            await self.fallback(scope, receive, send)
            return
        await AsgiResponse(b'{"error":"not found"}', 404, JSON)(scope, receive, send)


def read_api(runtimes: Sequence[ServiceRuntime], policy: Policy) -> FastAPI:
    """The read APIs of the services this process runs (aftersales/readapp.py)."""
    app = FastAPI(
        title="aftersales read API",
        summary="Cases, timelines, deadlines, dead letters and KPIs, each service its own.",
        version="1",
        docs_url=None,  # the documentation page would load its scripts from a CDN
        redoc_url=None,
    )
    for runtime in runtimes:
        app.include_router(router(runtime.name, runtime.read_routes(policy)))
    return app


def health_app(runtimes: Sequence[ServiceRuntime], api: ASGIApp | None = None) -> ASGIApp:
    async def live(scope: Scope, receive: Receive, send: Send) -> None:
        await AsgiResponse(b'{"status":"live"}', 200, JSON)(scope, receive, send)

    async def ready(scope: Scope, receive: Receive, send: Send) -> None:
        results = await asyncio.gather(*(r.ready() for r in runtimes))
        checks = {r.name: result for r, result in zip(runtimes, results, strict=True)}
        ok = all(all(result.values()) for result in results)
        # Reachable but stuck: batches have kept failing for minutes (stuck_after).
        stuck = {r.name: why for r in runtimes if (why := r.health.stuck()) is not None}
        status = "not_ready" if not ok else "degraded" if stuck else "ready"
        document: dict[str, Any] = {"status": status, "checks": checks}
        if stuck:
            document["stuck"] = stuck
        body = json.dumps(document).encode()
        await AsgiResponse(body, 200 if status == "ready" else 503, JSON)(scope, receive, send)

    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        body = generate_latest()
        await AsgiResponse(body, 200, {"content-type": CONTENT_TYPE_LATEST})(scope, receive, send)

    app = HealthApp(
        asgi_routes=[("/health/live", live), ("/health/ready", ready), ("/metrics", metrics)],
        logger=None,
    )
    app.fallback = api
    return app


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the CLI owns SIGTERM for the whole process."""

    def install_signal_handlers(self) -> None:  # older uvicorn
        return

    def capture_signals(self) -> Any:  # newer uvicorn
        import contextlib

        return contextlib.nullcontext()


def require_free_port(port: int) -> None:
    """Refuse a port something else holds before any service starts: one line (ValueError)
    rather than uvicorn's traceback once every consumer group has been joined."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
        try:
            sock.bind(("0.0.0.0", port))  # noqa: S104 (the address the server binds)
        except OSError as exc:
            raise ValueError(
                f"port {port} for health and metrics is taken ({exc.strerror}): stop what holds "
                "it, or choose another with --port or AFTERSALES_HTTP_PORT"
            ) from None


def http_server(
    runtimes: Sequence[ServiceRuntime], port: int, policy: Policy | None = None
) -> HttpServer:
    api = read_api(runtimes, policy) if policy is not None else None
    config = uvicorn.Config(
        health_app(runtimes, api),
        host="0.0.0.0",  # noqa: S104 (probes reach the pod IP)
        port=port,
        log_level="warning",
        lifespan="off",
    )
    return HttpServer(config)
