"""The stored form of an event: the canonical record that is hashed, and its Parquet row.

A stored row has two faces:
- `record`: the canonical JSON (RFC 8785) of the redacted event plus what the collector
  added (`source`, `received_at`, `redactions`, `chain_id`, `seq`, `v`). Its bytes are the
  Merkle leaf and the input of the hash chain. `args` and `labels` live only here.
- typed columns for fast filtering (`principal`, `session`, `tool`, `ts`, ...). `verify`
  checks every typed column against `record`, so editing either is detected.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from schemas.canonical import canonical_bytes, fast_path_ok
from schemas.event import ToolCallEvent

RECORD_VERSION = 1
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_ts(dt: datetime) -> str:
    """The one string form of a timestamp in canonical records (UTC, microseconds)."""
    if dt.tzinfo is None or dt.utcoffset():
        dt = dt.astimezone(UTC)
    return dt.isoformat(timespec="microseconds")[:-6] + "Z"  # drop "+00:00"


def parse_ts(s: str) -> datetime:
    return datetime.fromisoformat(s)


def event_fields(event: ToolCallEvent) -> dict[str, Any]:
    """The event's non-null wire fields as plain JSON values (ts as canonical string)."""
    out = {k: v for k, v in event.__dict__.items() if v is not None}
    out["ts"] = format_ts(event.ts)
    lat = out.get("latency_ms")
    if lat is not None and lat.is_integer():
        out["latency_ms"] = int(lat)  # 88.0 and 88 are the same JSON number; keeps the JCS fast path
    return out


def build_record(
    fields: dict[str, Any],
    *,
    source: str,
    received_at: str,
    redactions: dict[str, int],
    chain_id: str,
    seq: int,
) -> dict[str, Any]:
    """The dict whose canonical bytes are hashed, built in place on `fields` (from
    `event_fields`, after redaction); `received_at` is already a canonical ts string."""
    rec = fields
    rec["source"] = source
    rec["received_at"] = received_at
    rec["redactions"] = redactions
    rec["chain_id"] = chain_id
    rec["seq"] = seq
    rec["v"] = RECORD_VERSION
    return rec


def record_bytes(record: dict[str, Any], nested_simple: bool = False) -> bytes:
    """Canonical bytes of a stored record. Top-level keys are known ASCII field names, so
    only nested values and floats decide whether the orjson fast path is exact.
    `nested_simple=True` is the caller's promise that no nested value holds a float or a
    non-ASCII key (see `raw_is_simple`), which skips the walk."""
    for v in record.values():
        t = type(v)
        if t is float or (not nested_simple and (t is dict or t is list) and not fast_path_ok(v)):
            return canonical_bytes(record)
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


_FLOATISH = re.compile(rb"[0-9][.eE]")


def raw_is_simple(raw: bytes) -> bool:
    """Conservative test on an event's raw JSON: True guarantees that no value parsed from it
    is a float and no key is non-ASCII (so the JCS fast path is exact for its nested values).
    Strings that merely look numeric only cost the slower exact path."""
    return raw.isascii() and b"\\u" not in raw and _FLOATISH.search(raw) is None


# Typed columns of a stored row, in file order, with the DuckDB expression that derives the
# same value from `record` (used by verify to prove the two faces agree, and by nothing else).
_TS = pa.timestamp("us", tz="UTC")
TYPED_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("event_id", pa.string(), "record->>'event_id'"),
    ("ts", _TS, "strptime(record->>'ts', '%Y-%m-%dT%H:%M:%S.%fZ')::TIMESTAMPTZ"),
    ("received_at", _TS, "strptime(record->>'received_at', '%Y-%m-%dT%H:%M:%S.%fZ')::TIMESTAMPTZ"),
    ("source", pa.string(), "record->>'source'"),
    ("principal", pa.string(), "record->>'principal'"),
    ("agent", pa.string(), "record->>'agent'"),
    ("session", pa.string(), "record->>'session'"),
    ("server", pa.string(), "record->>'server'"),
    ("tool", pa.string(), "record->>'tool'"),
    ("decision", pa.string(), "record->>'decision'"),
    ("result", pa.string(), "record->>'result'"),
    ("scope_checked", pa.string(), "record->>'scope_checked'"),
    ("latency_ms", pa.float64(), "(record->>'latency_ms')::DOUBLE"),
    ("result_bytes", pa.int64(), "(record->>'result_bytes')::BIGINT"),
    ("chain_id", pa.string(), "record->>'chain_id'"),
    ("seq", pa.int64(), "(record->>'seq')::BIGINT"),
)
CHAIN_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("prev_hash", pa.string()),
    ("hash", pa.string()),
    ("record", pa.string()),
)
ARROW_SCHEMA = pa.schema([(n, t) for n, t, _ in TYPED_COLUMNS] + list(CHAIN_COLUMNS))
COLUMN_NAMES: tuple[str, ...] = tuple(ARROW_SCHEMA.names)
