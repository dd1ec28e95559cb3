"""agentgateway access-log records (JSON log format) -> v1.

agentgateway logs one access-log line per request; for MCP traffic it adds MCP and
OpenTelemetry GenAI attributes. Keys are flat dotted names::

    {"time": "...", "http.method": "POST", "http.path": "/mcp", "http.status": 200,
     "protocol": "mcp", "mcp.method.name": "tools/call", "mcp.session.id": "...",
     "gen_ai.tool.name": "echo", "mcp.target": "everything", "jsonrpc.request.id": "3",
     "trace.id": "...", "span.id": "...", "duration": "12ms", "jwt.sub": "alice",
     "src.addr": "127.0.0.1:51822"}

Older releases used ``mcp.method`` / ``mcp.resource.type`` / ``mcp.resource.name``; both are
accepted, as is the same data nested (``{"mcp": {"method": {"name": ...}}}``). The principal
is whatever the gateway's logging config added: ``jwt.sub``, ``user.id``, ``enduser.id``.
"""

from __future__ import annotations

from typing import Any

from ingest.adapters.base import (
    Adapter,
    SkipRecord,
    as_args,
    as_json,
    clean_event,
    dig,
    event_id,
    parse_duration_ms,
    parse_ts,
    principal_or_anonymous,
    put_label,
    session_or_synthetic,
)


class AgentGatewayAdapter(Adapter):
    name = "agentgateway"
    description = "agentgateway access-log JSON with OTel GenAI/MCP attributes"
    provenance = ("agentgateway access logging (JSON format) with the OTel MCP semantic-convention attributes "
                  "mcp.method.name, mcp.session.id, gen_ai.tool.name, jsonrpc.request.id; reconstructed from the "
                  "project's docs/source as of v0.7-v0.9")

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        fields = record.get("fields") if isinstance(record.get("fields"), dict) else record  # tracing JSON layout
        method = dig(fields, "mcp.method.name", "mcp.method")
        rtype = dig(fields, "mcp.resource.type")
        if method != "tools/call" and not (method is None and rtype == "tool"):
            raise SkipRecord(f"agentgateway: not a tool call (mcp method {method!r})")
        tool = dig(fields, "gen_ai.tool.name", "mcp.tool.name", "mcp.resource.name", "mcp.resource")
        if not tool:
            raise ValueError("agentgateway: tools/call record without gen_ai.tool.name / mcp.resource.name")
        labels: dict[str, str] = {"adapter": self.name}
        principal = principal_or_anonymous(dig(fields, "jwt.sub", "user.id", "enduser.id", "user", "principal"),
                                           labels)
        status = dig(fields, "http.status", "http.status_code", "http.response.status_code")
        try:
            status = int(status) if status is not None else None
        except (TypeError, ValueError):
            status = None
        err_type = dig(fields, "error.type", "error")
        rpc_code = dig(fields, "rpc.response.status_code", "jsonrpc.error.code", "mcp.error.code")
        denied = status in (401, 403) or str(dig(fields, "authz.decision", "mcp.authorization", default="")).lower() \
            in ("deny", "denied")
        if denied:
            result = "denied"
        elif (status is not None and status >= 400) or err_type or (rpc_code not in (None, "", 0, "0")):
            result = "error"
        else:
            result = "ok"
        error = None
        if result == "error":
            error = dig(fields, "error.message", "mcp.error.message") or (
                f"{err_type or ''} HTTP {status}" if status and status >= 400 else f"{err_type or 'JSON-RPC error'}"
                + (f" (code {rpc_code})" if rpc_code not in (None, "") else ""))
        trace = dig(fields, "trace.id", "trace_id", "traceId")
        target = dig(fields, "mcp.target", "mcp.server.name", "backend", "endpoint")
        put_label(labels, "gateway", dig(fields, "gateway"))
        put_label(labels, "route", dig(fields, "route"))
        put_label(labels, "source_address", dig(fields, "src.addr", "client.address"))
        put_label(labels, "jsonrpc.request_id", dig(fields, "jsonrpc.request.id", "mcp.request.id"))
        put_label(labels, "http.status", status)
        ev = {
            "event_id": event_id("agentgateway", trace, dig(fields, "span.id", "span_id", "spanId")),
            "ts": parse_ts(dig(record, "time", "timestamp", "ts") or dig(fields, "start_time"), "time"),
            "principal": principal,
            "agent": dig(fields, "mcp.client.name", "gen_ai.agent.name", "user_agent.original", "http.user_agent"),
            "session": session_or_synthetic(dig(fields, "mcp.session.id", "mcp.session_id", "session.id"),
                                            f"agentgateway:{trace or principal}", labels),
            "correlation_id": trace,
            "server": target,
            "tool": tool,
            "args": as_args(as_json(dig(fields, "gen_ai.tool.call.arguments", "mcp.tool.arguments"))),
            "decision": "deny" if denied else "allow",
            "reason": (dig(fields, "authz.reason", "reason") or f"rejected by the gateway (HTTP {status})")
            if denied else None,
            "result": result,
            "error": error,
            "latency_ms": parse_duration_ms(dig(fields, "duration", "duration_ms", "latency")),
            "labels": labels,
        }
        return clean_event(ev)
