"""`verify`: recompute every hash, link, Merkle root and signature, and name the first bad
position of each chain.

What it proves, per chain (seq 0 .. n-1):
- every live segment in the manifest exists and its rows form one contiguous seq range that
  links to the previous segment (deleted / truncated segment files, deleted rows);
- each row's `record` hashes to its `hash` given its `prev_hash`, and `prev_hash` equals the
  previous row's `hash` (edited records, inserted or swapped rows);
- every typed column equals the value inside `record` (an edit of any stored column);
- every checkpoint is signed by the trusted key (forgeries), no two checkpoints sign
  different roots for one size (forks), each signed root equals the recomputed Merkle root,
  and no checkpoint covers more events than are stored (a truncated tail).
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from ingest.chain import CHAIN_DOMAIN, genesis_hash
from ingest.checkpoints import read_checkpoints
from ingest.fsio import write_atomic
from ingest.layout import Layout
from ingest.merkle import CompactRange
from ingest.segments import SegmentInfo, live_segments
from ingest.signing import load_public_key, verify_checkpoint
from schemas.checkpoint import Checkpoint
from schemas.stored import TYPED_COLUMNS, format_ts

_sha256 = hashlib.sha256
PARALLEL_MIN_ROWS = 200_000
Progress = Callable[[int], None]


@dataclass
class Problem:
    kind: str
    detail: str
    seq: int | None = None
    file: str | None = None


@dataclass
class ChainReport:
    chain_id: str
    events: int = 0
    segments: int = 0
    checkpoints: int = 0
    signed_size: int = 0
    unsigned_tail: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> Problem | None:
        with_seq = [p for p in self.problems if p.seq is not None]
        if with_seq:
            return min(with_seq, key=lambda p: p.seq)  # type: ignore[arg-type,return-value]
        return self.problems[0] if self.problems else None

    def add(self, kind: str, detail: str, seq: int | None = None, file: str | None = None) -> None:
        self.problems.append(Problem(kind, detail, seq, file))


@dataclass
class VerifyReport:
    ok: bool
    chains: list[ChainReport]
    warnings: list[str]
    events: int
    seconds: float
    verified_at: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for c, cd in zip(self.chains, d["chains"], strict=True):
            fb = c.first_bad
            cd["ok"] = c.ok
            cd["first_bad_seq"] = fb.seq if fb else None
            cd["first_bad_file"] = fb.file if fb else None
        return d


_TYPED_SCHEMA = pa.schema([(name, typ) for name, typ, _ in TYPED_COLUMNS])
_JSON_OPTS = pj.ParseOptions(explicit_schema=_TYPED_SCHEMA, unexpected_field_behavior="ignore")


@dataclass
class SegmentCheck:
    """What one worker learned about one segment (picklable)."""

    path: str
    first_seq: int
    next_seq: int  # one past the last row that checked out
    last_hash: str
    leaves: bytes  # 32-byte leaf hashes of the rows that checked out, in seq order
    problem: Problem | None = None


def _column_mismatch(table: pa.Table) -> tuple[int, str] | None:
    """(row index, column names) of the first row whose typed columns differ from its record."""
    lines = pc.binary_join_element_wise(table.column("record"), pa.scalar("\n"), "")
    buf = pa.concat_arrays(lines.chunks).buffers()[2] if lines.num_chunks else None
    if buf is None:
        return None
    parsed = pj.read_json(io.BytesIO(buf.to_pybytes()), parse_options=_JSON_OPTS)
    if parsed.num_rows != table.num_rows:
        return 0, "record"
    bad_any = None
    per_col: list[tuple[str, pa.ChunkedArray]] = []
    for name, _, _ in TYPED_COLUMNS:
        a, b = table.column(name), parsed.column(name)
        same = pc.or_(pc.fill_null(pc.equal(a, b), False), pc.and_(pc.is_null(a), pc.is_null(b)))
        bad = pc.invert(same)
        per_col.append((name, bad))
        bad_any = bad if bad_any is None else pc.or_(bad_any, bad)
    if bad_any is None or not pc.any(bad_any).as_py():
        return None
    idx = pc.index(bad_any, True).as_py()
    names = [name for name, bad in per_col if bad[idx].as_py()]
    return idx, ", ".join(names)


def check_segment(lake: str, path: str, first_seq: int, first_prev_hash: str) -> SegmentCheck:
    """Check one segment's rows: contiguity, links, hashes and typed columns. Runs in a worker."""
    res = SegmentCheck(path, first_seq, first_seq, first_prev_hash, b"")
    try:
        table = pq.read_table(Path(lake) / path)
    except (OSError, pa.ArrowException) as exc:
        res.problem = Problem("unreadable_segment", f"cannot read segment: {exc}", first_seq, path)
        return res
    table = table.take(pc.sort_indices(table.column("seq")))
    seqs = table.column("seq").to_pylist()
    prevs = table.column("prev_hash").to_pylist()
    hashes = table.column("hash").to_pylist()
    records = table.column("record").cast(pa.binary()).to_pylist()
    leaves: list[bytes] = []
    expect, head = first_seq, first_prev_hash
    sha = _sha256
    domain = CHAIN_DOMAIN
    for seq, prev, h, data in zip(seqs, prevs, hashes, records, strict=True):
        if seq != expect:
            kind = "deleted_row" if seq is not None and seq > expect else "inserted_row"
            res.problem = Problem(kind, f"expected seq {expect}, found {seq}", expect, path)
            break
        if prev != head:
            res.problem = Problem("broken_link", "prev_hash does not match the previous event's hash", seq, path)
            break
        leaf = sha(b"\x00" + data).digest()
        try:
            linked = sha(domain + bytes.fromhex(prev) + leaf).hexdigest()
        except ValueError:
            linked = ""
        if linked != h:
            res.problem = Problem("hash_mismatch", "record does not hash to the stored hash (edited or swapped)", seq, path)
            break
        leaves.append(leaf)
        expect, head = seq + 1, h
    if res.problem is None:
        mismatch = _column_mismatch(table)
        if mismatch is not None:
            idx, cols = mismatch
            res.problem = Problem("column_mismatch", f"column(s) {cols} differ from the hashed record", seqs[idx], path)
            del leaves[idx:]
            expect = seqs[idx]
            head = prevs[idx]
    res.next_seq, res.last_hash, res.leaves = expect, head, b"".join(leaves)
    return res


def _map_segments(lake: str, plan: list[SegmentInfo], pool: Executor | None) -> Iterator[SegmentCheck]:
    args = [(lake, s.path, s.first_seq, s.first_prev_hash) for s in plan]
    if pool is None or len(plan) < 2:
        return (check_segment(*a) for a in args)
    return pool.map(check_segment, *zip(*args, strict=True))


def verify_chain(layout: Layout, chain_id: str, pubkey: Any, *, extra_checkpoints: list[Checkpoint] | None = None,
                 progress: Progress | None = None, pool: Executor | None = None) -> ChainReport:
    rep = ChainReport(chain_id)
    cps, bad_lines = read_checkpoints(layout.checkpoints(chain_id))
    for b in bad_lines:
        rep.add("checkpoint_unreadable", f"checkpoint line {b} cannot be parsed")
    all_cps = cps + [c for c in (extra_checkpoints or []) if c.chain_id == chain_id and c not in cps]
    valid: list[Checkpoint] = []
    for cp in all_cps:
        if cp.chain_id != chain_id:
            rep.add("checkpoint_forged", f"checkpoint for chain {cp.chain_id} in the log of {chain_id}")
        elif not verify_checkpoint(cp, pubkey):
            rep.add("checkpoint_forged", f"checkpoint for size {cp.size} has an invalid signature")
        else:
            valid.append(cp)
    by_size: dict[int, list[Checkpoint]] = {}
    for cp in valid:
        by_size.setdefault(cp.size, []).append(cp)
    for size, group in by_size.items():
        if len({c.root for c in group}) > 1:
            rep.add("fork", f"two different roots signed for size {size}", size - 1)
    rep.checkpoints = len(valid)
    rep.signed_size = max((c.size for c in valid), default=0)

    segs = live_segments(layout, chain_id)
    rep.segments = len(segs)
    expect_seq, head = 0, genesis_hash(chain_id)
    cr = CompactRange()
    healthy = True
    # Segments are independent given the manifest's first_prev_hash; links between them are
    # checked here. Workers check rows; this process builds the Merkle tree from their leaves.
    plan: list[SegmentInfo] = []
    for info in segs:
        if info.first_seq != expect_seq:
            kind = "missing_segment" if info.first_seq > expect_seq else "overlapping_segment"
            rep.add(kind, f"segment starts at seq {info.first_seq}, expected {expect_seq}", expect_seq, info.path)
            healthy = False
            break
        if not (layout.lake / info.path).exists():
            rep.add("missing_segment", "segment file listed in the manifest is missing", info.first_seq, info.path)
            healthy = False
            break
        plan.append(info)
        expect_seq = info.last_seq + 1
    expect_seq = 0
    lake = str(layout.lake)
    results = _map_segments(lake, plan, pool)
    for info, res in zip(plan, results, strict=False):
        if res.first_seq != expect_seq or info.first_prev_hash != head:
            rep.add("broken_link", "segment does not link to the previous segment", expect_seq, info.path)
            healthy = False
            break
        leaves = res.leaves
        for off in range(0, len(leaves), 32):
            cr.append(leaves[off:off + 32])
            for cp in by_size.get(cr.size, ()):
                if cp.root != cr.root().hex():
                    rep.add("checkpoint_root_mismatch", f"signed root for size {cp.size} differs from the stored events",
                            cr.size - 1, info.path)
        before = expect_seq
        expect_seq, head = res.next_seq, res.last_hash
        if progress:
            progress(expect_seq - before)
        if res.problem is not None:
            rep.problems.append(res.problem)
            healthy = False
            break
        if expect_seq != info.last_seq + 1:
            rep.add("truncated_segment", f"segment ends at seq {expect_seq - 1}, manifest says {info.last_seq}",
                    expect_seq, info.path)
            healthy = False
            break
    rep.events = expect_seq
    if healthy:
        for cp in valid:
            if cp.size > expect_seq:
                rep.add("truncated_tail", f"a signed checkpoint covers {cp.size} events but only {expect_seq} "
                        "are stored", expect_seq)
                break
        for cp in valid:
            if cp.size <= expect_seq and cp.size == expect_seq and cp.head != head:
                rep.add("checkpoint_head_mismatch", "signed head hash differs from the stored chain", cp.size - 1)
    rep.unsigned_tail = max(0, rep.events - rep.signed_size)
    return rep


def _orphans(layout: Layout, live: set[str]) -> list[str]:
    if not layout.events_dir.exists():
        return []
    return sorted(str(p.relative_to(layout.lake)) for p in layout.events_dir.rglob("*.parquet")
                  if str(p.relative_to(layout.lake)) not in live)


def verify(layout: Layout, *, trusted_key: str | None = None, checkpoints_from: str | None = None,
           progress: Progress | None = None, save: bool = True, workers: int | None = None) -> VerifyReport:
    t0 = time.perf_counter()
    warnings: list[str] = []
    pubkey = load_public_key(layout.keys, trusted_key)
    extra: dict[str, list[Checkpoint]] = {}
    if checkpoints_from:
        for p in sorted(Path(checkpoints_from).glob("*.jsonl")):
            extra[p.stem] = read_checkpoints(p)[0]
    chain_ids = sorted(set(layout.chain_ids()) | set(extra)
                       | {p.stem for p in layout.checkpoints_dir.glob("*.jsonl")})
    if workers is None:  # a process pool costs ~1 s to start: only worth it for big stores
        rows = sum(s.rows for c in chain_ids for s in live_segments(layout, c))
        workers = min(2, os.cpu_count() or 1) if rows >= PARALLEL_MIN_ROWS else 1
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    try:
        reports = [verify_chain(layout, c, pubkey, extra_checkpoints=extra.get(c), progress=progress, pool=pool)
                   for c in chain_ids]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    live = {s.path for c in chain_ids for s in live_segments(layout, c)}
    for orphan in _orphans(layout, live):
        warnings.append(f"segment file not in any manifest (ignored by queries): {orphan}")
    report = VerifyReport(
        ok=all(r.ok for r in reports), chains=reports, warnings=warnings,
        events=sum(r.events for r in reports), seconds=round(time.perf_counter() - t0, 3),
        verified_at=format_ts(datetime.now(UTC)),
    )
    if save:
        save_report(layout, report)
    return report


def report_path(layout: Layout) -> Path:
    return layout.lake / "verify" / "last.json"


def save_report(layout: Layout, report: VerifyReport) -> None:
    p = report_path(layout)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(p, orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))


def last_report(layout: Layout) -> dict[str, Any] | None:
    try:
        return orjson.loads(report_path(layout).read_bytes())
    except FileNotFoundError:
        return None
