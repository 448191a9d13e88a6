"""Tracing (shared/tracing.py): spans of a processed batch and of the outbox's publishes, on the
real broker and database, with an in-memory exporter; and nothing at all without an endpoint."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared.messaging.runtime import ServiceRuntime, ensure_topics
from shared.settings import Settings
from shared.tracing import setup_tracing, tracing_configured
from tests.polling import eventually

from .helpers import encode, order_paid, order_shipped
from .kit import MessagingKit


def finished(exporter: InMemorySpanExporter, kind: SpanKind, suffix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind == kind and s.name.endswith(suffix)]


async def test_a_processed_batch_and_its_outputs_are_traced(
    kit: MessagingKit, settings: Settings
) -> None:
    exporter = InMemorySpanExporter()
    runtime = ServiceRuntime(
        kit.harness.definition(),
        settings,
        kit.clock,
        engine=kit.engine,
        relay_poll_interval=0.05,
        timer_poll_interval=0.2,
        retry_backoff=0.1,
        span_exporter=exporter,
    )
    await ensure_topics(settings, kit.harness.definition().all_topics)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=False
    )
    outputs = AIOKafkaConsumer(
        kit.harness.output_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"tracing-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await asyncio.gather(producer.start(), outputs.start(), runtime.start())
    try:
        # The platform's producer is traced too: its context travels in the headers.
        upstream = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        for event in (order_paid("o-tr", event_id="e-tr-1"), order_shipped("o-tr")):
            await producer.send_and_wait(
                kit.harness.input_topic,
                encode(event),
                key=b"o-tr",
                headers=[("traceparent", upstream.encode()), ("correlation_id", b"c-tr")],
            )

        async def applied() -> bool:
            return sum((await kit.effect_counts()).values()) == 2

        async def spans() -> list[ReadableSpan] | None:
            processed = finished(exporter, SpanKind.CONSUMER, " process")
            published = finished(exporter, SpanKind.PRODUCER, " publish")
            return [*processed, *published] if processed and len(published) >= 2 else None

        await eventually(applied, what="both events applied")
        await eventually(spans, what="process and publish spans")
        record = (await outputs.getmany(timeout_ms=5000)).popitem()[1][0]
        # The relay's own producer, as without tracing: one path, the same order per key, a
        # producer it can renew.
        assert runtime.kafka_producer() is not None
    finally:
        await runtime.stop()
        await asyncio.gather(producer.stop(), outputs.stop())

    # A span per batch, named after the topic and counting its records; its parent (the
    # batch's "create" span) links to the producer's span found in the records' headers.
    batch = finished(exporter, SpanKind.CONSUMER, " process")[0]
    assert batch.name == f"{kit.harness.input_topic} process"
    assert batch.attributes is not None and batch.parent is not None
    assert batch.attributes["messaging.system"] == "kafka"
    assert batch.attributes["messaging.batch.message_count"] >= 1
    assert batch.resource.attributes["service.name"] == f"aftersales-{kit.harness.name}"
    [created] = [
        s
        for s in finished(exporter, SpanKind.CONSUMER, " create")
        if s.context is not None and s.context.span_id == batch.parent.span_id
    ]
    assert [link.context.trace_id for link in created.links] == [int(upstream.split("-")[1], 16)]
    # A span per published event, and its context in the Kafka headers for the next consumer.
    published = finished(exporter, SpanKind.PRODUCER, " publish")
    assert {s.name for s in published} == {f"{kit.harness.output_topic} publish"}
    assert dict(record.headers)["traceparent"].decode().split("-")[1] in {
        f"{s.context.trace_id:032x}" for s in published if s.context is not None
    }
    assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
    assert len(dict(record.headers)["correlation_id"]) == 32  # the next batch's span links by it
    assert all(s.attributes and s.attributes["messaging.system"] == "kafka" for s in published)
    assert {s.attributes["messaging.kafka.message.key"] for s in published if s.attributes} == {
        "o-tr"
    }
    assert json.loads(record.value)["type"] == "notification.requested"


def test_without_an_endpoint_no_tracing_is_loaded() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    assert not tracing_configured(env)
    assert tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not tracing_configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )
    # A fresh interpreter builds a service's runtime as `aftersales run` does.
    script = """
import sys
from aftersales.registry import definition, environment
from shared.messaging.runtime import ServiceRuntime
env = environment()
runtime = ServiceRuntime(definition("returns", env.policy, env.clock), env.settings, env.clock)
assert runtime.tracing is None
# (FastStream itself imports the small `opentelemetry.semconv` to see whether it is installed.)
prefixes = ("opentelemetry.sdk", "opentelemetry.exporter", "faststream.opentelemetry")
loaded = sorted(m for m in sys.modules if m.startswith(prefixes))
assert not loaded, loaded
assert [type(m).__name__ for m in runtime.broker.middlewares] == ["KafkaPrometheusMiddleware"]
"""
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)


def test_with_an_endpoint_spans_go_to_the_collector_over_otlp_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,service.name=x")
    try:
        tracing = setup_tracing("returns")
        assert tracing is not None
        tracing.provider.get_tracer("test").start_span("orders process").end()
        tracing.provider.shutdown()  # flushes the batch processor
    finally:
        server.shutdown()
        server.server_close()

    [(path, content_type, body)] = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attributes["service.name"] == "aftersales-returns"
    assert attributes["deployment.environment"] == "test"
    assert [s.name for ss in resource_spans.scope_spans for s in ss.spans] == ["orders process"]
