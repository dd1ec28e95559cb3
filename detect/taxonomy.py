"""Threat classes used as rule tags, mapped to the seed articles (MCP security best practices:
the four-layer model and the prioritized 8-control checklist)."""

from __future__ import annotations

THREATS: dict[str, str] = {
    "exfiltration": (
        "Data exfiltration through tool chains: read private data, then write to an external "
        "destination (checklist #4 tool-chain policies, #7 egress)"
    ),
    "prompt_injection": (
        "Tool hijacking by instructions hidden in untrusted content: web pages, mail, issues, tool "
        "output (checklist #4; layer: model-facing content)"
    ),
    "tool_poisoning": (
        "Malicious or manipulated tool metadata steering the agent (checklist #4, #8; layer: "
        "model-facing content)"
    ),
    "rug_pull": (
        "A tool's description or behaviour changes after it was reviewed and approved (checklist "
        "#8; layer: discovery and supply chain)"
    ),
    "supply_chain": (
        "New, unreviewed, typosquatted or unpinned MCP servers and tools (checklist #8; layer: "
        "discovery and supply chain)"
    ),
    "excessive_agency": (
        "Over-broad capability: destructive or external actions without human approval (checklist "
        "#2; layer: runtime and permissions)"
    ),
    "authz_abuse": (
        "Authorization failures: denied-scope spikes, scope probing, token misuse, caller confusion "
        "(checklist #1, #2; layer: identity and session)"
    ),
    "secrets_exposure": "Secrets transiting the model's context or tool arguments (checklist #5)",
    "ssrf": "Server-side request forgery: cloud metadata, link-local and private ranges (checklist #7)",
    "code_execution": "Shell / code execution, especially fed by untrusted input (checklist #3 input validation, #2)",
    "credential_access": "Reading credential stores, keys and secret files through tools (checklist #5)",
    "runaway_agent": (
        "Runaway agents and unbounded usage: bursts, loops, missing quotas (checklist #3 resource "
        "bounds; layer: runtime)"
    ),
    "input_validation": (
        "Malformed or hostile input rejected at the boundary: repeated validation failures "
        "(checklist #3)"
    ),
    "anomaly": "Statistical deviation from a learned baseline (checklist #6: volume anomalies, unusual sequences)",
}
