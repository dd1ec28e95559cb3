"""Quarantine: input that failed validation, kept (redacted) with the reasons, never dropped.

Stored as fsync'd JSONL under lake/quarantine/date=YYYY-MM-DD/<writer>.jsonl so DuckDB
reads it as the `quarantine` view. The raw input is redacted before it touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from ingest.fsio import append_durable
from ingest.layout import Layout
from schemas.stored import format_ts

MAX_RAW_CHARS = 16 * 1024


@dataclass(frozen=True)
class Rejection:
    index: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


class Quarantine:
    def __init__(self, layout: Layout, writer: str) -> None:
        self.layout = layout
        self.writer = writer  # chain id or process name: one file per writer, no interleaving

    def path_for(self, received_at: str):
        d = self.layout.quarantine_dir / f"date={received_at[:10]}"
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{self.writer}.jsonl"

    def store(self, items: list[dict]) -> list[dict]:
        """items: {source, origin, reasons: [{field, reason}], raw (already redacted)} each.
        Returns the records as stored (durable when this returns)."""
        if not items:
            return []
        now = format_ts(datetime.now(UTC))
        records = []
        for it in items:
            raw = it.get("raw") or ""
            records.append({
                "received_at": now,
                "source": it.get("source"),
                "origin": it.get("origin"),
                "reasons": it.get("reasons", []),
                "raw": raw[:MAX_RAW_CHARS],
                "raw_truncated": len(raw) > MAX_RAW_CHARS,
                "redactions": it.get("redactions", {}),
            })
        append_durable(self.path_for(now), b"".join(orjson.dumps(r) + b"\n" for r in records))
        return records
