"""ToolHive (stacklok/toolhive) audit events -> v1.

ToolHive's audit middleware (``pkg/audit``) logs one ``AuditEvent`` per MCP request::

    {"type": "mcp_tool_call", "loggedAt": "...", "outcome": "success|failure|error|denied",
     "component": "<server>", "source": {"type": "network", "value": "<ip>", "extra": {...}},
     "subjects": {"user": "...", "user_id": "...", "client_name": "...", "client_version": "..."},
     "target": {"endpoint": "/mcp", "method": "tools/call", "type": "tool", "name": "<tool>"},
     "metadata": {"auditId": "...", "extra": {"duration_ms": 12, "transport": "...", ...}},
     "data": {"request": {...JSON-RPC request...}}}        # only with includeRequestData

Both the struct's JSON (camelCase ``loggedAt``/``auditId``) and the slog line form
(``audit_id``/``logged_at`` at top level, ``msg: "audit_event"``) are accepted.
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

_RESULT = {"success": "ok", "failure": "error", "error": "error", "denied": "denied"}


class ToolHiveAdapter(Adapter):
    name = "toolhive"
    description = "ToolHive AuditEvent JSON (thv proxy / operator audit log)"
    provenance = ("stacklok/toolhive pkg/audit (AuditEvent, event types mcp_*, outcomes success/failure/error/"
                  "denied), reconstructed from the project's source and docs as of v0.2-v0.3")

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        etype = dig(record, "type", "event_type")
        method = dig(record, "target.method")
        if etype != "mcp_tool_call" and method != "tools/call":
            raise SkipRecord(f"toolhive: not a tool call (type {etype!r}, method {method!r})")
        data = as_json(dig(record, "data"))
        request = as_json(dig(data, "request")) if isinstance(data, dict) else None
        tool = dig(record, "target.name", "target.resource_id") or dig(request, "params.name")
        if not tool:
            raise ValueError("toolhive: tool call without a tool name (target.name)")
        labels: dict[str, str] = {"adapter": self.name}
        subjects = dig(record, "subjects", default={}) or {}
        principal = principal_or_anonymous(dig(subjects, "user_id", "user", "sub"), labels)
        put_label(labels, "user", dig(subjects, "user"))
        outcome = str(dig(record, "outcome", default="success")).lower()
        result = _RESULT.get(outcome)
        if result is None:
            raise ValueError(f"toolhive: unknown outcome {outcome!r}")
        extra = dig(record, "metadata.extra", default={}) or {}
        component = dig(record, "component")
        session = dig(extra, "session_id", "mcp_session_id") or dig(record, "source.extra.session_id")
        client = dig(subjects, "client_name")
        agent = f"{client}/{dig(subjects, 'client_version')}" if client and dig(subjects, "client_version") \
            else client
        put_label(labels, "source_address", dig(record, "source.value"))
        put_label(labels, "user_agent", dig(record, "source.extra.user_agent"))
        put_label(labels, "transport", dig(extra, "transport"))
        put_label(labels, "endpoint", dig(record, "target.endpoint"))
        denied = result == "denied"
        ev = {
            "event_id": event_id("toolhive", dig(record, "metadata.auditId", "metadata.audit_id", "audit_id",
                                                 "auditId")),
            "ts": parse_ts(dig(record, "loggedAt", "logged_at", "time"), "loggedAt"),
            "principal": principal,
            "agent": agent,
            "session": session_or_synthetic(session, f"toolhive:{component or 'server'}:{principal}", labels),
            "server": component,
            "tool": tool,
            "args": as_args(dig(request, "params.arguments")),
            "decision": "deny" if denied else "allow",
            "reason": (dig(data, "reason") or "denied by ToolHive authorization policy") if denied else None,
            "result": result,
            "error": (dig(data, "error") or f"ToolHive outcome: {outcome}") if result == "error" else None,
            "latency_ms": parse_duration_ms(dig(extra, "duration_ms")),
            "result_bytes": dig(extra, "response_size_bytes", "response_size"),
            "labels": labels,
        }
        return clean_event(ev)
