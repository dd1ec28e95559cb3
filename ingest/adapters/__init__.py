"""Adapters: other MCP gateways' audit records -> ToolTrail v1 wire events.

    from ingest.adapters import ADAPTER_NAMES, get_adapter, SkipRecord
    a = get_adapter("toolhive")
    for record in a.records(parsed_json):      # one parsed line / file -> records
        event = a.map(record)                  # ValueError (with the reason) if unmappable;
                                               # SkipRecord (a ValueError) if not a tool call

`map` fits `Ingestor.submit(items, source=..., mapper=a.map)`: a record that raises goes to
quarantine with "cannot map record: <reason>". Each adapter's ``provenance`` says where its
field names come from; sample records live in tests/adapters/samples/.
"""

from __future__ import annotations

from ingest.adapters.agentgateway import AgentGatewayAdapter
from ingest.adapters.base import Adapter, SkipRecord
from ingest.adapters.docker_gateway import DockerGatewayAdapter
from ingest.adapters.obot import ObotAdapter
from ingest.adapters.otlp import OtlpAdapter
from ingest.adapters.toolhive import ToolHiveAdapter

_ADAPTERS: dict[str, type[Adapter]] = {
    "toolhive": ToolHiveAdapter,
    "docker-mcp-gateway": DockerGatewayAdapter,
    "agentgateway": AgentGatewayAdapter,
    "obot": ObotAdapter,
    "otlp": OtlpAdapter,
}
_ALIASES = {"docker": "docker-mcp-gateway", "docker-gateway": "docker-mcp-gateway", "otel": "otlp",
            "otlp-json": "otlp", "thv": "toolhive"}

ADAPTER_NAMES: list[str] = list(_ADAPTERS)


def get_adapter(name: str) -> Adapter:
    """The adapter for a format name (see ADAPTER_NAMES; a few aliases are accepted)."""
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    try:
        return _ADAPTERS[key]()
    except KeyError:
        raise ValueError(f"unknown format {name!r}; known formats: {', '.join(ADAPTER_NAMES)}") from None


__all__ = ["ADAPTER_NAMES", "Adapter", "SkipRecord", "get_adapter"]
