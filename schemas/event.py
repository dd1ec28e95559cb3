"""Wire format v1 of a tool-call event: what gateways, proxies and servers send.

The model accepts the example audit event of the prioritized checklist seed exactly as
printed there. Unknown fields are rejected (a typo must not silently lose data); every
limit lives in `schemas.limits`.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo

from schemas import limits as L

# Identifier-like fields: printable, no control characters (they end up in dashboards,
# logs and file names of evidence bundles).
_NO_CTRL = r"^[^\x00-\x1f\x7f]*$"
Ident = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_NAME_LEN, pattern=_NO_CTRL)]
ShortId = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_ID_LEN, pattern=_NO_CTRL)]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_ID_LEN, pattern=r"^[A-Za-z0-9._:\-]+$")]
Text = Annotated[str, StringConstraints(max_length=L.MAX_TEXT_LEN)]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=L.MAX_LABEL_KEY_LEN)]
LabelValue = Annotated[str, StringConstraints(max_length=L.MAX_LABEL_VALUE_LEN)]
_SKEW = timedelta(seconds=L.MAX_FUTURE_SKEW_S)
Decision = Literal["allow", "deny"]
Result = Literal["ok", "error", "denied", "timeout"]


_SCALARS = (str, bool, type(None))


def check_json_value(value: Any) -> None:
    """Depth, node count, size and number-domain limits of a JSON value (the `args` object).

    Raises ValueError naming the problem; pydantic reports it under the field name. The size
    is counted as the characters of keys and strings plus a few bytes per value, a tight
    upper bound of the JSON size that needs no serialization."""
    nodes = 0
    size = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if t is dict or t is list:
            if depth > L.MAX_ARGS_DEPTH:
                raise ValueError(f"nested deeper than {L.MAX_ARGS_DEPTH} levels")
            items = v.items() if t is dict else enumerate(v)
            for k, item in items:
                nodes += 1
                size += 8
                if t is dict:
                    if type(k) is not str:
                        raise ValueError("object keys must be strings")
                    size += len(k)
                ti = type(item)
                if ti is str:
                    size += len(item)
                elif ti is dict or ti is list:
                    stack.append((item, depth + 1))
                elif ti is int:
                    if not -L.JSON_SAFE_INT <= item <= L.JSON_SAFE_INT:
                        raise ValueError("integer beyond +-2^53; send large numbers as strings")
                elif ti is float:
                    if item != item or item in (math.inf, -math.inf):
                        raise ValueError("NaN and Infinity are not allowed")
                elif not (ti is bool or item is None):
                    raise ValueError(f"unsupported value type {ti.__name__}")
            if nodes > L.MAX_ARGS_NODES:
                raise ValueError(f"more than {L.MAX_ARGS_NODES} values")
            if size > L.MAX_ARGS_BYTES:
                raise ValueError(f"larger than {L.MAX_ARGS_BYTES} bytes as JSON")
        else:
            raise ValueError("must be a JSON object")


# The raw bytes of one event can prove the `args` limits hold without walking the parsed
# value: few brackets bound the depth, a short text bounds the node count and size, and no
# long digit run / NaN / Infinity means no out-of-domain number. Callers that checked this
# pass context={ARGS_PRECHECKED: True} to validation.
ARGS_PRECHECKED = "args_prechecked"
# Raw scans run per event on the hot path; a regex over every position costs microseconds,
# so digits are folded to "0" (and E to e) once and the scans become substring tests.
_NUMBER_SHAPE = bytes.maketrans(b"123456789E", b"000000000e")
_LONG_DIGIT_RUN = b"0" * 16


def number_shape(raw: bytes) -> bytes:
    """`raw` with every digit replaced by 0 and E by e (input of the raw_* shortcuts)."""
    return raw.translate(_NUMBER_SHAPE)


def raw_args_within_limits(raw: bytes, shape: bytes | None = None) -> bool:
    """True guarantees check_json_value would accept the `args` parsed from `raw`
    (`shape` is number_shape(raw), when the caller has it)."""
    if shape is None:
        shape = number_shape(raw)
    return (len(raw) <= 2 * L.MAX_ARGS_NODES and len(raw) <= L.MAX_ARGS_BYTES
            and raw.count(b"{") + raw.count(b"[") <= L.MAX_ARGS_DEPTH
            and _LONG_DIGIT_RUN not in shape and b"NaN" not in raw and b"Infinity" not in raw)


_clock_cache: list[float | datetime] = [0.0, datetime.now(UTC)]


def _now() -> datetime:
    """Wall clock, re-read at most every 50 ms (validation runs per event on the hot path)."""
    mono = time.monotonic()
    if mono - _clock_cache[0] > 0.05:  # type: ignore[operator]
        _clock_cache[0], _clock_cache[1] = mono, datetime.now(UTC)
    return _clock_cache[1]  # type: ignore[return-value]


def _ts_aware_and_sane(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("timestamp needs a time zone (RFC 3339), e.g. 2026-05-29T11:04:22Z")
    if v.utcoffset():
        v = v.astimezone(UTC)
    if v.year < L.MIN_TS_YEAR:
        raise ValueError(f"timestamp before {L.MIN_TS_YEAR}")
    if v > _now() + _SKEW:
        raise ValueError(f"timestamp more than {L.MAX_FUTURE_SKEW_S}s in the future")
    return v


def _args_bounded(v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    if not (info.context and info.context.get(ARGS_PRECHECKED)):
        check_json_value(v)
    return v


def _labels_bounded(v: dict[str, str]) -> dict[str, str]:
    if len(v) > L.MAX_LABELS:
        raise ValueError(f"more than {L.MAX_LABELS} labels")
    return v


# Validators are part of the field types (not model methods), so that `schemas.stored`
# can build its fast wire adapter from exactly these annotations.
Timestamp = Annotated[datetime, AfterValidator(_ts_aware_and_sane)]
Args = Annotated[dict[str, Any], AfterValidator(_args_bounded)]
Labels = Annotated[dict[LabelKey, LabelValue], AfterValidator(_labels_bounded)]
# strict: "88" or true are not numbers (JSON Schema says number/integer, so must we)
LatencyMs = Annotated[float, Field(ge=0, le=L.MAX_LATENCY_MS, strict=True)]
ResultBytes = Annotated[int, Field(ge=0, le=L.MAX_RESULT_BYTES, strict=True)]


class ToolCallEvent(BaseModel):
    """One tool invocation as reported by a gateway, proxy or MCP server (wire format v1)."""

    model_config = ConfigDict(extra="forbid", frozen=False, str_strip_whitespace=False)

    event_id: EventId | None = Field(None, description="Idempotency key. Assigned from the content if absent.")
    ts: Timestamp = Field(description="When the call happened (RFC 3339 with a time zone).")
    principal: Ident = Field(description="Authenticated principal (user or service) the agent acted for.")
    agent: Ident | None = Field(None, description="Agent / MCP client identity.")
    token_id: ShortId | None = Field(None, description="Identifier of the credential used - never the token itself.")
    session: Ident = Field(description="Session id (MCP session or agent run).")
    correlation_id: ShortId | None = Field(None, description="Upstream request id tying events together.")
    server: Ident | None = Field(None, description="MCP server name.")
    server_version: Ident | None = None
    tool: Ident = Field(description="Tool name.")
    tool_description_hash: ShortId | None = Field(None, description="Canonical hash of the tool's definition.")
    args: Args = Field(default_factory=dict, description="Validated tool arguments (JSON object).")
    decision: Decision = Field(description="Authorization decision: allow or deny.")
    reason: Text | None = Field(None, description="Why the decision was taken.")
    scope_checked: Ident | None = Field(None, description="The scope the authorization check required.")
    scopes_granted: Annotated[list[Ident], Field(max_length=L.MAX_SCOPES)] | None = None
    result: Result | None = Field(None, description="Outcome of the call.")
    error: Text | None = Field(None, description="Error text (sanitised) when result is error.")
    latency_ms: LatencyMs | None = None
    result_bytes: ResultBytes | None = None
    labels: Labels | None = None


WIRE_FIELDS: tuple[str, ...] = tuple(ToolCallEvent.model_fields)
REQUIRED_FIELDS: frozenset[str] = frozenset(n for n, f in ToolCallEvent.model_fields.items() if f.is_required())
