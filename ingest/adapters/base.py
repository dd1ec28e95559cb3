"""What every gateway adapter shares: the interface, and tolerant field access.

An adapter turns one audit record of another gateway into one v1 wire event (a dict that
`schemas.event.ToolCallEvent` accepts). It raises `ValueError` with a clear reason for a
record it cannot map (the caller quarantines it), and `SkipRecord` (a `ValueError`) for a
well-formed record that is not a tool call (``tools/list``, ``initialize``, a chat span): the
caller may count those instead of quarantining them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from ingest.mcp.events import format_ts, ident, sanitize_text


class SkipRecord(ValueError):
    """A well-formed record that is not a tool call."""


class Adapter:
    name: str = ""
    description: str = ""
    provenance: str = ""  # where the field names come from (shown by `tooltrail import --help`)

    def records(self, doc: Any) -> Iterator[dict[str, Any]]:
        """Split one parsed input document (a JSON line, a JSON file) into records."""
        if isinstance(doc, list):
            for item in doc:
                if not isinstance(item, dict):
                    raise ValueError(f"{self.name}: expected JSON objects, got {type(item).__name__}")
                yield item
        elif isinstance(doc, dict):
            yield doc
        else:
            raise ValueError(f"{self.name}: expected a JSON object, got {type(doc).__name__}")

    def map(self, record: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<adapter {self.name}>"


MISSING = object()


def dig(obj: Any, *paths: str, default: Any = None) -> Any:
    """First present value among dotted `paths`. A key containing dots (flat OTel-style
    attribute names like ``gen_ai.tool.name``) is tried as a whole before descending."""
    for path in paths:
        v = _dig1(obj, path)
        if v is not MISSING and v is not None and v != "":
            return v
    return default


def _dig1(obj: Any, path: str) -> Any:
    if not isinstance(obj, Mapping):
        return MISSING
    if path in obj:
        return obj[path]
    head, dot, rest = path.partition(".")
    while dot:
        if head in obj:
            v = _dig1(obj[head], rest)
            if v is not MISSING:
                return v
        nxt, dot, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return MISSING


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_ts(value: Any, field: str = "timestamp") -> str:
    """RFC 3339 / ISO 8601 string or epoch number (s, ms, us or ns) -> canonical ts string."""
    if value is None or value == "":
        raise ValueError(f"missing {field}")
    if isinstance(value, bool):
        raise ValueError(f"{field}: not a timestamp: {value!r}")
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        n = float(value)
        for scale in (1e9, 1e6, 1e3):
            if abs(n) > scale * 1e8:  # beyond year ~5138 at this scale: use a finer unit
                n /= scale
                break
        try:
            return format_ts(n)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"{field}: not a timestamp: {value!r}") from exc
    if not isinstance(value, str):
        raise ValueError(f"{field}: not a timestamp: {value!r}")
    s = _FRACTION.sub(r"\1", value.strip().replace(" ", "T", 1))
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError as exc:
        raise ValueError(f"{field}: not an RFC 3339 timestamp: {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # gateways log UTC; a naive stamp is taken as UTC
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|μs|ms|s|m|h)?\s*$")
_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0,
            "h": 3_600_000.0, None: 1.0}


def parse_duration_ms(value: Any, default_unit: str = "ms") -> float | None:
    """``12``, ``"12ms"``, ``"1.5s"``, ``"850µs"``, Go's ``"1m2.5s"`` -> milliseconds."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) * _UNIT_MS[default_unit]
    if not isinstance(value, str):
        return None
    m = _DURATION.match(value)
    if m:
        return float(m.group(1)) * _UNIT_MS[m.group(2) if m.group(2) else default_unit]
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|μs|ms|s|m|h)", value)
    if parts and "".join(a + b for a, b in parts) == value.strip():
        return sum(float(a) * _UNIT_MS[b] for a, b in parts)
    return None


def as_args(value: Any) -> dict[str, Any]:
    """Tool arguments given as an object or as a JSON string."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"_raw": value}
    if isinstance(value, dict):
        return value
    return {"_value": value}


def as_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def event_id(prefix: str, *parts: Any) -> str | None:
    """A stable idempotency key from the source's own record id (re-import = duplicate)."""
    vals = [str(p) for p in parts if p not in (None, "")]
    if not vals:
        return None
    eid = re.sub(r"[^A-Za-z0-9._:\-]", "_", f"{prefix}:{':'.join(vals)}")
    return eid[:128]


def principal_or_anonymous(value: Any, labels: dict[str, str]) -> str:
    p = ident(value)
    if p is None:
        labels["principal_missing"] = "true"
        return "anonymous"
    return p


def session_or_synthetic(value: Any, fallback: str, labels: dict[str, str]) -> str:
    s = ident(value)
    if s is None:
        labels["session_synthesized"] = "true"
        return ident(fallback) or "unknown"
    return s


def put_label(labels: dict[str, str], key: str, value: Any) -> None:
    if value is None or value == "" or isinstance(value, dict | list):
        return
    labels[key] = str(value)[:1024]


def clean_event(ev: dict[str, Any]) -> dict[str, Any]:
    """Drop empty optional fields; bound free text."""
    out = {k: v for k, v in ev.items() if v is not None and v != "" and v != {}}
    out.setdefault("args", {})
    if "error" in out:
        out["error"] = sanitize_text(out["error"])
    if "reason" in out:
        out["reason"] = sanitize_text(out["reason"], 4000)
    for k, limit in (("agent", 256), ("server", 256), ("server_version", 256), ("scope_checked", 256),
                     ("correlation_id", 128), ("token_id", 128), ("tool", 256), ("principal", 256),
                     ("session", 256)):
        if k in out:
            v = ident(out[k], limit)
            if v is None:
                del out[k]
            else:
                out[k] = v
    return out
