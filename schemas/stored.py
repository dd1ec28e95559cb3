"""The stored form of an event: the canonical record that is hashed, and its Parquet row.

A stored row has two faces:
- `record`: the canonical JSON (RFC 8785) of the redacted event plus what the collector
  added (`source`, `received_at`, `redactions`, `chain_id`, `seq`, `v`). Its bytes are the
  Merkle leaf and the input of the hash chain. `args` and `labels` live only here.
- typed columns for fast filtering (`principal`, `session`, `tool`, `ts`, ...). `verify`
  checks every typed column against `record`, so editing either is detected.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, NotRequired, Required

import orjson
import pyarrow as pa
from pydantic import AfterValidator, ConfigDict, TypeAdapter, with_config
from pydantic_core import from_json
from typing_extensions import TypedDict

from schemas.canonical import canonical_bytes, fast_path_ok
from schemas.event import ToolCallEvent, number_shape

RECORD_VERSION = 1
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_ts(dt: datetime) -> str:
    """The one string form of a timestamp in canonical records (UTC, microseconds)."""
    if dt.tzinfo is None or dt.utcoffset():
        dt = dt.astimezone(UTC)
    # %-formatting the fields is twice as fast as isoformat() here (hot path: once per event)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second,  # noqa: UP031
                                                    dt.microsecond)


def parse_ts(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _plain_number(v: float | None) -> float | int | None:
    # 88.0 and 88 are the same JSON number; an int keeps the JCS fast path
    return int(v) if v is not None and v.is_integer() else v


def event_fields(event: ToolCallEvent) -> dict[str, Any]:
    """The event's non-null wire fields as plain JSON values (ts as canonical string)."""
    out = {k: v for k, v in event.__dict__.items() if v is not None}
    out["ts"] = format_ts(event.ts)
    if "latency_ms" in out:
        out["latency_ms"] = _plain_number(out["latency_ms"])
    return out


def _wire_adapter() -> TypeAdapter[dict[str, Any]]:
    """A TypedDict twin of ToolCallEvent built from the model's own field annotations (so
    the limits and validators are the same objects), whose output is already what
    `event_fields` makes of a model. It skips building a model instance and then a dict
    from it: about half the validation cost on the hot path."""
    fields: dict[str, Any] = {}
    for name, f in ToolCallEvent.model_fields.items():
        ann: Any = Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation
        if name == "ts":
            ann = Annotated[ann, AfterValidator(format_ts)]
        elif name == "latency_ms":
            ann = Annotated[ann, AfterValidator(_plain_number)]
        fields[name] = Required[ann] if f.is_required() else NotRequired[ann]
    wire = TypedDict("WireEvent", fields, total=False)  # type: ignore[operator]
    return TypeAdapter(with_config(ConfigDict(extra="forbid"))(wire))


_WIRE = _wire_adapter()


def _wire_finish(d: dict[str, Any], maybe_null: bool = True) -> dict[str, Any]:
    if maybe_null and None in d.values():  # explicit nulls mean "absent", as in the model
        d = {k: v for k, v in d.items() if v is not None}
    if "args" not in d:
        d["args"] = {}
    return d


def wire_fields_json(raw: bytes, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate one raw JSON event; same result (or ValidationError) as
    event_fields(ToolCallEvent.model_validate_json(raw, context=context))."""
    return _wire_finish(_WIRE.validate_json(raw, context=context), b"null" in raw)


def wire_fields(obj: Any, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate one parsed event (a dict); same result as event_fields(ToolCallEvent.model_validate(obj))."""
    return _wire_finish(_WIRE.validate_python(obj, context=context))


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
    non-ASCII key (see `nested_simple`), which skips the walk."""
    if nested_simple:
        if float in map(type, record.values()):
            return canonical_bytes(record)
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    for v in record.values():
        t = type(v)
        if t is float or ((t is dict or t is list) and not fast_path_ok(v)):
            return canonical_bytes(record)
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def load_record(data: bytes | bytearray | str) -> dict[str, Any]:
    """A stored record's dict, for the readers that feed detection (backtest, follower).
    Strings of up to 64 characters are cached across calls (pydantic-core's JSON parser), so
    the values a stream repeats (servers, tools, principals, sessions, decisions) come back as
    shared objects, as in the live path's validated records: detection's dictionary lookups
    on them hit by identity and reuse the string's hash (~20% faster detection than on
    fresh strings from orjson, and the parse itself is as fast)."""
    if data.__class__ is str:
        data = data.encode()
    if b"000" in data and any(end in data for end in _BIG_NUMBER_ENDS):  # one scan rejects most records
        return orjson.loads(data)  # type: ignore[no-any-return]
    return from_json(data, cache_strings="all")  # type: ignore[no-any-return]


# A double of 2^64 or more is written by JCS as 20-21 digits (up to 1e21) with >= 3 trailing
# zeros (17 significant digits at most); orjson reads it as the float it is, pydantic-core as
# a big int (which orjson could not write back). Such records, and a few others that merely
# contain these bytes, are read with orjson.
_BIG_NUMBER_ENDS = (b"000,", b"000}", b"000]")


_FLAT_TYPES = frozenset((str, int, bool, type(None)))  # validated ints are within +-2^53


def nested_simple(fields: dict[str, Any]) -> bool:
    """True guarantees that the event's nested values (`args`, `labels`; `scopes_granted`
    only holds strings) contain no float and no non-ASCII object key, so the JCS fast path
    is exact for them (the `nested_simple` promise of record_bytes). Flat `args` are judged
    by their value types; nested ones on their compact orjson dump, which is ~4x cheaper
    than walking them: in that dump a float always shows as a digit followed by "." or "e";
    strings that merely look like that only cost the exact path."""
    args = fields.get("args")
    if args and not (_FLAT_TYPES.issuperset(map(type, args.values())) and "".join(args).isascii()):
        shape = number_shape(orjson.dumps(args))
        if not shape.isascii() or b"0." in shape or b"0e" in shape:
            return False
    labels = fields.get("labels")
    return not labels or all(k.isascii() for k in labels)


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
