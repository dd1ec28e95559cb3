"""Building v1 wire events from what an MCP collector observed.

Everything here is cheap (it runs on the tool-call path) and total: whatever an MCP peer
sends, the event that comes out passes `schemas.event.ToolCallEvent` validation - oversized
or too-deep arguments are replaced by a summary (and labelled), identifiers are stripped of
control characters and truncated, error text is sanitised.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas import limits as L
from schemas.event import check_json_value

_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_IDENT_CTRL = re.compile(r"[\x00-\x1f\x7f]")
ERROR_TEXT_LIMIT = 2000


def now() -> float:
    return time.time()


def format_ts(epoch_s: float) -> str:
    """RFC 3339 UTC with microseconds, the canonical stored form."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_event_id() -> str:
    """Time-ordered, collision-free idempotency key (48-bit ms clock + 80 random bits, hex)."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def ident(value: Any, limit: int = L.MAX_NAME_LEN) -> str | None:
    """An identifier-like field: str, no control characters, bounded; None when empty."""
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    s = _IDENT_CTRL.sub(" ", s).strip()
    if not s:
        return None
    return s[:limit]


def sanitize_text(value: Any, limit: int = ERROR_TEXT_LIMIT) -> str | None:
    """Error text fit for an audit record: ANSI colour codes and control characters removed
    (newlines and tabs kept), whitespace runs collapsed, bounded."""
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    s = _ANSI.sub("", s)
    s = _CTRL.sub(" ", s)
    s = re.sub(r"[ \t]{2,}", " ", s).strip()
    if len(s) > limit:
        s = s[:limit] + f" ...[{len(s) - limit} more chars]"
    return s or None


def bound_args(args: Any) -> tuple[dict[str, Any], str | None]:
    """Arguments within the wire limits, and a label value saying why they were summarised."""
    if args is None:
        return {}, None
    if not isinstance(args, dict):
        args = {"_value": args}
    try:
        check_json_value(args)
        raw = orjson.dumps(args)
    except (ValueError, TypeError, orjson.JSONEncodeError) as exc:
        try:
            raw = orjson.dumps(args, default=str)
        except (TypeError, orjson.JSONEncodeError):
            raw = repr(args).encode("utf-8", "replace")
        return _summary(args, raw), sanitize_text(str(exc), 200)
    if len(raw) > L.MAX_ARGS_BYTES:
        return _summary(args, raw), f"larger than {L.MAX_ARGS_BYTES} bytes"
    return args, None


def _summary(args: dict[str, Any], raw: bytes) -> dict[str, Any]:
    return {
        "_tooltrail_summary": True,
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "keys": [ident(k, 128) or "?" for k in list(args)[:64]],
    }


def content_bytes(content: Any, structured: Any = None) -> int:
    """Size of a tool result's payload: UTF-8 text, base64 data, JSON of anything else."""
    n = 0
    for block in content or ():
        text = getattr(block, "text", None)
        if isinstance(text, str):
            n += len(text.encode("utf-8"))
            continue
        data = getattr(block, "data", None)
        if isinstance(data, str):
            n += len(data)
            continue
        if isinstance(block, dict):
            n += len(orjson.dumps(block, default=str))
            continue
        dump = getattr(block, "model_dump", None)
        n += len(orjson.dumps(dump(mode="json", by_alias=True, exclude_none=True), default=str)) if dump else 0
    if structured is not None:
        n += len(orjson.dumps(structured, default=str))
    return n


def content_text(content: Any) -> str | None:
    """The text of a tool result's text blocks (an error result's message)."""
    parts = [t for t in (getattr(b, "text", None) if not isinstance(b, dict) else b.get("text")
                         for b in content or ()) if isinstance(t, str)]
    return "\n".join(parts) if parts else None


def build_event(
    *,
    ts: float,
    principal: str,
    session: str,
    tool: str,
    decision: str,
    args: Any = None,
    agent: str | None = None,
    token_id: str | None = None,
    correlation_id: str | None = None,
    server: str | None = None,
    server_version: str | None = None,
    tool_description_hash: str | None = None,
    reason: str | None = None,
    scope_checked: str | None = None,
    scopes_granted: list[str] | None = None,
    result: str | None = None,
    error: str | None = None,
    latency_ms: float | None = None,
    result_bytes: int | None = None,
    labels: dict[str, str] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A v1 wire event (dict, only non-null fields)."""
    bargs, why = bound_args(args)
    lab = dict(labels) if labels else {}
    if why:
        lab["args_summarised"] = why[:L.MAX_LABEL_VALUE_LEN]
    ev: dict[str, Any] = {
        "event_id": event_id or new_event_id(),
        "ts": format_ts(ts),
        "principal": ident(principal) or "unknown",
        "session": ident(session) or "unknown",
        "tool": ident(tool) or "unknown",
        "args": bargs,
        "decision": decision,
    }
    for key, value, limit in (("agent", agent, L.MAX_NAME_LEN), ("token_id", token_id, L.MAX_ID_LEN),
                              ("correlation_id", correlation_id, L.MAX_ID_LEN), ("server", server, L.MAX_NAME_LEN),
                              ("server_version", server_version, L.MAX_NAME_LEN),
                              ("tool_description_hash", tool_description_hash, L.MAX_ID_LEN),
                              ("scope_checked", scope_checked, L.MAX_NAME_LEN)):
        v = ident(value, limit)
        if v is not None:
            ev[key] = v
    if reason:
        ev["reason"] = sanitize_text(reason, L.MAX_TEXT_LEN - 64)
    if error:
        ev["error"] = sanitize_text(error)
    if scopes_granted is not None:
        ev["scopes_granted"] = [s for s in (ident(x) for x in scopes_granted[:L.MAX_SCOPES]) if s]
    if result is not None:
        ev["result"] = result
    if latency_ms is not None:
        ev["latency_ms"] = round(min(max(latency_ms, 0.0), L.MAX_LATENCY_MS), 3)
    if result_bytes is not None:
        ev["result_bytes"] = min(max(int(result_bytes), 0), L.MAX_RESULT_BYTES)
    if lab:
        ev["labels"] = {k[:L.MAX_LABEL_KEY_LEN]: str(v)[:L.MAX_LABEL_VALUE_LEN]
                        for k, v in list(lab.items())[:L.MAX_LABELS] if k}
    return ev
