"""The proxy against a real `tooltrail serve`: the collector is SIGKILLed while the proxy
runs and MCP calls keep flowing; after the restart every call is stored exactly once, the
secret is redacted and `verify` passes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.mcp.conftest import ROOT, example_argv, free_port, proc_env, proxy_argv

pytest.importorskip("fastmcp")
pytest.importorskip("ingest.http.app")
from fastmcp import Client  # noqa: E402
from fastmcp.client.transports import StdioTransport  # noqa: E402

INGEST_TOKEN = "proxy-ingest-token-0123456789abcdef"
SECRET = "ghp_1234567890abcdefghijklmnopqrstuvwxyzAB"


class Serve:
    def __init__(self, data_dir, port: int) -> None:
        self.port = port
        self.env = proc_env(TOOLTRAIL_DATA_DIR=str(data_dir), TOOLTRAIL_API_KEYS=f"proxy-notes={INGEST_TOKEN}",
                            TOOLTRAIL_STORAGE__SEGMENT_MAX_SECONDS="0.2")
        self.log = data_dir.parent / f"serve-{port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Serve:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "tooltrail.cli", "serve", "--port", str(self.port)],
                                         cwd=ROOT, env=self.env, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(self.log.read_text()[-3000:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        self.proc.wait(60)


def test_collector_sigkilled_and_restarted_nothing_lost(tmp_path):
    from ingest.layout import Layout
    from ingest.verify import verify
    from tooltrail.query import ReadOnlyQuery

    data = tmp_path / "data"
    data.mkdir()
    serve = Serve(data, free_port()).start()
    argv = proxy_argv("--name", "notes", "--principal", "alice", "--collector", serve.url,
                      "--spool-dir", str(tmp_path / "spool"), "--", *example_argv())
    env = proc_env(TOOLTRAIL_COLLECTOR_TOKEN=INGEST_TOKEN)
    client = Client(StdioTransport(command=argv[0], args=argv[1:], env=env, keep_alive=False), mode="legacy")

    async def go():
        async with client:
            await client.list_tools()
            await client.call_tool("write_note", {"key": "gh", "text": f"token {SECRET}"})
            for i in range(10):
                await client.call_tool("echo", {"text": f"a{i}"})
            await asyncio.sleep(0.5)  # some of these reached the collector
            serve.kill(signal.SIGKILL)
            for i in range(15):
                await client.call_tool("echo", {"text": f"b{i}"})
            serve.start()
            for i in range(5):
                await client.call_tool("echo", {"text": f"c{i}"})

    asyncio.run(asyncio.wait_for(go(), 180))
    serve.kill(signal.SIGTERM)  # seal and sign before reading
    q = ReadOnlyQuery.at(data)
    rows = q.sql("select tool, source, principal, args::VARCHAR as args, redaction_count, event_id "
                 "from events").to_pylist()
    texts = sorted(__import__("json").loads(r["args"]).get("text") for r in rows if r["tool"] == "echo")
    assert texts == sorted([f"a{i}" for i in range(10)] + [f"b{i}" for i in range(15)] + [f"c{i}" for i in range(5)])
    assert len(rows) == 31 and len({r["event_id"] for r in rows}) == 31  # exactly once
    assert all(r["source"] == "proxy-notes" and r["principal"] == "alice" for r in rows)
    (w,) = [r for r in rows if r["tool"] == "write_note"]
    assert SECRET not in w["args"] and w["redaction_count"] >= 1
    report = verify(Layout.at(data))
    assert report.ok, report.to_dict()
