"""Start-up waits for a broker or database not reachable yet, and no longer than it is told."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError
from asyncpg.exceptions import CannotConnectNowError, InvalidPasswordError

from aftersales.commands import database
from shared.messaging import topics
from shared.settings import Settings


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def broker_down_for(monkeypatch: pytest.MonkeyPatch, attempts: int) -> list[list[str]]:
    calls: list[list[str]] = []

    async def ensure_topics(settings: Settings, wanted: list[str]) -> None:
        calls.append(wanted)
        if len(calls) <= attempts:
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")

    monkeypatch.setattr(topics, "ensure_topics", ensure_topics)
    return calls


async def test_a_broker_that_comes_up_within_the_wait_is_waited_for(monkeypatch):
    calls = broker_down_for(monkeypatch, attempts=4)
    time = FakeTime()
    await topics.ensure_topics_once_reachable(
        Settings(), iter(["a", "b"]), wait_s=30, sleep=time.sleep, monotonic=time.monotonic
    )
    assert calls == [["a", "b"]] * 5  # the topics asked for every time, not a spent iterator
    assert time.pauses == [0.5, 1.0, 2.0, 4.0]  # backing off


async def test_past_the_wait_the_broker_error_is_raised(monkeypatch):
    calls = broker_down_for(monkeypatch, attempts=100)
    time = FakeTime()
    with pytest.raises(KafkaConnectionError):
        await topics.ensure_topics_once_reachable(
            Settings(), ["a"], wait_s=30, sleep=time.sleep, monotonic=time.monotonic
        )
    assert time.now == 30  # the last pause cut to what was left of the wait
    assert time.pauses == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 2.5]
    assert len(calls) == len(time.pauses) + 1


async def test_no_wait_is_one_attempt(monkeypatch):
    calls = broker_down_for(monkeypatch, attempts=1)
    with pytest.raises(KafkaConnectionError):
        await topics.ensure_topics_once_reachable(Settings(), ["a"], wait_s=0)
    assert len(calls) == 1


class Wrapped(Exception):
    """As SQLAlchemy wraps a driver's error: the driver's in `orig`'s cause."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("wrapped")
        self.orig = Exception("adapted")
        self.orig.__cause__ = cause


@pytest.mark.parametrize(
    ("error", "passing"),
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (Wrapped(ConnectionRefusedError(111, "Connection refused")), True),
        (TimeoutError(), True),
        (Wrapped(CannotConnectNowError("the database system is starting up")), True),
        (Wrapped(InvalidPasswordError("password authentication failed")), False),
        (ValueError("no such database"), False),
    ],
)
def test_only_a_database_not_reachable_yet_is_tried_again(error, passing):
    assert database._passing(error) is passing


async def test_a_stop_while_waiting_ends_the_wait_at_once(monkeypatch):
    import asyncio

    calls = broker_down_for(monkeypatch, attempts=100)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, stop.set)
    started = loop.time()
    reached = await topics.ensure_topics_once_reachable(Settings(), ["a"], wait_s=60, stop=stop)
    assert reached is False
    assert loop.time() - started < 2  # not the whole wait, nor the next pause's end
    assert 1 <= len(calls) <= 2
