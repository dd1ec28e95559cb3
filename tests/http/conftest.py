"""HTTP collector fixtures: a real uvicorn server on a loopback port (in a thread, or as a
`tooltrail serve` subprocess), real Ingestor, real files and fsync."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, cli_env

INGEST_TOKEN = "test-ingest-token-0123456789abcdef"
INGEST_TOKEN_2 = "test-ingest-token-second-0123456789"
READ_TOKEN = "test-read-token-0123456789abcdef"
H = {"Authorization": f"Bearer {INGEST_TOKEN}"}
H2 = {"Authorization": f"Bearer {INGEST_TOKEN_2}"}
R = {"Authorization": f"Bearer {READ_TOKEN}"}


def make_config(data_dir: Path, **http):
    from tooltrail.config import load_config

    cfg = load_config(data_dir=str(data_dir), env={
        "TOOLTRAIL_API_KEYS": f"gw1={INGEST_TOKEN},gw2={INGEST_TOKEN_2}",
        "TOOLTRAIL_READ_KEYS": f"analyst={READ_TOKEN}",
    })
    cfg.storage.segment_max_seconds = 0.2
    cfg.storage.checkpoint_every_seconds = 0.5
    for k, v in http.items():
        setattr(cfg.http, k, v)
    return cfg


class Running:
    def __init__(self, srv, app) -> None:
        self.srv, self.app = srv, app
        self.url = srv.url
        self.client = httpx.Client(base_url=srv.url, timeout=30)
        self.collector = app.state.collector

    def post(self, body=None, *, json=None, headers=None, **kw):
        hdrs = dict(H)
        hdrs.update(headers or {})
        if json is not None:
            return self.client.post("/v1/events", json=json, headers=hdrs, **kw)
        return self.client.post("/v1/events", content=body, headers=hdrs, **kw)

    def get(self, path, **kw):
        kw.setdefault("headers", R)
        return self.client.get(path, **kw)


@pytest.fixture
def serve_app(data_dir):
    """serve_app(**http_overrides, ingestor=None) -> Running; stopped at teardown."""
    from ingest.http.app import create_app
    from ingest.http.server import ThreadedServer

    started: list[Running] = []

    def _start(ingestor=None, config=None, **http):
        cfg = config or make_config(data_dir, **http)
        app = create_app(cfg, ingestor=ingestor)
        srv = ThreadedServer(app).start()
        r = Running(srv, app)
        started.append(r)
        return r

    yield _start
    for r in started:
        r.client.close()
        r.srv.stop()


@pytest.fixture
def server(serve_app):
    return serve_app()


def wait_sealed(data_dir, n: int, timeout: float = 20.0) -> list[dict]:
    from tooltrail.query import ReadOnlyQuery

    q = ReadOnlyQuery.at(data_dir)
    deadline = time.time() + timeout
    rows: list[dict] = []
    while time.time() < deadline:
        rows = q.rows("select event_id, source, chain_id, seq from events order by chain_id, seq", limit=10_000_000)
        if len(rows) >= n:
            return rows
        time.sleep(0.1)
    return rows


class ServeProcess:
    """`tooltrail serve` as a subprocess on a fixed port."""

    def __init__(self, data_dir: Path, port: int, *args: str, env: dict | None = None) -> None:
        self.data_dir, self.port, self.args = data_dir, port, args
        self.env = {**cli_env(data_dir), "TOOLTRAIL_API_KEYS": f"gw1={INGEST_TOKEN},gw2={INGEST_TOKEN_2}",
                    "TOOLTRAIL_READ_KEYS": f"analyst={READ_TOKEN}", "TOOLTRAIL_STORAGE__SEGMENT_MAX_SECONDS": "0.2",
                    "TOOLTRAIL_STORAGE__CHECKPOINT_EVERY_SECONDS": "0.5", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = data_dir.parent / f"serve-{port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServeProcess:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("already running")
        fh = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "tooltrail.cli", "serve", "--port", str(self.port),
                                      *self.args], cwd=ROOT, env=self.env, stdout=fh, stderr=fh)
        fh.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("serve did not become ready: " + self.log.read_text()[-3000:])

    def kill(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        self.proc.wait(60)


@pytest.fixture
def spawn_serve(data_dir):
    """spawn_serve(port, *args) -> started ServeProcess; killed at teardown if still running."""
    procs: list[ServeProcess] = []

    def _spawn(port: int, *args: str, **kw) -> ServeProcess:
        sp = ServeProcess(data_dir, port, *args, **kw)
        procs.append(sp)
        return sp.start()

    yield _spawn
    for sp in procs:
        if sp.proc is not None and sp.proc.poll() is None:
            sp.proc.kill()
            sp.proc.wait(30)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
