"""Obot (obot-platform/obot) MCP audit log export (JSON lines) -> v1.

Obot's MCP gateway stores one audit log per MCP request (``MCPAuditLog``) and exports them
as JSON lines::

    {"id": 4821, "createdAt": "...", "userID": "...", "mcpID": "...",
     "mcpServerDisplayName": "GitHub", "mcpServerCatalogEntryName": "github",
     "clientName": "Cursor", "clientVersion": "1.5.2", "clientIP": "10.0.4.17",
     "callType": "tools/call", "callIdentifier": "search_issues",
     "requestBody": {...}, "responseBody": {...}, "responseStatus": 200, "error": "",
     "processingTimeMs": 412, "sessionID": "...", "requestID": "...", "userAgent": "..."}
"""

from __future__ import annotations

import json
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


class ObotAdapter(Adapter):
    name = "obot"
    description = "Obot MCP audit log export (JSON lines of MCPAuditLog)"
    provenance = ("obot-platform/obot MCPAuditLog API type (apiclient/types) and its audit-log export, "
                  "reconstructed from the project's docs/source as of v0.9-v0.12")

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        call_type = dig(record, "callType", "call_type")
        if call_type != "tools/call":
            raise SkipRecord(f"obot: not a tool call (callType {call_type!r})")
        request = as_json(dig(record, "requestBody", "request_body"))
        tool = dig(record, "callIdentifier", "call_identifier") or dig(request, "params.name", "name")
        if not tool:
            raise ValueError("obot: tools/call record without callIdentifier")
        labels: dict[str, str] = {"adapter": self.name}
        principal = principal_or_anonymous(dig(record, "userID", "userId", "user_id"), labels)
        status = dig(record, "responseStatus", "response_status")
        try:
            status = int(status) if status is not None else None
        except (TypeError, ValueError):
            status = None
        response = as_json(dig(record, "responseBody", "response_body"))
        error = dig(record, "error") or dig(response, "error.message")
        tool_error = bool(dig(response, "result.isError", "isError", default=False))
        denied = status in (401, 403)
        if denied:
            result = "denied"
        elif error or tool_error or (status is not None and status >= 400):
            result = "error"
            if not error:
                error = _text(dig(response, "result.content", "content")) or f"HTTP {status}"
        else:
            result = "ok"
        args = dig(request, "params.arguments", "arguments") if isinstance(request, dict) else None
        client, version = dig(record, "clientName"), dig(record, "clientVersion")
        server = dig(record, "mcpServerCatalogEntryName", "mcpServerDisplayName", "mcpID")
        put_label(labels, "mcp_id", dig(record, "mcpID"))
        put_label(labels, "server_display_name", dig(record, "mcpServerDisplayName"))
        put_label(labels, "source_address", dig(record, "clientIP"))
        put_label(labels, "user_agent", dig(record, "userAgent"))
        put_label(labels, "http.status", status)
        size = None
        if response not in (None, "", {}):
            raw = response if isinstance(response, str) else json.dumps(response, separators=(",", ":"))
            size = len(raw.encode())
        ev = {
            "event_id": event_id("obot", dig(record, "id")),
            "ts": parse_ts(dig(record, "createdAt", "created_at", "created"), "createdAt"),
            "principal": principal,
            "agent": f"{client}/{version}" if client and version else client,
            "session": session_or_synthetic(dig(record, "sessionID", "sessionId"), f"obot:{server}:{principal}",
                                            labels),
            "correlation_id": dig(record, "requestID", "requestId"),
            "server": server,
            "tool": tool,
            "args": as_args(args),
            "decision": "deny" if denied else "allow",
            "reason": (error or f"rejected by Obot (HTTP {status})") if denied else None,
            "result": result,
            "error": error if result == "error" else None,
            "latency_ms": parse_duration_ms(dig(record, "processingTimeMs", "processing_time_ms")),
            "result_bytes": size,
            "labels": labels,
        }
        return clean_event(ev)


def _text(content: Any) -> str | None:
    if isinstance(content, list):
        parts = [c.get("text") for c in content if isinstance(c, dict) and isinstance(c.get("text"), str)]
        return "\n".join(parts) or None
    return None
