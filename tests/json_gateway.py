"""A real HTTP gateway in a thread for the broker suites: the notifier's SMS gateway or webhook
posts its JSON bodies here."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Gateway:
    """Records every JSON body posted to it and answers 200, or for a body whose `id` has a
    script, the scripted statuses first. `url` ends in `path`."""

    def __init__(self, path: str = "/sms") -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.script: dict[str, list[int]] = {}  # request id -> statuses, then 200
        lock = threading.Lock()
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with lock:
                    pending = state.script.get(body.get("id"), [])
                    status = pending.pop(0) if pending else 200
                    state.bodies.append(body)
                    state.statuses.append(status)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def of(self, customer_id: str) -> list[dict[str, Any]]:
        """The bodies sent about `customer_id`."""
        return [b for b in list(self.bodies) if b.get("customer_id") == customer_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
