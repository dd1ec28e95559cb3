"""The fast canonicalization path must equal the reference RFC 8785 implementation."""

from __future__ import annotations

import json
import math

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.canonical import CanonicalizationError, canonical_bytes, es_number

json_scalars = (st.none() | st.booleans() | st.integers(-(2**53) - 2, 2**53 + 2)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=5)
                           | st.dictionaries(st.text(max_size=8), children, max_size=5), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fast_path_equals_reference(value):
    try:
        want = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(CanonicalizationError):
            canonical_bytes(value)
        return
    assert canonical_bytes(value) == want


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_formatting_matches_ecmascript(f):
    assert es_number(f) == rfc8785.dumps(f)


def test_number_policy():
    with pytest.raises(CanonicalizationError):
        canonical_bytes({"n": 2**53 + 1})
    with pytest.raises(CanonicalizationError):
        canonical_bytes({"n": math.nan})
    assert canonical_bytes({"b": 1.0, "a": 1e21}) == b'{"a":1e+21,"b":1}'


def test_key_order_is_utf16():
    value = {"\ue000": 1, "\U0001f600": 2, "a": 3}
    assert canonical_bytes(value) == rfc8785.dumps(value)


json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(json_objects, st.booleans())
def test_nested_simple_flag_never_changes_the_canonical_bytes(args, escape):
    """record_bytes' shortcut (trusting nested_simple on the parsed event) is exact."""
    import orjson

    from schemas.stored import nested_simple, record_bytes

    try:
        rfc8785.dumps(args)
    except rfc8785.CanonicalizationError:
        return
    raw = json.dumps(args, ensure_ascii=escape).encode() if escape else orjson.dumps(args)
    record = {"args": json.loads(raw), "labels": {k: "v" for k in args}, "seq": 1, "tool": "t"}
    assert record_bytes(record, nested_simple(record)) == rfc8785.dumps(record)


big_doubles = st.floats(min_value=2.0**53, max_value=1e22) | st.floats(min_value=-1e22, max_value=-(2.0**53))


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values | big_doubles, max_size=6))
def test_load_record_reads_canonical_bytes_as_orjson_does(obj):
    """Detection's record reader (pydantic-core, cached strings) gives the same dict as
    orjson for every canonical record, floats and non-ASCII keys included."""
    import orjson

    from schemas.stored import load_record

    try:
        data = canonical_bytes(obj)
    except CanonicalizationError:
        return
    got = load_record(data)
    assert got == orjson.loads(data) == load_record(data.decode())  # Parquet gives str or bytes
    assert orjson.dumps(got, option=orjson.OPT_SORT_KEYS) == orjson.dumps(orjson.loads(data), option=orjson.OPT_SORT_KEYS)


def test_load_record_shares_repeated_short_strings():
    """What makes it the faster reader for detection: a value repeated across records is
    one object (identity hits in the engine's dictionaries), not a copy per record."""
    from schemas.stored import load_record

    a = load_record(b'{"server":"filesystem","tool":"read_file","seq":1}')
    b = load_record(b'{"server":"filesystem","tool":"read_file","seq":2}')
    assert a["server"] is b["server"] and a["tool"] is b["tool"]
    assert (a["seq"], b["seq"]) == (1, 2)
