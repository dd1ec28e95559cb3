"""The OpenAPI document: FastAPI's, plus what a hand-parsed body and bearer keys need."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from schemas.event import ToolCallEvent
from schemas.limits import MAX_FUTURE_SKEW_S

EVENT_REF = {"$ref": "#/components/schemas/ToolCallEvent"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def _request_body(max_items: int) -> dict[str, Any]:
    return {
        "required": True,
        "description": "One event (JSON object), a JSON array of events, or NDJSON (one event per line). "
                       "Send `Content-Encoding: gzip` for compressed bodies. Invalid items are rejected one by one "
                       "(quarantined with field and reason); valid items in the same batch are stored.",
        "content": {
            "application/json": {"schema": {"oneOf": [EVENT_REF, {"type": "array", "items": EVENT_REF,
                                                                  "maxItems": max_items}]}},
            "application/x-ndjson": {"schema": {"type": "string", "description": "One ToolCallEvent per line."}},
        },
    }


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    col = app.state.collector
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    comps = schema.setdefault("components", {})
    schemas = comps.setdefault("schemas", {})
    ev = ToolCallEvent.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(ev.pop("$defs", {}))
    props = ev.get("properties", {})
    if "ts" in props:  # what the validator enforces beyond the JSON Schema of the wire format
        props["ts"]["pattern"] = r"^[2-9][0-9]{3}-"
        props["ts"]["description"] += f" Year 2000 or later; at most {MAX_FUTURE_SKEW_S} s in the future."
    schemas["ToolCallEvent"] = ev
    comps["securitySchemes"] = {
        "IngestKey": {"type": "http", "scheme": "bearer", "description": "Per-source ingest key "
                      "(`tooltrail keys create SOURCE`); the stored `source` is the key's name."},
        "ReadKey": {"type": "http", "scheme": "bearer", "description": "Read key (`tooltrail keys create NAME --read`)."},
    }
    for path, ops in schema.get("paths", {}).items():
        for op in ops.values():
            tags = op.get("tags", [])
            if "ingest" in tags:
                op["security"] = [{"IngestKey": []}]
            elif "read" in tags or (path == "/metrics" and not col.settings.metrics_public):
                op["security"] = [{"ReadKey": []}]
            if op.pop("x-tooltrail-body", False):
                op["requestBody"] = _request_body(col.settings.max_batch_items)
            resp = op.get("responses", {}).get("422")
            if resp and "IngestResult" in str(resp):  # per-item rejections, or a bad query parameter
                resp["content"] = {"application/json": {"schema": {"anyOf": [
                    {"$ref": "#/components/schemas/IngestResult"}, ERROR_REF]}}}
            elif resp and "HTTPValidationError" in str(resp):
                resp["description"] = "Invalid parameters."
                resp["content"] = {"application/json": {"schema": ERROR_REF}}
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    app.openapi_schema = schema
    return schema
