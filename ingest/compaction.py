"""Small-file control: merge runs of small segments of a chain into one larger segment.

Content is unchanged (same rows, same seq range, same hashes), so the chain, the Merkle
roots and every checkpoint still verify. The merged segment is written and fsync'd, then a
`compact` manifest entry atomically swaps it for its inputs, then the inputs are deleted.
Compaction runs inside the chain's owning process (the Ingestor does it on its sealer
thread) or, for chains nobody owns, under the chain lock from `tooltrail compact`.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.fsio import append_durable, fsync_dir
from ingest.layout import Layout
from ingest.segments import SegmentInfo, format_ts_now, live_segments, write_parquet_durable
from tooltrail.logs import get_logger

log = get_logger("tooltrail.compaction")


def plan_runs(segs: list[SegmentInfo], min_segments: int, target_rows: int) -> list[list[SegmentInfo]]:
    """Consecutive runs of small segments whose merged size stays within target_rows."""
    small = target_rows // 4
    runs: list[list[SegmentInfo]] = []
    cur: list[SegmentInfo] = []
    rows = 0
    for s in segs:
        if s.rows < small and rows + s.rows <= target_rows:
            cur.append(s)
            rows += s.rows
            continue
        if len(cur) >= min_segments:
            runs.append(cur)
        cur, rows = ([s], s.rows) if s.rows < small else ([], 0)
    if len(cur) >= min_segments:
        runs.append(cur)
    return runs


def merge_run(layout: Layout, chain_id: str, run: list[SegmentInfo]) -> SegmentInfo:
    tables = [pq.read_table(layout.lake / s.path) for s in run]
    table = pa.concat_tables(tables)
    first, last = run[0], run[-1]
    date = format_ts_now()[:10]
    path = layout.segment(chain_id, date, first.first_seq, last.last_seq)
    path = path.with_name(path.stem + "-c.parquet")
    digest = write_parquet_durable(table, path)
    info = SegmentInfo(
        path=str(path.relative_to(layout.lake)), chain_id=chain_id, first_seq=first.first_seq,
        last_seq=last.last_seq, rows=table.num_rows, sha256=digest, first_prev_hash=first.first_prev_hash,
        last_hash=last.last_hash, frontier=last.frontier,
        min_ts=min(s.min_ts for s in run if s.min_ts), max_ts=max(s.max_ts for s in run if s.max_ts),
        created_at=format_ts_now(), replaces=[s.path for s in run],
    )
    append_durable(layout.manifest(chain_id), info.to_json("compact"))
    for s in run:
        (layout.lake / s.path).unlink(missing_ok=True)
    for d in {(layout.lake / s.path).parent for s in run}:
        fsync_dir(d)
    return info


def compact_chain(layout: Layout, chain_id: str, min_segments: int, target_rows: int) -> int:
    """Merge what is due; the caller owns the chain. Returns how many segments were merged."""
    merged = 0
    for run in plan_runs(live_segments(layout, chain_id), min_segments, target_rows):
        info = merge_run(layout, chain_id, run)
        merged += len(run)
        log.info("compacted", chain_id=chain_id, segments=len(run), rows=info.rows, path=info.path)
    return merged


def compact_all(config: Any) -> dict[str, int]:
    """Compact every chain that no running process owns; busy chains are compacted by their owner."""
    layout = config.layout
    st = config.storage
    out: dict[str, int] = {}
    for chain_id in layout.chain_ids():
        fd = os.open(layout.lock(chain_id), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("compaction_skipped_owned_chain", chain_id=chain_id)
                continue
            out[chain_id] = compact_chain(layout, chain_id, st.compact_min_segments, st.compact_target_rows)
        finally:
            os.close(fd)
    return out
