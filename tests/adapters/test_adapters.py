"""Each adapter maps its sample records (tests/adapters/samples, provenance in PROVENANCE.md)
into valid v1 events, skips non-tool-call records, and rejects unmappable ones with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.adapters import ADAPTER_NAMES, SkipRecord, get_adapter
from schemas.event import ToolCallEvent

SAMPLES = Path(__file__).with_name("samples")
FILES = {"toolhive": "toolhive.jsonl", "docker-mcp-gateway": "docker_mcp_gateway.jsonl",
         "agentgateway": "agentgateway.jsonl", "obot": "obot.jsonl", "otlp": "otlp_execute_tool.jsonl"}


def load(name: str) -> tuple[list[dict], list[str]]:
    """(mapped events, skip reasons) for one sample file, going through records()."""
    a = get_adapter(name)
    path = SAMPLES / FILES[name]
    docs = [json.loads(path.read_text())] if path.suffix == ".json" else \
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    events, skipped = [], []
    for doc in docs:
        for rec in a.records(doc):
            try:
                events.append(a.map(rec))
            except SkipRecord as exc:
                skipped.append(str(exc))
    return events, skipped


def test_registry():
    assert ADAPTER_NAMES == ["toolhive", "docker-mcp-gateway", "agentgateway", "obot", "otlp"]
    assert get_adapter("docker").name == "docker-mcp-gateway" and get_adapter("OTEL").name == "otlp"
    with pytest.raises(ValueError, match="known formats: toolhive"):
        get_adapter("nope")
    for n in ADAPTER_NAMES:
        a = get_adapter(n)
        assert a.provenance and a.description


@pytest.mark.parametrize("name", list(FILES))
def test_samples_validate_and_skip_non_tool_calls(name):
    events, skipped = load(name)
    assert events and len(skipped) == 1, skipped
    for e in events:
        ToolCallEvent.model_validate(e)
        assert e["labels"]["adapter"] == name


def by_tool(events):
    return {e["tool"]: e for e in events}


def test_toolhive_fields():
    ev = by_tool(load("toolhive")[0])
    ok = ev["search_issues"]
    assert ok["principal"] == "auth0|65f1c0ffee" and ok["labels"]["user"] == "Alice Example"
    assert ok["agent"] == "claude-ai/0.1.0" and ok["server"] == "github"
    assert ok["args"] == {"q": "repo:acme/api is:open label:bug", "per_page": 20}
    assert ok["result"] == "ok" and ok["latency_ms"] == 183 and ok["result_bytes"] == 4211
    assert ok["event_id"] == "toolhive:6f0e4d52-9a5b-4c1e-8d2f-3b7a1c9e0a11"
    assert ok["ts"] == "2025-09-12T14:03:11.482913Z" and ok["labels"]["transport"] == "streamable-http"
    assert ok["session"] == "toolhive:github:auth0|65f1c0ffee" and ok["labels"]["session_synthesized"] == "true"
    denied = ev["delete_repository"]  # the slog line form
    assert denied["decision"] == "deny" and denied["result"] == "denied" and denied["reason"]
    assert denied["event_id"].startswith("toolhive:0c3d1a7e")
    failed = ev["fetch"]
    assert failed["result"] == "error" and "failure" in failed["error"] and failed["agent"] == "cursor/1.5.2"


def test_docker_gateway_fields():
    ev = by_tool(load("docker-mcp-gateway")[0])
    d = ev["delete_repository"]
    assert d["decision"] == "deny" and d["result"] == "denied" and "destructive" in d["reason"]
    assert d["labels"]["policy"] == "no-destructive-github" and d["server"] == "github-official"
    assert d["session"] == "gw-3f9c2a" and d["principal"] == "alice" and d["agent"] == "claude-desktop/0.13.11"
    assert d["args"] == {"owner": "acme", "repo": "api"}
    ok = ev["list_issues"]
    assert ok["decision"] == "allow" and ok["result"] == "ok" and ok["latency_ms"] == 412
    err = ev["fetch"]
    assert err["result"] == "error" and "link-local" in err["error"]


def test_agentgateway_fields():
    ev = by_tool(load("agentgateway")[0])
    ok = ev["echo"]
    assert ok["principal"] == "alice" and ok["session"] == "b7c1e2d4f6a84c0e9d1b3a5c7e9f0a12"
    assert ok["server"] == "everything" and ok["latency_ms"] == 12 and ok["result"] == "ok"
    assert ok["correlation_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ok["event_id"] == "agentgateway:4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7"
    denied = ev["printEnv"]
    assert denied["decision"] == "deny" and denied["result"] == "denied" and "403" in denied["reason"]
    assert denied["latency_ms"] == pytest.approx(0.413)
    legacy = ev["longRunningOperation"]  # older mcp.method / mcp.resource.* names
    assert legacy["result"] == "error" and legacy["latency_ms"] == pytest.approx(1503)
    assert legacy["principal"] == "build-bot"


def test_obot_fields():
    ev = by_tool(load("obot")[0])
    ok = ev["search_issues"]
    assert ok["principal"] == "3" and ok["server"] == "github" and ok["agent"] == "Cursor/1.5.2"
    assert ok["session"] == "mcp-session-1f2e3d4c" and ok["correlation_id"] == "req-7c9a1e"
    assert ok["args"] == {"query": "is:open label:security", "owner": "acme"}
    assert ok["result"] == "ok" and ok["latency_ms"] == 412 and ok["result_bytes"] > 0
    assert ok["event_id"] == "obot:4821" and ok["ts"] == "2025-10-08T17:42:10.551000Z"
    err = ev["get_file_contents"]
    assert err["result"] == "error" and err["error"] == "file not found"
    denied = ev["post_message"]
    assert denied["decision"] == "deny" and "not allowed" in denied["reason"]


def test_otlp_fields():
    ev = by_tool(load("otlp")[0])
    ok = ev["get_open_invoices"]
    assert ok["principal"] == "user_8842" and ok["agent"] == "support-agent"
    assert ok["session"] == "191c4850af6c49e08843a3f6c80e5046"  # mcp.session.id wins over conversation id
    assert ok["args"] == {"customer_id": 5512} and ok["result"] == "ok"
    assert ok["latency_ms"] == pytest.approx(88.0) and ok["result_bytes"] > 0
    assert ok["event_id"] == "otel:5b8efff798038103d269b633813fc60c:a1b2c3d4e5f60718"
    assert ok["ts"] == "2025-11-02T16:40:01.250000Z"
    err = ev["send_refund"]
    assert err["result"] == "error" and "approval" in err["error"]
    assert err["session"] == "conv_5j66UpCpwteGg4YSxUnt7lPY" and err["labels"]["error.type"] == "PermissionError"


def test_otlp_single_span_export_maps_directly_and_multi_span_asks_for_records():
    a = get_adapter("otlp")
    doc = json.loads((SAMPLES / FILES["otlp"]).read_text().splitlines()[0])
    with pytest.raises(ValueError, match="holds 3 spans"):
        a.map(doc)
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"] = [spans[1]]
    assert a.map(doc)["tool"] == "get_open_invoices"


@pytest.mark.parametrize("name,record,reason", [
    ("toolhive", {"type": "mcp_tool_call", "loggedAt": "2025-09-12T14:03:11Z", "outcome": "success",
                  "target": {"method": "tools/call"}}, "without a tool name"),
    ("toolhive", {"type": "mcp_tool_call", "loggedAt": "2025-09-12T14:03:11Z", "outcome": "exploded",
                  "target": {"name": "x"}}, "unknown outcome"),
    ("toolhive", {"type": "mcp_tool_call", "loggedAt": "yesterday", "target": {"name": "x"}},
     "not an RFC 3339 timestamp"),
    ("docker-mcp-gateway", {"timestamp": "2025-10-21T09:14:03Z", "event": "policy.decision"}, "no tool name"),
    ("docker-mcp-gateway", {"timestamp": "2025-10-21T09:14:03Z", "tool": "x", "decision": "maybe"},
     "unknown decision"),
    ("agentgateway", {"time": "2025-11-02T16:20:41Z", "mcp.method.name": "tools/call"}, "without gen_ai.tool.name"),
    ("obot", {"createdAt": "2025-10-08T17:42:10Z", "callType": "tools/call"}, "without callIdentifier"),
    ("obot", {"callType": "tools/call", "callIdentifier": "x"}, "missing createdAt"),
    ("otlp", {"span": {"name": "execute_tool", "attributes": []}}, "without gen_ai.tool.name"),
    ("otlp", {"span": {"attributes": []}}, "not a span"),
])
def test_unmappable_records_raise_clear_reason(name, record, reason):
    with pytest.raises(ValueError, match=reason) as e:
        get_adapter(name).map(record)
    assert not isinstance(e.value, SkipRecord)


def test_mapper_plugs_into_the_write_path(config):
    """`Ingestor.submit(..., mapper=adapter.map)`: mapped records stored, unmappable ones quarantined."""
    pytest.importorskip("ingest.redact")
    from ingest.pipeline import Ingestor

    a = get_adapter("obot")
    lines = [line for line in (SAMPLES / FILES["obot"]).read_text().splitlines() if line.strip()]
    with Ingestor.open(config, "import-obot", direct=True) as ing:
        res = ing.submit(lines, source="import:obot", mapper=a.map)
    assert res.stored == 3 and len(res.rejected) == 1 and "not a tool call" in res.rejected[0].reason
    with Ingestor.open(config, "import-obot", direct=True) as ing:
        again = ing.submit(lines, source="import:obot", mapper=a.map)
    assert again.stored == 0 and again.duplicates == 3  # record ids -> idempotent re-import
