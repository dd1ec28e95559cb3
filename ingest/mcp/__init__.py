"""MCP collectors: the auditing proxy, server middleware, tool-definition hashing, policy.

Public API::

    from ingest.mcp import audit, sdk_audit            # server middleware (fastmcp / official SDK)
    from ingest.mcp import AuditMiddleware, SdkAuditMiddleware, AuditSettings
    from ingest.mcp import Policy, tool_definition_hash
    from ingest.mcp.proxy import ProxyOptions, build_proxy, serve

Importing this package does not import fastmcp/mcp until a middleware is built.
"""

from __future__ import annotations

from typing import Any

from ingest.mcp.policy import POLICY_DENIED_CODE, Decision, Policy
from ingest.mcp.toolhash import hash_fastmcp_tool, hash_wire_tool, tool_definition, tool_definition_hash

__all__ = [
    "POLICY_DENIED_CODE",
    "AuditMiddleware",
    "AuditSettings",
    "Decision",
    "Policy",
    "SdkAuditMiddleware",
    "audit",
    "hash_fastmcp_tool",
    "hash_wire_tool",
    "sdk_audit",
    "tool_definition",
    "tool_definition_hash",
]

_LAZY = {"AuditMiddleware", "AuditSettings", "SdkAuditMiddleware", "audit", "sdk_audit", "Auditor", "UpstreamInfo"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from ingest.mcp import middleware

        return getattr(middleware, name)
    raise AttributeError(f"module 'ingest.mcp' has no attribute {name!r}")
