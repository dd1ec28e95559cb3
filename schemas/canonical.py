"""Canonical bytes of a record: RFC 8785 (JSON Canonicalization Scheme).

Policy (documented in the README):
- numbers: integers must lie within +-2**53 (JCS numbers are IEEE doubles); larger ones are
  rejected at validation with a clear error - send them as strings. NaN and +-Infinity are
  not JSON and are rejected.
- duplicate object keys: the JSON parsers used at the edges keep the last value; the stored
  and hashed form holds only that value, so what is hashed is exactly what is queried.
- strings are stored as received (no Unicode normalisation).

Speed: the pure-Python `rfc8785` package costs ~18 us per event. orjson with sorted keys
produces identical bytes whenever the value holds no float and every object key is ASCII
(then UTF-8 byte order equals JCS's UTF-16 order, and orjson's string escaping equals
JCS's). `canonical_bytes` takes that fast path for every float-free ASCII-keyed subtree and
writes the rest itself (ECMAScript number formatting, UTF-16 key order); a property test
pins the result to the reference `rfc8785` implementation.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import orjson

from schemas.limits import JSON_SAFE_INT

_SORT = orjson.OPT_SORT_KEYS


class CanonicalizationError(ValueError):
    """The value cannot be represented canonically (big int, NaN, non-string key...)."""


def fast_path_ok(value: Any, depth: int = 0) -> bool:
    """True when orjson's sorted output is byte-identical to JCS for `value`."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        if -JSON_SAFE_INT <= value <= JSON_SAFE_INT:
            return True
        raise CanonicalizationError("integer beyond +-2^53 cannot be canonicalized; send it as a string")
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise CanonicalizationError("object keys must be strings")
            if not k.isascii():
                return False
            if not fast_path_ok(v, depth + 1):
                return False
        return True
    if t is list:
        return all(fast_path_ok(v, depth + 1) for v in value)
    if t is float:
        return False
    raise CanonicalizationError(f"value of type {t.__name__} is not JSON")


def es_number(f: float) -> bytes:
    """ECMAScript Number.prototype.toString of a finite double, as JCS prescribes."""
    if f != f or f in (math.inf, -math.inf):
        raise CanonicalizationError("NaN and Infinity are not JSON numbers")
    if f == 0:
        return b"0"
    if f < 0:
        return b"-" + es_number(-f)
    # repr gives the shortest round-tripping digits, as ECMAScript does.
    sign_, digits, exp = Decimal(repr(f)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0")
    exp += len(digits) - len(ds)
    k = len(ds)
    n = exp + k  # value = 0.ds * 10**n
    if k <= n <= 21:
        out = ds + "0" * (n - k)
    elif 0 < n <= 21:
        out = ds[:n] + "." + ds[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + ds
    else:
        e = n - 1
        mant = ds if k == 1 else ds[0] + "." + ds[1:]
        out = f"{mant}e{'+' if e >= 0 else '-'}{abs(e)}"
    return out.encode()


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


def _write(value: Any, out: list[bytes]) -> None:
    t = type(value)
    if t is float:
        out.append(es_number(value))
    elif t is dict:
        if fast_path_ok(value):
            out.append(orjson.dumps(value, option=_SORT))
            return
        out.append(b"{")
        for i, k in enumerate(sorted(value, key=_utf16_key)):
            if i:
                out.append(b",")
            out.append(orjson.dumps(k))
            out.append(b":")
            _write(value[k], out)
        out.append(b"}")
    elif t is list:
        out.append(b"[")
        for i, v in enumerate(value):
            if i:
                out.append(b",")
            _write(v, out)
        out.append(b"]")
    else:
        fast_path_ok(value)  # raises on big ints / non-JSON types
        out.append(orjson.dumps(value))


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON-compatible value."""
    if fast_path_ok(value):
        return orjson.dumps(value, option=_SORT)
    out: list[bytes] = []
    try:
        _write(value, out)
    except orjson.JSONEncodeError as exc:  # e.g. lone surrogates in a string
        raise CanonicalizationError(str(exc)) from exc
    return b"".join(out)
