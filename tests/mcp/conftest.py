"""Fixtures for the MCP collector tests: a stand-in HTTP collector that speaks the
`POST /v1/events` contract of issue 4 (and can be killed and restarted), process helpers
for the example server and `tooltrail proxy`."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SERVER = Path(__file__).with_name("example_server.py")
TOKEN = "test-collector-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def proc_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["FASTMCP_LOG_LEVEL"] = "WARNING"
    env.pop("TOOLTRAIL_COLLECTOR_URL", None)
    env.update(extra)
    return env


CLI = "import sys; from tooltrail.cli import main; sys.exit(main(sys.argv[1:]))"


def proxy_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI, "proxy", *args]


def example_argv() -> list[str]:
    return [sys.executable, str(EXAMPLE_SERVER)]


class StubCollector:
    """In-process HTTP collector: bearer auth, JSON array / NDJSON / gzip bodies, per-event
    validation against the v1 model, dedup by event_id, 2xx with counts. `fail_with` makes
    it answer an error status instead; `stop()`/`start()` simulate a killed collector."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.events: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.requests = 0
        self.rejected: list[dict[str, Any]] = []
        self.fail_with: tuple[int, dict[str, str]] | None = None
        self.max_items: int | None = None
        self._srv: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StubCollector:
        coll = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                return

            def _reply(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                from schemas.event import ToolCallEvent

                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with coll._lock:
                    coll.requests += 1
                if self.path != "/v1/events":
                    return self._reply(404, {"error": "not found"})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._reply(401, {"error": "unauthorized"})
                if coll.fail_with is not None:
                    code, hdrs = coll.fail_with
                    return self._reply(code, {"error": "induced"}, hdrs)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                text = body.decode()
                if text.lstrip().startswith("["):
                    items = json.loads(text)
                else:
                    items = [json.loads(line) for line in text.splitlines() if line.strip()]
                if coll.max_items is not None and len(items) > coll.max_items:
                    return self._reply(413, {"error": "too many items"})
                stored = dup = 0
                rejected = []
                with coll._lock:
                    for i, it in enumerate(items):
                        try:
                            ToolCallEvent.model_validate(it)
                        except Exception as exc:
                            rejected.append({"index": i, "field": "?", "reason": str(exc)[:200]})
                            coll.rejected.append(it)
                            continue
                        eid = it["event_id"]
                        if eid in coll.events:
                            dup += 1
                            continue
                        coll.events[eid] = it
                        coll.order.append(eid)
                        stored += 1
                return self._reply(200, {"stored": stored, "duplicates": dup, "rejected": rejected})

        self._srv = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._srv.daemon_threads = True
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None

    def wait_for(self, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.events) >= n:
                    return [self.events[e] for e in self.order]
            time.sleep(0.05)
        with self._lock:
            raise AssertionError(f"expected {n} events, collector has {len(self.events)}")

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.events[e] for e in self.order]


@pytest.fixture
def collector() -> Iterator[StubCollector]:
    c = StubCollector().start()
    yield c
    c.stop()


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], env: dict[str, str], **kw: Any) -> subprocess.Popen:
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    yield ps
    ps.stop_all()
