"""End to end into the real store: `tooltrail proxy` with embedded delivery (the write path
of this machine's data dir), over stdio and over Streamable HTTP; then every call is found
with `ReadOnlyQuery`, the secret in the arguments is redacted, and `verify` passes."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.mcp.conftest import example_argv, free_port, proc_env, proxy_argv, wait_port

pytest.importorskip("fastmcp")
pytest.importorskip("ingest.redact")
from fastmcp import Client  # noqa: E402
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport  # noqa: E402

SECRET = "AKIAIOSFODNN7EXAMPLE"


async def scripted(c: Client) -> None:
    async with c:
        await c.list_tools()
        await c.call_tool("echo", {"text": "hello"})
        await c.call_tool("write_note", {"key": "creds", "text": f"aws key {SECRET}"})
        await c.call_tool("read_note", {"key": "creds"})
        with pytest.raises(Exception, match="no note named"):
            await c.call_tool("read_note", {"key": "missing"})


@pytest.mark.parametrize("front", ["stdio", "http"])
def test_calls_land_in_store_redacted_and_verified(tmp_path, procs, front):
    from ingest.layout import Layout
    from ingest.verify import verify
    from tooltrail.query import ReadOnlyQuery

    data = tmp_path / "data"
    env = proc_env(TOOLTRAIL_DATA_DIR=str(data))
    common = ["--name", "notes", "--principal", "alice", "--spool-dir", str(tmp_path / "spool")]
    if front == "stdio":
        argv = proxy_argv(*common, "--", *example_argv())
        asyncio.run(scripted(Client(StdioTransport(command=argv[0], args=argv[1:], env=env, keep_alive=False))))
    else:
        port = free_port()
        px = procs.start(proxy_argv(*common, "--serve", "http", "--port", str(port), "--", *example_argv()), env)
        wait_port(port, proc=px)
        asyncio.run(scripted(Client(StreamableHttpTransport(f"http://127.0.0.1:{port}/mcp"), mode="legacy")))
        px.terminate()  # graceful: delivers, seals the segment, signs a checkpoint
        assert px.wait(30) == 0

    q = ReadOnlyQuery.at(data)
    rows = q.sql("select tool, principal, session, server, server_version, decision, result, error, latency_ms, "
                 "result_bytes, tool_description_hash, source, chain_id, args::VARCHAR as args, "
                 "redaction_count, labels::VARCHAR as labels from events order by seq").to_pylist()
    assert [r["tool"] for r in rows] == ["echo", "write_note", "read_note", "read_note"]
    for r in rows:
        assert r["principal"] == "alice" and r["server"] == "notes" and r["server_version"] == "1.2.3"
        assert r["source"] == "proxy:notes" and r["chain_id"] == "proxy-notes"
        assert r["decision"] == "allow" and r["latency_ms"] > 0 and len(r["tool_description_hash"]) == 64
        assert json.loads(r["labels"])["transport"] == ("stdio" if front == "stdio" else "streamable-http")
    assert len({r["session"] for r in rows}) == 1
    assert [r["result"] for r in rows] == ["ok", "ok", "ok", "error"]
    assert "no note named" in rows[3]["error"]
    write = rows[1]
    assert SECRET not in write["args"] and "[REDACTED:" in write["args"] and write["redaction_count"] >= 1
    # the read returned the secret; results are not recorded, only their size
    assert rows[2]["result_bytes"] >= len(SECRET)
    everything = q.sql("select record from events").to_pylist()
    assert all(SECRET not in r["record"] for r in everything)
    report = verify(Layout.at(data))
    assert report.ok, report.to_dict()
    assert report.events == 4
