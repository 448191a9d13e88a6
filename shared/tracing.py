"""OpenTelemetry tracing of every service, on when an OTLP endpoint is configured.

With `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, each service's
broker gets FastStream's `KafkaTelemetryMiddleware`: a span per consumed batch (linked to the
producers' spans found in the records' headers); the outbox relay makes a span per published
event (`Tracing.trace_headers`: its W3C `traceparent` goes out in the Kafka headers); all
exported over OTLP/HTTP (protobuf) by a batch processor, with the resource attribute
`service.name=aftersales-<service>`. The standard `OTEL_*` variables apply (headers, timeout,
sampler, extra resource attributes).

Without an endpoint nothing is set up and nothing of OpenTelemetry is imported: no overhead.
The packages are the `otel` extra, which every service image installs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("aftersales.tracing")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_configured(environ: Mapping[str, str] | None = None) -> bool:
    """An OTLP endpoint is set (and the SDK is not disabled by `OTEL_SDK_DISABLED=true`)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_VARIABLES)


@dataclass(frozen=True)
class Tracing:
    """One service's tracer provider and the broker middleware that uses it."""

    provider: TracerProvider
    middleware: Any  # faststream.kafka.opentelemetry.KafkaTelemetryMiddleware

    @cached_property
    def _publishing(self) -> tuple[Any, Any]:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        return self.provider.get_tracer("aftersales.relay"), TraceContextTextMapPropagator()

    def trace_headers(self, topic: str, key: bytes | None) -> list[tuple[str, bytes]]:
        """The trace headers of one event the outbox relay publishes: a PRODUCER span
        "<topic> publish", as FastStream's publish names it, and its W3C `traceparent` for the
        consumer's span to link to. The relay sends through a producer of its own, so it
        makes the span FastStream's middleware would have made."""
        from opentelemetry import trace

        tracer, propagator = self._publishing
        attributes: dict[str, str] = {
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            "messaging.operation": "publish",
        }
        if key is not None:
            attributes["messaging.kafka.message.key"] = key.decode(errors="replace")
        span = tracer.start_span(
            f"{topic} publish", kind=trace.SpanKind.PRODUCER, attributes=attributes
        )
        # FastStream's consumer links a batch to the spans of records with a correlation id
        # (one link per id), as its own publish sends them.
        carrier: dict[str, str] = {"correlation_id": uuid.uuid4().hex}
        propagator.inject(carrier, context=trace.set_span_in_context(span))
        span.end()  # handed to the producer; its acknowledgement is the relay's to await
        return [(name, value.encode()) for name, value in carrier.items()]

    async def close(self, timeout: float = 5.0) -> None:
        """Export the spans still buffered and stop the exporter, waiting at most `timeout`
        seconds (an unreachable collector must not hold up a stopping service: the export goes
        on in a daemon thread, which does not keep the process alive)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def shutdown() -> None:
            try:
                self.provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is closed already
                    loop.call_soon_threadsafe(finished)

        threading.Thread(target=shutdown, name="otel-shutdown", daemon=True).start()
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            log.warning("spans not exported at stop", extra={"timeout_s": timeout})


def setup_tracing(service: str, exporter: SpanExporter | None = None) -> Tracing | None:
    """The tracing of one service: None when no endpoint is configured and no exporter given.

    `exporter` (tests: an InMemorySpanExporter) replaces the OTLP exporter and exports each
    span as it ends.
    """
    if exporter is None and not tracing_configured():
        return None
    try:
        from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise ValueError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
            f"(install the `otel` extra): {exc}"
        ) from exc

    # Given attributes win over OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME, so `run all`
    # still tells its services apart; the rest of the environment's attributes are kept.
    resource = Resource.create(
        {"service.name": f"aftersales-{service}", "service.namespace": "aftersales"}
    )
    # Sampler from OTEL_TRACES_SAMPLER; shut down by the runtime's stop, not at exit.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info(
            "tracing to OTLP endpoint",
            extra={
                "service": service,
                "endpoint": next(os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v)),
            },
        )
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider=provider, middleware=KafkaTelemetryMiddleware(tracer_provider=provider))
