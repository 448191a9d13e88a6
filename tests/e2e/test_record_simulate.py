"""`aftersales record` on the real broker: what the platform published to the input topics is
written as JSON lines that `aftersales simulate` replays exactly as the history it came from."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from aftersales.simulation.commands import simulate
from aftersales_dev.history import generate, write
from shared.contracts import topics
from shared.messaging.relay import CONTENT_TYPE
from shared.messaging.runtime import ensure_topics
from shared.settings import Settings

from .test_cli import run_cli


async def test_a_recording_of_the_broker_replays_like_the_history_published(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    lines = generate(120)  # no-reason requests on every day 1..20
    await ensure_topics(Settings(kafka_bootstrap_servers=kafka_bootstrap), topics.INPUT_TOPICS)
    # From now, to the millisecond of the records' timestamps: an earlier test's record
    # published a moment ago stays out of the window.
    now = datetime.now(UTC)
    since = now.replace(microsecond=now.microsecond // 1000 * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for line in lines:
            await producer.send_and_wait(
                line.topic,
                json.dumps(line.event).encode(),
                key=line.key.encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
        await producer.send_and_wait(topics.ORDERS, b"{not json", key=b"O-bad")
    finally:
        await producer.stop()

    recording = tmp_path / "recorded.jsonl"
    code, output = await run_cli(
        database_url,
        "record",
        "--out",
        str(recording),
        "--since",
        since.isoformat(),
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
    )
    assert code == 0, output
    assert f"recorded: {len(lines) + 1:,} records written to {recording}, done" in output

    recorded = [json.loads(text) for text in recording.read_text(encoding="utf-8").splitlines()]
    assert len(recorded) == len(lines) + 1
    assert {(r["topic"], r["key"], r["event"]["id"]) for r in recorded if "event" in r} == {
        (line.topic, line.key, line.event["id"]) for line in lines
    }
    assert all(isinstance(r["partition"], int) and isinstance(r["offset"], int) for r in recorded)
    [poison] = [r for r in recorded if "value" in r]
    assert poison == {**poison, "topic": topics.ORDERS, "key": "O-bad", "value": "{not json"}

    published = tmp_path / "published.jsonl"
    write(published, lines)
    candidate = tmp_path / "candidate.toml"
    candidate.write_text("[returns]\nno_reason_days = 15\n", encoding="utf-8")
    # Off the test's event loop: a replay runs its own.
    replayed = await asyncio.to_thread(simulate, recording, candidate)
    expected = await asyncio.to_thread(simulate, published, candidate)
    assert replayed.flips and replayed.flips == expected.flips
    assert replayed.refund_changes == expected.refund_changes
    assert replayed.totals == expected.totals
    assert dict(replayed.invalid) == {"malformed_json": 1}
