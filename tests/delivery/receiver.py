"""A real HTTP receiver on loopback for delivery tests: scripted responses, every request kept."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """`script`: responses (status, headers) used in order; afterwards `default`."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, dict[str, str]] = (200, {})
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        rcv = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                with lock:
                    status, headers = rcv.script.pop(0) if rcv.script else rcv.default
                    rcv.received.append(Received(time.time(), self.path, {k.lower(): v for k, v in self.headers.items()},
                                                 body, status))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v.replace("{port}", str(rcv.port)))
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def wait_for(self, pred, timeout: float = 15.0) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if pred(self.received):
                return True
            time.sleep(0.02)
        return pred(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
