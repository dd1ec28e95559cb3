"""Wire format v1: the seed's example event, limits with clear errors, exported JSON Schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from schemas import limits as L
from schemas.event import ToolCallEvent
from schemas.export import HERE, SCHEMAS, render
from tests.conftest import SEED_EVENT


def _fields_of(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


def test_seed_example_is_accepted_exactly_as_printed():
    ev = ToolCallEvent.model_validate(SEED_EVENT)
    assert ev.principal == "user_8842" and ev.decision == "allow" and ev.args == {"customer_id": 5512}
    assert ev.ts == datetime(2026, 5, 29, 11, 4, 22, tzinfo=UTC)


@pytest.mark.parametrize("patch,field", [
    ({"decision": "maybe"}, "decision"),
    ({"result": "exploded"}, "result"),
    ({"principal": "x" * (L.MAX_NAME_LEN + 1)}, "principal"),
    ({"principal": "bob\nalice"}, "principal"),
    ({"session": ""}, "session"),
    ({"ts": "2026-05-29T11:04:22"}, "ts"),
    ({"ts": "yesterday"}, "ts"),
    ({"ts": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "ts"),
    ({"args": {"a": 2**60}}, "args"),
    ({"args": {"blob": "x" * (L.MAX_ARGS_BYTES + 10)}}, "args"),
    ({"latency_ms": -1}, "latency_ms"),
    ({"event_id": "has space"}, "event_id"),
    ({"labels": {f"k{i}": "v" for i in range(L.MAX_LABELS + 1)}}, "labels"),
    ({"unknown_field": 1}, "unknown_field"),
])
def test_limits_name_the_field(patch, field):
    with pytest.raises(ValidationError) as exc:
        ToolCallEvent.model_validate({**SEED_EVENT, **patch})
    assert field in _fields_of(exc.value)


def test_deep_args_rejected():
    deep: dict = {}
    cur = deep
    for _ in range(L.MAX_ARGS_DEPTH + 2):
        cur["d"] = {}
        cur = cur["d"]
    with pytest.raises(ValidationError) as exc:
        ToolCallEvent.model_validate({**SEED_EVENT, "args": deep})
    assert "args" in _fields_of(exc.value)
    assert "nested deeper" in str(exc.value)


def test_missing_required_fields_are_named():
    with pytest.raises(ValidationError) as exc:
        ToolCallEvent.model_validate({"tool": "x"})
    assert {"ts", "principal", "session", "decision"} <= _fields_of(exc.value)


def test_offsets_normalised_to_utc():
    ev = ToolCallEvent.model_validate({**SEED_EVENT, "ts": "2026-05-29T13:04:22+02:00"})
    assert ev.ts == datetime(2026, 5, 29, 11, 4, 22, tzinfo=UTC)


def test_exported_json_schema_is_current():
    for name, model in SCHEMAS.items():
        assert (HERE / name).read_text() == render(model), f"run `python -m schemas.export` ({name} is stale)"


def test_raw_precheck_never_admits_what_the_walk_rejects():
    """raw_args_within_limits is a shortcut for check_json_value: it may say no, never wrongly yes."""
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from schemas.event import check_json_value, raw_args_within_limits

    values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                          lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
                          max_leaves=40)

    @settings(max_examples=400, deadline=None)
    @given(st.dictionaries(st.text(max_size=4), values, max_size=5))
    def prop(args):
        raw = json.dumps({**SEED_EVENT, "args": args}).encode()
        if raw_args_within_limits(raw):
            check_json_value(json.loads(raw)["args"])  # must not raise

    prop()


@pytest.mark.parametrize("args_json", [
    b'{"n": 12345678901234567890}', b'{"x": NaN}', b'{"x": Infinity}',
    b'{"d":' * 20 + b"1" + b"}" * 20,
])
def test_write_path_rejects_out_of_limit_args_from_raw_json(config, args_json):
    from ingest.pipeline import Ingestor

    raw = b'{"ts":"2026-05-29T11:04:22Z","principal":"p","session":"s","tool":"t","decision":"allow","args":' + args_json + b"}"
    with Ingestor.open(config, "t", direct=True) as ing:
        res = ing.submit([raw], source="gw")
    assert res.stored == 0 and res.rejected and res.rejected[0].field.startswith("args")


def _outcome(fn):
    try:
        return "ok", fn()
    except ValidationError as exc:
        return "rejected", sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})


def test_fast_wire_adapter_agrees_with_the_model():
    """The write path validates with a TypedDict twin of ToolCallEvent; on any input, valid or
    not, it must accept exactly what the model accepts, with the same fields, and name the
    same bad fields."""
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from schemas.event import ARGS_PRECHECKED
    from schemas.stored import event_fields, wire_fields, wire_fields_json

    scalar = st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.floats(allow_nan=False) | st.text(max_size=6)
    name = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_characters="\x7f"), min_size=1, max_size=5)
    json_value = st.recursive(scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                              max_leaves=8)
    valid = {  # field -> values the model accepts
        "event_id": st.none() | st.from_regex(r"\A[A-Za-z0-9._:-]{1,20}\Z"),
        "ts": st.sampled_from(["2026-05-29T11:04:22Z", "2026-05-29T13:04:22.5+02:00", "2020-02-29T23:59:59.999999-11:30"]),
        "principal": name, "agent": st.none() | name, "session": name, "tool": name, "server": st.none() | name,
        "args": st.dictionaries(st.text(max_size=3), json_value, max_size=4),
        "decision": st.sampled_from(["allow", "deny"]),
        "result": st.sampled_from(["ok", "error", "denied", "timeout", None]),
        "reason": st.none() | st.text(max_size=8),
        "latency_ms": st.none() | st.integers(0, 10**6) | st.floats(0, 10**6),
        "result_bytes": st.none() | st.integers(0, 2**40),
        "scopes_granted": st.none() | st.lists(name, max_size=3),
        "labels": st.none() | st.dictionaries(st.text(min_size=1, max_size=3), st.text(max_size=3), max_size=3),
    }
    invalid = {  # field -> values that may or may not be accepted
        "event_id": st.sampled_from(["has space", "", "x" * 200]),
        "ts": st.sampled_from(["2026-05-29T11:04:22", "2999-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "yesterday", 5]),
        "principal": st.sampled_from(["x" * 300, "a\nb", ""]) | scalar, "tool": scalar,
        "args": scalar | st.just({"n": 2**60}), "decision": st.sampled_from(["maybe", None]),
        "result": st.just("boom"), "latency_ms": st.sampled_from([-1, "5", True, 10**13]),
        "result_bytes": st.sampled_from([-5, 2**54, 1.5]), "labels": st.dictionaries(st.text(max_size=3), scalar, max_size=2),
        "unknown": scalar,
    }
    required = ["ts", "principal", "session", "tool", "decision"]

    @settings(max_examples=500, deadline=None)
    @given(st.data())
    def prop(data):
        optional = data.draw(st.sets(st.sampled_from(sorted(set(valid) - set(required)))))
        ev = {k: data.draw(valid[k]) for k in [*required, *optional]}
        for k in data.draw(st.sets(st.sampled_from(sorted(invalid)), max_size=2)):
            ev[k] = data.draw(invalid[k])
        if data.draw(st.integers(0, 9)) == 0:
            ev.pop(data.draw(st.sampled_from(required)))
        raw = json.dumps(ev).encode()
        ctx = {ARGS_PRECHECKED: data.draw(st.booleans())}
        model_json = _outcome(lambda: event_fields(ToolCallEvent.model_validate_json(raw, context=ctx)))
        assert _outcome(lambda: wire_fields_json(raw, ctx)) == model_json
        model_py = _outcome(lambda: event_fields(ToolCallEvent.model_validate(ev, context=ctx)))
        assert _outcome(lambda: wire_fields(ev, ctx)) == model_py
        seen.add(model_json[0])

    seen: set[str] = set()
    prop()
    assert seen == {"ok", "rejected"}  # both sides of the contract were exercised
