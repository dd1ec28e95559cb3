"""Fast event-time helpers. Stored records carry `ts` as "YYYY-MM-DDTHH:MM:SS.ffffffZ"."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import numpy as np

_HOUR_CACHE: dict[str, float] = {}
_MIN_CACHE: dict[str, float] = {}  # "YYYY-MM-DDTHH:MM" -> epoch seconds (integral: sums stay exact)
_DUR_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DUR_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def minute_epoch(ts: str) -> float:
    """Epoch seconds of the minute that starts a canonical `ts` (cached)."""
    hour = _HOUR_CACHE.get(ts[:13])
    if hour is None:
        hour = datetime.fromisoformat(ts[:13] + ":00:00+00:00").timestamp()
        if len(_HOUR_CACHE) > 100_000:
            _HOUR_CACHE.clear()
        _HOUR_CACHE[ts[:13]] = hour
    base = hour + int(ts[14:16]) * 60
    if len(_MIN_CACHE) > 200_000:
        _MIN_CACHE.clear()
    _MIN_CACHE[ts[:16]] = base
    return base


def ts_epoch(ts: str) -> float:
    """Epoch seconds of a stored `ts` string (fast path for the canonical form)."""
    if len(ts) == 27 and ts[26] == "Z":
        base = _MIN_CACHE.get(ts[:16])
        if base is None:
            base = minute_epoch(ts)
        return base + int(ts[17:19]) + int(ts[20:26]) * 1e-6
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


_DIGIT_POS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25])
_SEP_POS = np.array([4, 7, 10, 13, 16, 19, 26])
_SEP_VAL = np.array([ord(c) for c in "--T::.Z"])
_MDAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def batch_epochs(values: list[Any]) -> list[float | None]:
    """ts_epoch of each strictly canonical "YYYY-MM-DDTHH:MM:SS.ffffffZ" string (valid date,
    hour < 24), vectorised: the same float (whole seconds + microseconds * 1e-6). None for
    anything else (another type, form or length): the caller uses ts_epoch for those."""
    n = len(values)
    try:  # the common case: ASCII strings of 27 characters, read as one (n, 28) byte matrix
        if set(map(len, values)) != {27}:
            raise ValueError
        a = np.frombuffer(("\n".join(values) + "\n").encode("ascii"), dtype=np.uint8).reshape(n, 28)
        ok = np.ones(n, dtype=bool)
    except (TypeError, UnicodeEncodeError, ValueError):  # per value; others fail the checks below
        strs = [v if v.__class__ is str else "" for v in values]
        a = np.array(strs, dtype="<U28").view(np.uint32).reshape(n, 28)
        ok = a[:, 27] == 0
    return _epochs(a, ok)


def _epochs(a: np.ndarray, ok: np.ndarray) -> list[float | None]:
    ok &= (a[:, _SEP_POS] == _SEP_VAL).all(axis=1)
    d = a[:, _DIGIT_POS] - 48  # unsigned: anything below "0" wraps above 9
    ok &= (d <= 9).all(axis=1)
    d = d.astype(np.int64)
    y = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    mo = d[:, 4] * 10 + d[:, 5]
    day = d[:, 6] * 10 + d[:, 7]
    hh = d[:, 8] * 10 + d[:, 9]
    mm = d[:, 10] * 10 + d[:, 11]
    ss = d[:, 12] * 10 + d[:, 13]
    us = d[:, 14] * 100000 + d[:, 15] * 10000 + d[:, 16] * 1000 + d[:, 17] * 100 + d[:, 18] * 10 + d[:, 19]
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    mdays = _MDAYS[np.clip(mo, 0, 12)] + ((mo == 2) & leap)
    ok &= (y >= 1) & (mo >= 1) & (mo <= 12) & (day >= 1) & (day <= mdays) & (hh <= 23)
    # days from civil (proleptic Gregorian), integer arithmetic
    yy = y - (mo <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (mo + np.where(mo > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    ts = (days * 86400 + hh * 3600 + mm * 60 + ss).astype(np.float64) + us.astype(np.float64) * 1e-6
    out: list[float | None] = ts.tolist()
    if not ok.all():
        for i in np.flatnonzero(~ok).tolist():
            out[i] = None
    return out


def epoch_ts(t: float) -> str:
    """Stored-form string of epoch seconds."""
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch_dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def parse_duration(v: str | int | float) -> float:
    """'30s', '5m', '1h', '2d', 90 -> seconds. Raises ValueError with the bad value."""
    if isinstance(v, bool):
        raise ValueError(f"invalid duration {v!r}")
    if isinstance(v, int | float):
        if v < 0:
            raise ValueError(f"negative duration {v!r}")
        return float(v)
    m = _DUR_RE.match(str(v))
    if not m:
        raise ValueError(f"invalid duration {v!r}: use e.g. 30s, 5m, 1h, 2d")
    return float(m.group(1)) * _DUR_UNIT[m.group(2)]
