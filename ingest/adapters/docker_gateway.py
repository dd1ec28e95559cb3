"""Docker MCP Gateway (docker/mcp-gateway) policy / tool-call audit events -> v1.

The gateway evaluates a policy before each ``tools/call`` (and logs calls with
``--log-calls``); its audit records carry the server, the tool, the arguments, the client
and the policy decision. The field names below are the ones we reconstructed; the adapter
accepts the common aliases because the format is young and not formally specified::

    {"timestamp": "...", "event": "policy.decision" | "tool.call", "server": "github-official",
     "tool": "delete_repository", "arguments": {...}, "decision": "deny", "policy": "...",
     "reason": "...", "client": {"name": "...", "version": "..."}, "user": "...",
     "session_id": "...", "duration_ms": 12, "status": "ok" | "error", "error": "..."}
"""

from __future__ import annotations

from typing import Any

from ingest.adapters.base import (
    Adapter,
    SkipRecord,
    as_args,
    clean_event,
    dig,
    event_id,
    parse_duration_ms,
    parse_ts,
    principal_or_anonymous,
    put_label,
    session_or_synthetic,
)

_DENY = {"deny", "denied", "block", "blocked", "reject", "rejected", "forbid", "forbidden"}
_ALLOW = {"allow", "allowed", "permit", "permitted", "accept", "accepted", "pass"}


class DockerGatewayAdapter(Adapter):
    name = "docker-mcp-gateway"
    description = "Docker MCP Gateway policy / tool-call audit events (JSON lines)"
    provenance = ("docker/mcp-gateway policy evaluation and --log-calls output, reconstructed from the project's "
                  "docs/source as of v0.2x; field names are best effort and aliases are accepted")

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        kind = str(dig(record, "event", "type", "kind", "msg", default="")).lower()
        method = dig(record, "method", "request.method")
        tool = dig(record, "tool", "tool_name", "toolName", "request.params.name", "params.name")
        if not tool:
            if kind and "tool" not in kind and "policy" not in kind:
                raise SkipRecord(f"docker-mcp-gateway: not a tool call ({kind!r})")
            raise ValueError("docker-mcp-gateway: no tool name (tool / tool_name)")
        if method and method != "tools/call":
            raise SkipRecord(f"docker-mcp-gateway: not a tool call (method {method!r})")
        labels: dict[str, str] = {"adapter": self.name}
        principal = principal_or_anonymous(dig(record, "user", "principal", "user_id", "subject", "identity.user"),
                                           labels)
        raw_decision = str(dig(record, "decision", "action", "verdict", "policy.decision", default="allow")).lower()
        if raw_decision in _DENY:
            decision = "deny"
        elif raw_decision in _ALLOW:
            decision = "allow"
        else:
            raise ValueError(f"docker-mcp-gateway: unknown decision {raw_decision!r}")
        status = str(dig(record, "status", "outcome", "result", default="")).lower()
        error = dig(record, "error", "error_message")
        if decision == "deny":
            result = "denied"
        elif error or status in ("error", "failure", "failed"):
            result = "error"
        elif status in ("ok", "success", "succeeded"):
            result = "ok"
        else:
            result = None  # a policy decision logged before the call: outcome unknown here
        client = dig(record, "client.name", "client_name", "clientName")
        version = dig(record, "client.version", "client_version")
        server = dig(record, "server", "server_name", "serverName", "mcp_server")
        policy = dig(record, "policy", "policy_name", "policy.name", "rule")
        put_label(labels, "policy", policy)
        put_label(labels, "gateway_event", kind or None)
        put_label(labels, "image", dig(record, "image", "server_image"))
        reason = dig(record, "reason", "policy.reason")
        if decision == "deny" and not reason:
            reason = f"denied by policy {policy}" if policy else "denied by gateway policy"
        ev = {
            "event_id": event_id("docker-mcp-gateway", dig(record, "id", "event_id", "audit_id")),
            "ts": parse_ts(dig(record, "timestamp", "time", "ts"), "timestamp"),
            "principal": principal,
            "agent": f"{client}/{version}" if client and version else client,
            "session": session_or_synthetic(dig(record, "session_id", "sessionId", "session"),
                                            f"docker-mcp-gateway:{client or 'client'}:{principal}", labels),
            "server": server,
            "tool": tool,
            "args": as_args(dig(record, "arguments", "args", "request.params.arguments", "params.arguments")),
            "decision": decision,
            "reason": reason,
            "result": result,
            "error": error if result == "error" else None,
            "latency_ms": parse_duration_ms(dig(record, "duration_ms", "latency_ms"))
            or parse_duration_ms(dig(record, "duration")),
            "labels": labels,
        }
        return clean_event(ev)
