"""Health and metrics over HTTP: /health/live, /health/ready, /metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.messaging.runtime import ServiceRuntime

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def health_app(
    runtimes: Sequence[ServiceRuntime],
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/")
        if path == "/health/live":
            await _respond(send, 200, b'{"status":"live"}')
        elif path == "/health/ready":
            results = await asyncio.gather(*(r.ready() for r in runtimes))
            checks = {r.name: result for r, result in zip(runtimes, results, strict=True)}
            ok = all(all(result.values()) for result in results)
            # Reachable but stuck: batches have kept failing for minutes (stuck_after).
            stuck = {r.name: why for r in runtimes if (why := r.health.stuck()) is not None}
            status = "not_ready" if not ok else "degraded" if stuck else "ready"
            document: dict[str, Any] = {"status": status, "checks": checks}
            if stuck:
                document["stuck"] = stuck
            await _respond(send, 200 if status == "ready" else 503, json.dumps(document).encode())
        elif path == "/metrics":
            await _respond(send, 200, generate_latest(), CONTENT_TYPE_LATEST)
        else:
            await _respond(send, 404, b'{"error":"not found"}')

    return app


async def _respond(
    send: Send, status: int, body: bytes, content_type: str = "application/json"
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the CLI owns SIGTERM for the whole process."""

    def install_signal_handlers(self) -> None:  # older uvicorn
        return

    def capture_signals(self) -> Any:  # newer uvicorn
        import contextlib

        return contextlib.nullcontext()


def http_server(runtimes: Sequence[ServiceRuntime], port: int) -> HttpServer:
    config = uvicorn.Config(
        health_app(runtimes),
        host="0.0.0.0",  # noqa: S104 (probes reach the pod IP)
        port=port,
        log_level="warning",
        lifespan="off",
    )
    return HttpServer(config)
