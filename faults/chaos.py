"""The chaos loop of the fault run: services killed, stopped and paused, PostgreSQL restarted,
slowed and blackholed, broker connections cut, the delivery gateway failing or hanging."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

from aftersales_dev.devenv import tail

from .gateway import DeliveryGateway
from .infra import Infra, ServiceProcess, say

# max.poll.interval of the slow returns instance: a database blackhole (1-5 s) or latency on
# top of a batch's own time outlasts it now and then.
SLOW_POLL_INTERVAL_MS = 4000


@dataclass
class Chaos:
    instances: list[ServiceProcess]
    infra: Infra
    rng: random.Random
    kills_until: float  # monotonic instant after which no service is killed any more
    gateway: DeliveryGateway | None = None  # the notifier's SMS gateway
    kills: int = 0
    db_restarts: int = 0
    drops: int = 0
    connections_cut: int = 0
    crashes: list[str] = field(default_factory=list)  # exits nobody asked for
    log: list[str] = field(default_factory=list)
    terms: int = 0
    pauses: int = 0
    _busy: set[str] = field(default_factory=set)  # instances a chaos action is working on

    async def run(self, until: float, *, gap: tuple[float, float]) -> None:
        weights = {"kill": 4, "term": 1, "pause": 2, "db": 2, "drop": 3, "db_slow": 2, "db_hold": 1}
        if self.gateway is not None:
            weights |= {"gw_fail": 2, "gw_hang": 2}
        if self.infra.postgres is None:
            del weights["db"]
        if self.infra.db_proxy is None:
            del weights["db_slow"], weights["db_hold"]
        if self.infra.broker is None:
            del weights["drop"]
        background: list[asyncio.Task[None]] = []
        while (remaining := until - time.monotonic()) > 0:
            await asyncio.sleep(min(self.rng.uniform(*gap), remaining))
            if time.monotonic() >= until:
                break
            on_services = time.monotonic() < self.kills_until
            allowed = [a for a in weights if on_services or a not in ("kill", "term", "pause")]
            action = self.rng.choices(allowed, [weights[a] for a in allowed])[0]
            if action in ("kill", "term", "pause"):
                running = [i for i in self.instances if i.running and i.name not in self._busy]
                if not running:
                    continue
                victim = self.rng.choice(running)
                self._busy.add(victim.name)
                if action == "kill":
                    self._note(f"SIGKILL {victim.name} (pid {victim.pid})")
                    victim.kill()
                    self.kills += 1
                    background.append(asyncio.create_task(self._restart(victim)))
                elif action == "term":
                    self._note(f"SIGTERM {victim.name} (pid {victim.pid}), graceful stop")
                    background.append(asyncio.create_task(self._graceful(victim)))
                else:
                    pause = self.rng.uniform(2, 15)
                    self._note(f"SIGSTOP {victim.name} (pid {victim.pid}) for {pause:.1f} s")
                    background.append(asyncio.create_task(self._pause(victim, pause)))
            elif action in ("db_slow", "db_hold"):
                proxy = self.infra.db_proxy
                assert proxy is not None
                seconds = self.rng.uniform(1, 5)
                if action == "db_slow":
                    latency = self.rng.uniform(20, 200)
                    self._note(f"PostgreSQL {latency:.0f} ms slower per packet for {seconds:.1f} s")
                    await asyncio.to_thread(proxy.slow, latency, seconds)
                else:
                    self._note(f"PostgreSQL blackholed (nothing forwarded) for {seconds:.1f} s")
                    await asyncio.to_thread(proxy.hold, seconds)
            elif action in ("gw_fail", "gw_hang"):
                assert self.gateway is not None
                seconds = self.rng.uniform(1, 4)
                if action == "gw_fail":
                    self._note(f"delivery gateway answers 503 for {seconds:.1f} s")
                    self.gateway.fail(seconds)
                else:
                    self._note(f"delivery gateway holds requests, {seconds:.1f} s")
                    self.gateway.hang(seconds)
            elif action == "db":
                assert self.infra.postgres is not None
                self._note("PostgreSQL restart")
                await asyncio.to_thread(self.infra.postgres.restart)
                self.db_restarts += 1
            else:
                assert self.infra.broker is not None
                blackout = self.rng.uniform(0, 2.5)
                cut = await asyncio.to_thread(self.infra.broker.drop, blackout)
                self.drops += 1
                self.connections_cut += cut
                self._note(f"broker connections dropped ({cut}), refused for {blackout:.1f} s")
        for task in background:
            await task

    async def _restart(self, victim: ServiceProcess) -> None:
        await asyncio.sleep(self.rng.uniform(0, 3))
        victim.start()
        self._busy.discard(victim.name)

    async def _graceful(self, victim: ServiceProcess) -> None:
        code = await asyncio.to_thread(victim.terminate)
        self.terms += 1
        if code != 0:
            self.crashes.append(f"{victim.name} stopped with {code} on SIGTERM")
        await self._restart(victim)

    async def _pause(self, victim: ServiceProcess, seconds: float) -> None:
        victim.pause()
        await asyncio.sleep(seconds)
        victim.resume()
        self.pauses += 1
        self._busy.discard(victim.name)

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart an instance that exited by itself (as an orchestrator would), noting it."""
        while not stop.is_set():
            for instance in self.instances:
                proc = instance.proc
                if instance.name in self._busy or proc is None or proc.poll() is None:
                    continue
                self.crashes.append(
                    f"{instance.name} exited with {proc.returncode}: {last_error(instance)}"
                )
                self._note(f"{instance.name} exited by itself ({proc.returncode}); restarted")
                instance.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def _note(self, text: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {text}")
        say(f"chaos: {text}")


def last_error(instance: ServiceProcess) -> str:
    """The last exception line of an instance's log (why it exited)."""
    lines = tail(instance.run_dir / f"{instance.name}.log", 60).splitlines()
    errors = [
        line
        for line in lines
        if line.startswith("aftersales:") or (line[:1].isalnum() and "Error: " in line[:60])
    ]
    return errors[-1][:200] if errors else "no error logged"
