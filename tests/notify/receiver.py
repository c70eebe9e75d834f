"""A webhook receiver on 127.0.0.1 for the tests: verifies each delivery's Standard Webhooks
signature with llmbatch.notify.signing.verify, records it, and answers 503 to the first
``fail_first`` deliveries (a receiver that is down for a while)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llmbatch.notify.signing import InvalidSignature, verify


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    secret: str = ""
    fail_first: int = 0
    # The clock the signatures' timestamps are checked against (tests move it).
    clock: Any = None
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verify(owner.secret, headers, body, now=owner.clock())
                    verified = True
                except InvalidSignature:
                    verified = False
                failing = len(owner.received) < owner.fail_first
                status = 401 if not verified else 503 if failing else 200
                owner.received.append(Received(headers, body, verified, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
