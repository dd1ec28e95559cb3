"""Fast event-time helpers. Stored records carry `ts` as "YYYY-MM-DDTHH:MM:SS.ffffffZ"."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_HOUR_CACHE: dict[str, float] = {}
_SEC_CACHE: dict[str, float] = {}
_DUR_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DUR_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def ts_epoch(ts: str) -> float:
    """Epoch seconds of a stored `ts` string (fast path for the canonical form)."""
    if len(ts) == 27 and ts[26] == "Z":
        base = _SEC_CACHE.get(ts[:19])
        if base is None:
            hour = _HOUR_CACHE.get(ts[:13])
            if hour is None:
                hour = datetime.fromisoformat(ts[:13] + ":00:00+00:00").timestamp()
                if len(_HOUR_CACHE) > 100_000:
                    _HOUR_CACHE.clear()
                _HOUR_CACHE[ts[:13]] = hour
            base = hour + int(ts[14:16]) * 60 + int(ts[17:19])
            if len(_SEC_CACHE) > 200_000:
                _SEC_CACHE.clear()
            _SEC_CACHE[ts[:19]] = base
        return base + int(ts[20:26]) * 1e-6
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


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
