"""Canonical hash of an MCP tool definition (rug-pull / drift signal).

The hashed object is exactly ``{"name", "description", "inputSchema", "annotations"}`` as the
server advertised them at ``tools/list`` (camelCase wire names; a missing description or
annotations object is ``null``), serialised with RFC 8785 (`schemas.canonical.canonical_bytes`)
and hashed with SHA-256. The result is lowercase hex (64 chars), stamped on events as
``tool_description_hash``. Any change to the text the model reads (description, parameter
descriptions inside the schema, annotations such as ``destructiveHint``) changes the hash;
cosmetic differences (key order, whitespace, ``1.0`` vs ``1``) do not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from schemas.canonical import canonical_bytes


def _plain(value: Any) -> Any:
    """Pydantic models (ToolAnnotations, ...) -> JSON-compatible dicts with wire (camelCase) names."""
    if value is None:
        return None
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json", by_alias=True, exclude_none=True)
    return value


def tool_definition(name: str, description: str | None, input_schema: Mapping[str, Any] | None,
                    annotations: Any = None) -> dict[str, Any]:
    """The object that is hashed (exposed so tests and docs can show it)."""
    return {
        "name": name,
        "description": description,
        "inputSchema": _plain(dict(input_schema) if isinstance(input_schema, Mapping) else input_schema),
        "annotations": _plain(annotations) or None,
    }


def tool_definition_hash(name: str, description: str | None, input_schema: Mapping[str, Any] | None,
                         annotations: Any = None) -> str:
    """SHA-256 hex of the canonical bytes of the tool definition."""
    return hashlib.sha256(canonical_bytes(tool_definition(name, description, input_schema, annotations))).hexdigest()


def hash_wire_tool(tool: Any) -> str:
    """Hash an MCP ``Tool`` (``mcp_types.Tool`` model or its wire dict)."""
    if isinstance(tool, Mapping):
        return tool_definition_hash(tool["name"], tool.get("description"), tool.get("inputSchema"),
                                    tool.get("annotations"))
    return tool_definition_hash(tool.name, tool.description, getattr(tool, "input_schema", None),
                                getattr(tool, "annotations", None))


def hash_fastmcp_tool(tool: Any) -> str:
    """Hash a fastmcp ``Tool`` (its ``parameters`` is the advertised ``inputSchema``)."""
    return tool_definition_hash(tool.name, tool.description, tool.parameters, tool.annotations)
