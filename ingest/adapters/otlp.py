"""OpenTelemetry ``execute_tool`` spans exported as OTLP/JSON -> v1.

Input is an OTLP ``ExportTraceServiceRequest`` in its JSON encoding (what the collector's
``file`` exporter and OTLP/HTTP JSON produce)::

    {"resourceSpans": [{"resource": {"attributes": [...]},
                        "scopeSpans": [{"scope": {...}, "spans": [{"traceId": "<hex>", "spanId": "<hex>",
                            "name": "execute_tool get_weather", "kind": 1|"SPAN_KIND_...",
                            "startTimeUnixNano": "...", "endTimeUnixNano": "...",
                            "attributes": [{"key": "gen_ai.tool.name", "value": {"stringValue": "..."}}],
                            "status": {"code": 2, "message": "..."}}]}]}]}

`records()` yields one record per span (``{"resource", "scope", "span"}``); spans of other
operations (chat, invoke_agent, ...) are skipped. Attributes follow the OTel GenAI semantic
conventions (``gen_ai.operation.name = execute_tool``, ``gen_ai.tool.name``,
``gen_ai.tool.call.id``, ``gen_ai.tool.call.arguments``, ``gen_ai.tool.call.result``,
``gen_ai.agent.name``, ``gen_ai.conversation.id``) and the MCP ones (``mcp.method.name``,
``mcp.session.id``, ``mcp.protocol.version``, ``jsonrpc.request.id``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from ingest.adapters.base import (
    Adapter,
    SkipRecord,
    as_args,
    as_json,
    clean_event,
    event_id,
    parse_ts,
    principal_or_anonymous,
    put_label,
    session_or_synthetic,
)

STATUS_ERROR = (2, "2", "STATUS_CODE_ERROR")
KIND_SERVER = (2, "2", "SPAN_KIND_SERVER")


def any_value(v: Any) -> Any:
    """Decode an OTLP/JSON AnyValue."""
    if not isinstance(v, dict):
        return v
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            return v["intValue"]
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [any_value(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return attrs((v["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def attrs(items: Any) -> dict[str, Any]:
    if isinstance(items, dict):  # already a plain mapping (some exporters)
        return dict(items)
    out: dict[str, Any] = {}
    for kv in items or []:
        if isinstance(kv, dict) and "key" in kv:
            out[kv["key"]] = any_value(kv.get("value"))
    return out


def _hex_id(v: Any) -> str | None:
    """OTLP/JSON ids are hex; tolerate base64 (protobuf-JSON mapping) too."""
    if not isinstance(v, str) or not v:
        return None
    if all(c in "0123456789abcdefABCDEF" for c in v):
        return v.lower()
    try:
        return base64.b64decode(v, validate=True).hex()
    except ValueError:
        return None


class OtlpAdapter(Adapter):
    name = "otlp"
    description = "OpenTelemetry execute_tool spans, OTLP/JSON (ExportTraceServiceRequest)"
    provenance = ("OTLP/JSON encoding of ExportTraceServiceRequest (opentelemetry-proto) with the OTel GenAI "
                  "execute_tool span and MCP semantic conventions (semconv v1.36-v1.37, development status)")

    def records(self, doc: Any) -> Iterator[dict[str, Any]]:
        docs = doc if isinstance(doc, list) else [doc]
        for d in docs:
            if not isinstance(d, dict):
                raise ValueError(f"otlp: expected a JSON object, got {type(d).__name__}")
            if "resourceSpans" not in d:
                yield d  # already one span record
                continue
            for rs in d.get("resourceSpans") or []:
                resource = attrs((rs.get("resource") or {}).get("attributes"))
                for ss in (rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []):
                    scope = ss.get("scope") or ss.get("instrumentationLibrary") or {}
                    for span in ss.get("spans") or []:
                        yield {"resource": resource, "scope": scope, "span": span}

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        if "resourceSpans" in record:
            recs = list(self.records(record))
            if len(recs) != 1:
                raise ValueError(f"otlp: export holds {len(recs)} spans; split it with records() first")
            record = recs[0]
        span = record.get("span", record)
        if not isinstance(span, dict) or "name" not in span:
            raise ValueError("otlp: not a span (no name)")
        a = attrs(span.get("attributes"))
        resource = record.get("resource") or {}
        op = a.get("gen_ai.operation.name")
        method = a.get("mcp.method.name")
        name = str(span.get("name", ""))
        if op != "execute_tool" and method != "tools/call" and not name.startswith("execute_tool"):
            raise SkipRecord(f"otlp: span {name!r} is not a tool execution (gen_ai.operation.name {op!r})")
        tool = a.get("gen_ai.tool.name") or (name.split(" ", 1)[1] if " " in name else None)
        if not tool:
            raise ValueError("otlp: execute_tool span without gen_ai.tool.name")
        labels: dict[str, str] = {"adapter": self.name}
        trace = _hex_id(span.get("traceId"))
        span_id = _hex_id(span.get("spanId"))
        principal = principal_or_anonymous(a.get("user.id") or a.get("enduser.id") or resource.get("user.id")
                                           or resource.get("enduser.id"), labels)
        start = span.get("startTimeUnixNano")
        end = span.get("endTimeUnixNano")
        latency = None
        try:
            if start is not None and end is not None:
                latency = max(0.0, (int(end) - int(start)) / 1e6)
        except (TypeError, ValueError):
            latency = None
        status = span.get("status") or {}
        failed = status.get("code") in STATUS_ERROR or bool(a.get("error.type"))
        error = None
        if failed:
            error = status.get("message") or a.get("error.message") or f"error.type {a.get('error.type')}"
        tool_result = a.get("gen_ai.tool.call.result")
        server = a.get("mcp.server.name") or (resource.get("service.name")
                                             if span.get("kind") in KIND_SERVER else None)
        agent = a.get("gen_ai.agent.name") or (resource.get("service.name")
                                              if span.get("kind") not in KIND_SERVER else None)
        put_label(labels, "gen_ai.tool.call.id", a.get("gen_ai.tool.call.id"))
        put_label(labels, "gen_ai.tool.type", a.get("gen_ai.tool.type"))
        put_label(labels, "gen_ai.agent.id", a.get("gen_ai.agent.id"))
        put_label(labels, "span.name", name)
        put_label(labels, "service.name", resource.get("service.name"))
        put_label(labels, "mcp.protocol_version", a.get("mcp.protocol.version"))
        put_label(labels, "jsonrpc.request_id", a.get("jsonrpc.request.id"))
        put_label(labels, "error.type", a.get("error.type"))
        ev = {
            "event_id": event_id("otel", trace, span_id),
            "ts": parse_ts(start, "startTimeUnixNano"),
            "principal": principal,
            "agent": agent,
            "session": session_or_synthetic(a.get("mcp.session.id") or a.get("gen_ai.conversation.id")
                                            or a.get("session.id"), f"otel-trace:{trace}", labels),
            "correlation_id": trace,
            "server": server,
            "server_version": resource.get("service.version") if server and server == resource.get("service.name")
            else None,
            "tool": tool,
            "args": as_args(as_json(a.get("gen_ai.tool.call.arguments"))),
            "decision": "allow",
            "result": "error" if failed else "ok",
            "error": error,
            "latency_ms": latency,
            "result_bytes": len(str(tool_result).encode()) if tool_result is not None else None,
            "labels": labels,
        }
        return clean_event(ev)
