"""Time ranges of the dashboard: presets, custom ranges, bucket sizes, display formats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PRESETS: dict[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
PRESET_LABELS = {
    "15m": "Last 15 minutes",
    "1h": "Last hour",
    "6h": "Last 6 hours",
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
}
BUCKETS_S = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return max(1.0, (self.end - self.start).total_seconds())

    def bucket_seconds(self, max_buckets: int = 180) -> int:
        for b in BUCKETS_S:
            if self.seconds / b <= max_buckets:
                return b
        return BUCKETS_S[-1]

    def label(self) -> str:
        return f"{fmt_ts(self.start)} - {fmt_ts(self.end)} UTC"


def utcnow() -> datetime:
    return datetime.now(UTC)


def preset_range(preset: str, now: datetime | None = None) -> TimeRange:
    now = now or utcnow()
    return TimeRange(now - PRESETS.get(preset, PRESETS["24h"]), now)


_REL = re.compile(r"^now\s*(?:-\s*(\d+)\s*([smhd]))?$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_dt(text: str | None) -> datetime | None:
    """ISO 8601 / RFC 3339 (or 'YYYY-MM-DD HH:MM[:SS]', or 'now', 'now-24h', 'now-7d'); naive values are UTC."""
    if not text:
        return None
    rel = _REL.match(str(text).strip().lower())
    if rel:
        n, unit = rel.groups()
        return utcnow() - timedelta(seconds=int(n) * _UNIT[unit]) if n else utcnow()
    t = str(text).strip().replace(" ", "T")
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def to_dt(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_dt(str(value))


def fmt_ts(value: object, *, micro: bool = False) -> str:
    dt = to_dt(value)
    if dt is None:
        return ""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f") if micro else dt.strftime("%Y-%m-%d %H:%M:%S")


def iso(value: object) -> str:
    dt = to_dt(value)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else ""


def fmt_age(value: object, now: datetime | None = None) -> str:
    dt = to_dt(value)
    if dt is None:
        return ""
    s = ((now or utcnow()) - dt).total_seconds()
    if s < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{int(s // size)} {unit} ago"
    return f"{int(s)} s ago"
