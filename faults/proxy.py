"""A small TCP proxy in front of the broker (or the database) whose connections the chaos loop
can cut, slow down or hold.

Run as its own process (so forwarding never waits on the runner's CPU work)::

    python -m faults.proxy --listen 127.0.0.1:PORT --target 127.0.0.1:PORT

and controlled through its stdin, one command a line:

* ``drop SECONDS``: reset (RST) every open connection, then refuse new ones for SECONDS
  (0: accept again at once). Clients see a broken connection and reconnect.
* ``slow MS SECONDS``: for SECONDS, every chunk of data waits MS milliseconds before it is
  forwarded (latency on every round trip).
* ``hold SECONDS``: forward nothing for SECONDS, closing nothing (a blackhole that heals: what
  was sent meanwhile arrives afterwards, as after TCP retransmissions).
* ``quit``: stop.

It prints ``ready`` once listening, ``dropped N`` after each drop and ``ok`` after the other
commands (stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import sys
import time

BUFFER = 256 * 1024


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.refuse_until = 0.0
        self.slow_until = 0.0
        self.slow_seconds = 0.0
        self.hold_until = 0.0
        self.connections: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.refuse_until:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.target_host, self.target_port, limit=BUFFER
            )
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self.connections.add(pair)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            self.connections.discard(pair)
            for w in pair:
                with contextlib.suppress(Exception):
                    w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(BUFFER):
                await self._gate()
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _gate(self) -> None:
        if (held := self.hold_until - time.monotonic()) > 0:
            await asyncio.sleep(held)
        if time.monotonic() < self.slow_until:
            await asyncio.sleep(self.slow_seconds)

    def drop(self, seconds: float) -> int:
        self.refuse_until = time.monotonic() + seconds
        dropped = len(self.connections)
        for pair in list(self.connections):
            for w in pair:
                _reset(w)
        self.connections.clear()
        return dropped


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), like a broken network path, not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def main_async(listen: tuple[str, int], target: tuple[str, int]) -> None:
    proxy = Proxy(*target)
    server = await asyncio.start_server(proxy.handle, *listen, limit=BUFFER, reuse_address=True)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with server:
        while line := await reader.readline():
            command, _, arg = line.decode().strip().partition(" ")
            if command == "drop":
                print(f"dropped {proxy.drop(float(arg or 0))}", flush=True)
            elif command == "slow":
                milliseconds, _, seconds = arg.partition(" ")
                proxy.slow_seconds = float(milliseconds) / 1000
                proxy.slow_until = time.monotonic() + float(seconds)
                print("ok", flush=True)
            elif command == "hold":
                proxy.hold_until = time.monotonic() + float(arg)
                print("ok", flush=True)
            elif command == "quit":
                break
    proxy.drop(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="host:port to listen on")
    parser.add_argument("--target", required=True, help="host:port of the broker or database")
    args = parser.parse_args(argv)
    asyncio.run(main_async(_address(args.listen), _address(args.target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
