"""A delivery gateway for the notifier (its SMS gateway URL points here) that can fail.

It answers 200 and records every message it accepted by its `Idempotency-Key` (the
notification's request id), as a real gateway would to deduplicate retries. The chaos loop
makes it answer 503 for a while (`fail`), or hold each request longer than the notifier's
HTTP timeout before accepting it (`hang`: the notifier sees a timeout and retries a message
the gateway already has; the key tells the gateway it is the same one).

The benchmark uses it as it is, never failing, with keep-alive connections (`keep_alive`) as a
real gateway would keep them, and reads when each message first arrived (`first_seen`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG_SECONDS = 7.0  # longer than the notifier's HTTP timeout (5 s)


class _Server(ThreadingHTTPServer):
    # The notifier opens up to 16 connections at once: more than the default listen backlog.
    request_queue_size = 64
    daemon_threads = True


class DeliveryGateway:
    def __init__(self, *, keep_alive: bool = False) -> None:
        self.accepted: Counter[str] = Counter()  # 2xx answers by Idempotency-Key
        self.first_seen: dict[str, float] = {}  # epoch s of each key's first 2xx answer
        self.refused = 0  # 503 answers
        self.hung = 0  # requests held past the notifier's timeout
        self.failures = 0  # fail windows
        self.hangs = 0  # hang windows
        self._fail_until = 0.0
        self._hang_until = 0.0
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                key = self.headers.get("idempotency-key") or ""
                now = time.monotonic()
                if now < gateway._fail_until:
                    with gateway._lock:
                        gateway.refused += 1
                    self._answer(503)
                    return
                if now < gateway._hang_until:
                    with gateway._lock:
                        gateway.hung += 1
                    time.sleep(HANG_SECONDS)
                with gateway._lock:
                    gateway.accepted[key] += 1
                    gateway.first_seen.setdefault(key, time.time())
                self._answer(200)

            def _answer(self, status: int) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the notifier gave up waiting (a hang): the message is accepted anyway

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/send"

    def start(self) -> DeliveryGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, seconds: float) -> None:
        """Answer 503 (transient: the notifier retries later) for `seconds`."""
        self._fail_until = time.monotonic() + seconds
        self.failures += 1

    def hang(self, seconds: float) -> None:
        """Hold every request that arrives in the next `seconds` past the notifier's timeout."""
        self._hang_until = time.monotonic() + seconds
        self.hangs += 1
