"""Where a partition's chain stopped: the highest Kafka offset already stored (or quarantined).

The broker's committed offset can lag the log (a crash between fsync and commit, a commit
lost to a rebalance, a zombie member whose commits were fenced). The chain itself records
each event's ``origin``, so on assignment the collector resumes from
``max(committed, last stored offset + 1)``: nothing stored is read again, nothing unstored is skipped.
"""

from __future__ import annotations

import re

import orjson
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.kafka.naming import origin_prefix, parse_origin
from ingest.layout import Layout
from ingest.segments import live_segments

MAX_SEGMENTS_SCANNED = 64
QUARANTINE_TAIL_BYTES = 1 << 20


def last_stored_offset(layout: Layout, chain_id: str, topic: str, partition: int) -> int | None:
    """Highest offset of ``topic``/``partition`` among the chain's sealed events, newest segments
    first. Call it while owning the chain with everything sealed (right after ``Ingestor.open``,
    which replays the write-ahead log into a segment)."""
    # Records are canonical JSON: `"origin":"kafka:<topic>:<partition>:<offset>"` appears verbatim
    # (topic names need no escaping), so one vectorised regex pass per segment finds it.
    pattern = '"origin":"' + re.escape(origin_prefix(topic, partition)) + r'(?P<off>\d+)"'
    for info in reversed(live_segments(layout, chain_id)[-MAX_SEGMENTS_SCANNED:]):
        col = pq.read_table(layout.lake / info.path, columns=["record"]).column("record")
        found = pc.extract_regex(col, pattern=pattern)
        offsets = pc.cast(pc.struct_field(found, "off"), "int64")
        best = pc.max(offsets).as_py()
        if best is not None:
            return int(best)
    return None


def last_quarantined_offset(layout: Layout, chain_id: str, topic: str, partition: int) -> int | None:
    """Highest offset of ``topic``/``partition`` in the chain's most recent quarantine file."""
    qdir = layout.quarantine_dir
    if not qdir.exists():
        return None
    files = sorted(qdir.glob(f"date=*/{chain_id}.jsonl"))
    for path in reversed(files[-2:]):
        try:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                if size > QUARANTINE_TAIL_BYTES:
                    fh.seek(size - QUARANTINE_TAIL_BYTES)
                data = fh.read()
        except OSError:
            continue
        lines = data.split(b"\n")
        if size > QUARANTINE_TAIL_BYTES:
            lines = lines[1:]  # the first piece may start mid-line
        best: int | None = None
        for line in lines[:-1] if lines and lines[-1] else lines:  # drop a torn last line
            if not line.strip():
                continue
            try:
                parsed = parse_origin(orjson.loads(line).get("origin"))
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if parsed and parsed[0] == topic and parsed[1] == partition:
                best = parsed[2] if best is None else max(best, parsed[2])
        if best is not None:
            return best
    return None


__all__ = ["last_stored_offset", "last_quarantined_offset"]
