"""Server middleware: a fastmcp server and an official-SDK server each add auditing in two
lines; events carry the same fields as the proxy's."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from ingest.emitter import Emitter, MemorySpool, Outcome
from ingest.mcp import POLICY_DENIED_CODE, Policy, audit, hash_fastmcp_tool, hash_wire_tool, sdk_audit
from schemas.event import ToolCallEvent

pytest.importorskip("fastmcp")


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.got: list[dict] = []

    def send(self, lines):
        self.got.extend(orjson.loads(x) for x in lines)
        return Outcome(True, stored=len(lines))

    def close(self):
        pass


def memory_emitter() -> tuple[Emitter, ListSink]:
    sink = ListSink()
    return Emitter(sink, MemorySpool(), flush_interval_s=0.02), sink


def fastmcp_server():
    from fastmcp import FastMCP

    mcp = FastMCP("inventory", version="3.1.0")

    @mcp.tool(description="Look up stock for a SKU.")
    def stock(sku: str) -> int:
        if sku == "bad":
            raise ValueError("unknown sku")
        return 7

    @mcp.tool(description="Delete a SKU.")
    def delete_sku(sku: str) -> str:
        return "deleted"

    return mcp


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_fastmcp_two_line_middleware(mode):
    from fastmcp import Client
    from mcp.shared.exceptions import MCPError

    em, sink = memory_emitter()
    mcp = fastmcp_server()
    mcp.add_middleware(audit(em, principal="svc-inventory", policy=Policy(deny=["delete_*"])))  # the 2nd line

    async def go():
        async with Client(mcp, mode=mode) as c:
            tools = {t.name: t for t in await c.list_tools()}
            assert (await c.call_tool("stock", {"sku": "a1"})).data == 7
            with pytest.raises(Exception, match="unknown sku"):
                await c.call_tool("stock", {"sku": "bad"})
            with pytest.raises(MCPError) as denied:
                await c.call_tool("delete_sku", {"sku": "a1"})
            return tools, denied.value

    tools, denied = asyncio.run(go())
    assert denied.error.code == POLICY_DENIED_CODE
    assert em.flush(5)
    em.close()
    evs = sink.got
    assert [e["tool"] for e in evs] == ["stock", "stock", "delete_sku"]
    for e in evs:
        ToolCallEvent.model_validate(e)
        assert e["principal"] == "svc-inventory" and e["server"] == "inventory" and e["server_version"] == "3.1.0"
        assert e["labels"]["collector"] == "tooltrail-fastmcp-middleware"
    ok, err, deny = evs
    assert ok["result"] == "ok" and ok["result_bytes"] >= 1 and ok["args"] == {"sku": "a1"}
    assert err["result"] == "error" and "unknown sku" in err["error"]
    assert deny["decision"] == "deny" and deny["result"] == "denied" and "deny list" in deny["reason"]
    local = {t.name: t for t in asyncio.run(mcp.list_tools())}
    assert ok["tool_description_hash"] == hash_fastmcp_tool(local["stock"])
    assert hash_wire_tool(tools["stock"]) == ok["tool_description_hash"]  # same hash as a proxy would compute


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_official_sdk_two_line_middleware(mode):
    from mcp import Client
    from mcp.server.mcpserver import MCPServer
    from mcp.shared.exceptions import MCPError

    em, sink = memory_emitter()
    server = MCPServer("billing", version="0.9", middleware=[sdk_audit(em, principal="svc-billing",
                                                                       policy=Policy(allow=["get_*"]))])

    @server.tool(description="Open invoices of a customer.")
    def get_open_invoices(customer_id: int) -> list[int]:
        if customer_id < 0:
            raise ValueError("no such customer")
        return [1, 2]

    @server.tool(description="Refund an invoice.")
    def refund(invoice: int) -> str:
        return "ok"

    async def go():
        async with Client(server, mode=mode) as c:
            tools = (await c.list_tools()).tools
            await c.call_tool("get_open_invoices", {"customer_id": 5512})
            r = await c.call_tool("get_open_invoices", {"customer_id": -1})
            assert r.is_error
            with pytest.raises(MCPError) as denied:
                await c.call_tool("refund", {"invoice": 1})
            return {t.name: t for t in tools}, denied.value

    tools, denied = asyncio.run(go())
    assert denied.error.code == POLICY_DENIED_CODE and "allow list" in denied.error.message
    assert em.flush(5)
    em.close()
    evs = sink.got
    assert [e["tool"] for e in evs] == ["get_open_invoices", "get_open_invoices", "refund"]
    for e in evs:
        ToolCallEvent.model_validate(e)
        assert e["principal"] == "svc-billing"
        assert e["labels"]["collector"] == "tooltrail-sdk-middleware"
    ok, err, deny = evs
    assert ok["result"] == "ok" and ok["args"] == {"customer_id": 5512}
    assert ok["tool_description_hash"] == hash_wire_tool(tools["get_open_invoices"])
    assert err["result"] == "error" and "get_open_invoices" in err["error"]  # the SDK masks the text
    assert deny["decision"] == "deny" and deny["result"] == "denied"
    if mode == "legacy":  # learnt from the initialize result passing through the middleware
        assert ok["server"] == "billing" and ok["server_version"] == "0.9"


def test_sdk_middleware_with_explicit_identity():
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    em, sink = memory_emitter()
    server = MCPServer("x", middleware=[sdk_audit(em, server="billing", server_version="2.0")])

    @server.tool()
    def ping() -> str:
        return "pong"

    async def go():
        async with Client(server) as c:
            await c.call_tool("ping", {})

    asyncio.run(go())
    assert em.flush(5)
    em.close()
    (e,) = sink.got
    assert e["server"] == "billing" and e["server_version"] == "2.0" and e["result"] == "ok"
    assert "tool_description_hash" not in e  # no tools/list seen: nothing to stamp


def test_hide_denied_tools_and_default_scopes():
    from fastmcp import Client
    from mcp.shared.exceptions import MCPError

    em, sink = memory_emitter()
    mcp = fastmcp_server()
    policy = Policy(deny=["delete_*"], hide_denied=True, default_scopes=["stock:read"],
                    required_scopes={"stock": ["stock:read"]})
    mcp.add_middleware(audit(em, policy=policy))

    async def go():
        async with Client(mcp) as c:
            names = [t.name for t in await c.list_tools()]
            await c.call_tool("stock", {"sku": "a"})
            with pytest.raises(MCPError):
                await c.call_tool("delete_sku", {"sku": "a"})  # hidden, and still denied when called
            return names

    assert asyncio.run(go()) == ["stock"]
    assert em.flush(5)
    em.close()
    ok, deny = sink.got
    assert ok["scope_checked"] == "stock:read" and ok["scopes_granted"] == ["stock:read"]
    assert ok["principal"].startswith("os:") and ok["labels"]["principal_source"] == "os-user"
    assert deny["decision"] == "deny"
