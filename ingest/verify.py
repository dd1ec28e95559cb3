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

How: every segment of every chain is one job for a pool of worker processes (largest first).
A worker checks its segment with whole-array comparisons and one DuckDB query (the typed
columns), and returns the Merkle compact ranges of its rows, split at the checkpoint sizes
inside the segment; only a segment that fails goes through the exact row-by-row check that
names the first bad row. This process links the segments and merges their ranges, O(log n)
hashes each, checking every signed root on the way: no per-event work here.
"""

from __future__ import annotations

import binascii
import ctypes
import hashlib
import io
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
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
SPLIT_MIN_ROWS = 200_000  # a smaller segment is never split (see _check_all)
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


_TYPED_NAMES = [name for name, _, _ in TYPED_COLUMNS]
_BATCH_ROWS = 65_536
_DICT_COLUMNS = ("source", "principal", "agent", "server", "tool", "decision", "result", "scope_checked", "chain_id")
_DUCK = threading.local()


@dataclass
class SegmentCheck:
    """What one worker learned about one segment (picklable, small whatever the segment size)."""

    path: str
    first_seq: int
    next_seq: int  # one past the last row that checked out
    last_hash: str
    # Merkle compact ranges of the rows that checked out, in seq order, split at the checkpoint
    # sizes inside the segment (so the main process can check those roots without the leaves).
    ranges: list[CompactRange] = field(default_factory=list)
    problem: Problem | None = None


def typed_check_sql() -> str:
    """DuckDB query over a segment table `seg`: true when any row's typed columns differ from
    the values inside its record (one JSON parse per row; NULL equals NULL, as in
    `_column_mismatch`)."""
    duck = {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int64(): "BIGINT"}
    spec = orjson.dumps({name: duck.get(typ, "TIMESTAMPTZ") for name, typ, _ in TYPED_COLUMNS}).decode()
    typed = ", ".join(f"'{name}': {name}" for name, _, _ in TYPED_COLUMNS)
    return f"SELECT bool_or({{{typed}}} IS DISTINCT FROM json_transform(record, '{spec}')) FROM seg"


def _typed_columns_differ(table: pa.Table, sql: str) -> bool:
    con = getattr(_DUCK, "con", None)
    if con is None:
        import duckdb

        # One thread: the pool already uses every core. No progress bar on the caller's terminal.
        con = _DUCK.con = duckdb.connect(config={"threads": 1})
        con.execute("SET enable_progress_bar = false")
    con.register("seg", table)
    try:
        rows = con.execute(sql).fetchall()
    finally:
        con.unregister("seg")
    return bool(rows and rows[0][0])


def _hex_rows(col: pa.ChunkedArray) -> np.ndarray | None:
    """The values of a string column as an (n, 64) byte matrix, or None unless every value
    has exactly 64 bytes (anything else cannot be a hash and is left to the exact check)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.type != pa.string() or arr.null_count:
        return None
    n = len(arr)
    _, offsets, data = arr.buffers()
    offs = np.frombuffer(offsets, np.int32, n + 1, arr.offset * 4)
    if not np.array_equal(offs - offs[0], np.arange(0, 64 * (n + 1), 64, dtype=np.int32)):
        return None
    return np.frombuffer(data, np.uint8, 64 * n, int(offs[0])).reshape(n, 64)


def _fast_check(pf: pq.ParquetFile, first_seq: int, first_prev_hash: str,
                typed_sql: str | None) -> tuple[list[bytes], str] | None:
    """(leaf hashes in seq order, last hash) when every row of the segment checks out, else
    None (then `_exact_check` finds and names the first bad row).

    The same checks as `_exact_check`, as whole-array comparisons instead of a per-row loop:
    the seqs are a permutation of first_seq.., each prev_hash equals the hash of the seq
    before, the hex of each recomputed link equals the stored hash, and (DuckDB) every typed
    column equals its value in the record (unless typed_sql is None: `typed_columns_differ`
    jobs do it). Records and typed columns are read in batches, which halves a worker's peak
    memory on a compacted 1M-row segment (to ~1 GB)."""
    chain = pf.read(columns=["seq", "prev_hash", "hash"], use_threads=False)  # no threads: the pool uses every core
    n = chain.num_rows
    if any(c.null_count for c in chain.columns):
        return None
    idx = chain.column("seq").to_numpy() - first_seq
    if n and (idx.min() < 0 or idx.max() >= n):
        return None
    order = np.full(n, -1, np.int64)
    order[idx] = np.arange(n)  # order[k] = row of seq first_seq + k
    if (order < 0).any():  # n values in [0, n) that miss a slot repeat one: not a permutation
        return None
    prevs, hashes = _hex_rows(chain.column("prev_hash")), _hex_rows(chain.column("hash"))
    if prevs is None or hashes is None:
        return None
    if not n:
        return [], first_prev_hash
    hashes, prevs = hashes[order], prevs[order]
    if prevs[0].tobytes() != first_prev_hash.encode() or not np.array_equal(prevs[1:], hashes[:-1]):
        return None
    sha, zero, domain = _sha256, b"\x00", CHAIN_DOMAIN
    leaves: list[bytes] = []  # in file order first, hashed straight from Arrow's buffers
    columns = [*_TYPED_NAMES, "record"] if typed_sql else ["record"]
    for batch in pf.iter_batches(_BATCH_ROWS, columns=columns, use_threads=False):
        record = batch.column("record")
        if record.null_count or record.type not in (pa.string(), pa.binary()):
            return None
        if typed_sql and _typed_columns_differ(pa.Table.from_batches([batch]), typed_sql):
            return None
        _, offsets, data = record.buffers()
        offs = np.frombuffer(offsets, np.int32, len(record) + 1, record.offset * 4).tolist()
        mv = memoryview(data) if data is not None else memoryview(b"")
        leaves += [sha(zero + mv[a:b]).digest() for a, b in zip(offs, offs[1:], strict=False)]
    if len(leaves) != n:
        return None
    leaves = [leaves[i] for i in order.tolist()]
    head = bytes.fromhex(first_prev_hash)
    links = []
    append = links.append
    for leaf in leaves:  # each link from the previous recomputed one: equal hex below means equal to the stored chain
        head = sha(domain + head + leaf).digest()
        append(head)
    if binascii.hexlify(b"".join(links)) != hashes.tobytes():
        return None
    return leaves, links[-1].hex()


def _exact_check(table: pa.Table, path: str, first_seq: int,
                 first_prev_hash: str) -> tuple[list[bytes], int, str, Problem | None]:
    """Row by row in seq order, stopping at the first bad row: (leaves of the good rows, next
    seq, last good hash, problem). Slow; runs only on a segment the fast check rejected."""
    table = table.take(pc.sort_indices(table.column("seq")))
    seqs = table.column("seq").to_pylist()
    prevs = table.column("prev_hash").to_pylist()
    hashes = table.column("hash").to_pylist()
    records = table.column("record").cast(pa.binary()).to_pylist()
    leaves: list[bytes] = []
    expect, head = first_seq, first_prev_hash
    problem = None
    sha = _sha256
    domain = CHAIN_DOMAIN
    for seq, prev, h, data in zip(seqs, prevs, hashes, records, strict=True):
        if seq != expect:
            kind = "deleted_row" if seq is not None and seq > expect else "inserted_row"
            problem = Problem(kind, f"expected seq {expect}, found {seq}", expect, path)
            break
        if prev != head:
            problem = Problem("broken_link", "prev_hash does not match the previous event's hash", seq, path)
            break
        leaf = sha(b"\x00" + data).digest()
        try:
            linked = sha(domain + bytes.fromhex(prev) + leaf).hexdigest()
        except ValueError:
            linked = ""
        if linked != h:
            problem = Problem("hash_mismatch", "record does not hash to the stored hash (edited or swapped)", seq, path)
            break
        leaves.append(leaf)
        expect, head = seq + 1, h
    if problem is None:
        mismatch = _column_mismatch(table)
        if mismatch is not None:
            idx, cols = mismatch
            problem = Problem("column_mismatch", f"column(s) {cols} differ from the hashed record", seqs[idx], path)
            del leaves[idx:]
            expect = seqs[idx]
            head = prevs[idx]
    return leaves, expect, head, problem


def _column_mismatch(table: pa.Table) -> tuple[int, str] | None:
    """(row index, column names) of the first row whose typed columns differ from its record."""
    import pyarrow.json as pj

    opts = pj.ParseOptions(explicit_schema=pa.schema([(name, typ) for name, typ, _ in TYPED_COLUMNS]),
                           unexpected_field_behavior="ignore")
    lines = pc.binary_join_element_wise(table.column("record"), pa.scalar("\n"), "")
    buf = pa.concat_arrays(lines.chunks).buffers()[2] if lines.num_chunks else None
    if buf is None:
        return None
    parsed = pj.read_json(io.BytesIO(buf.to_pybytes()), parse_options=opts)
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


def check_segment(lake: str, path: str, first_seq: int, first_prev_hash: str, cuts: tuple[int, ...] = (),
                  typed_sql: str | None = None, typed_elsewhere: bool = False) -> SegmentCheck:
    """Check one segment's rows: contiguity, links, hashes and typed columns (typed_sql: from
    `typed_check_sql`; None checks them the slow exact way; typed_elsewhere: the fast path
    leaves them to `typed_columns_differ` jobs), and build the Merkle compact ranges of its
    good rows, split at the checkpoint sizes `cuts`. Runs in a worker."""
    res = SegmentCheck(path, first_seq, first_seq, first_prev_hash)
    fast = None
    if typed_sql:
        try:
            # Low-cardinality columns stay dictionary-encoded (decoded once per distinct value).
            pf = pq.ParquetFile(Path(lake) / path, read_dictionary=_DICT_COLUMNS)
            fast = _fast_check(pf, first_seq, first_prev_hash, None if typed_elsewhere else typed_sql)
        except Exception:  # unreadable or odd (column types, JSON): the exact path names the problem
            fast = None
    if fast is not None:
        leaves, res.last_hash = fast
        res.next_seq = first_seq + len(leaves)
    else:
        try:
            table = pq.read_table(Path(lake) / path)
        except (OSError, pa.ArrowException) as exc:
            res.problem = Problem("unreadable_segment", f"cannot read segment: {exc}", first_seq, path)
            return res
        leaves, res.next_seq, res.last_hash, res.problem = _exact_check(table, path, first_seq, first_prev_hash)
    points = [first_seq, *(c for c in cuts if first_seq < c < res.next_seq), res.next_seq]
    res.ranges = [CompactRange.of_leaves(leaves[a - first_seq:b - first_seq], a)
                  for a, b in zip(points, points[1:], strict=False) if b > a]
    return res


def typed_columns_differ(lake: str, path: str, part: int, parts: int, typed_sql: str) -> bool:
    """Whether a typed column differs from its record in row groups part, part + parts, ... of
    a segment: the typed half of the fast check, split off a big segment so that every worker
    shares it. An unreadable file counts as differing (the exact check will name the problem)."""
    try:
        pf = pq.ParquetFile(Path(lake) / path, read_dictionary=_DICT_COLUMNS)
        groups = list(range(part, pf.num_row_groups, parts))
        batches = pf.iter_batches(_BATCH_ROWS, row_groups=groups, columns=[*_TYPED_NAMES, "record"], use_threads=False)
        return any(_typed_columns_differ(pa.Table.from_batches([b]), typed_sql) for b in batches)
    except Exception:
        return True


@dataclass
class _ChainPlan:
    """One chain's checkpoints and the segments to check, before any row is read."""

    rep: ChainReport
    valid: list[Checkpoint]
    by_size: dict[int, list[Checkpoint]]
    segments: list[SegmentInfo]
    healthy: bool


def _plan_chain(layout: Layout, chain_id: str, pubkey: Any, extra_checkpoints: list[Checkpoint] | None) -> _ChainPlan:
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
    expect_seq = 0
    healthy = True
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
    return _ChainPlan(rep, valid, by_size, plan, healthy)


def _finish_chain(plan: _ChainPlan, results: list[SegmentCheck]) -> ChainReport:
    """Link the segments' results in seq order and merge their Merkle ranges (O(log n) hashes
    per range), checking every signed root whose size is reached."""
    rep, by_size, healthy = plan.rep, plan.by_size, plan.healthy
    expect_seq, head = 0, genesis_hash(rep.chain_id)
    cr = CompactRange()
    # Segments are independent given the manifest's first_prev_hash; links between them are checked here.
    for info, res in zip(plan.segments, results, strict=True):
        if res.first_seq != expect_seq or info.first_prev_hash != head:
            rep.add("broken_link", "segment does not link to the previous segment", expect_seq, info.path)
            healthy = False
            break
        for part in res.ranges:
            cr.merge(part)
            for cp in by_size.get(cr.size, ()):
                if cp.root != cr.root().hex():
                    rep.add("checkpoint_root_mismatch", f"signed root for size {cp.size} differs from the stored events",
                            cr.size - 1, info.path)
        expect_seq, head = res.next_seq, res.last_hash
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
        for cp in plan.valid:
            if cp.size > expect_seq:
                rep.add("truncated_tail", f"a signed checkpoint covers {cp.size} events but only {expect_seq} "
                        "are stored", expect_seq)
                break
        for cp in plan.valid:
            if cp.size <= expect_seq and cp.size == expect_seq and cp.head != head:
                rep.add("checkpoint_head_mismatch", "signed head hash differs from the stored chain", cp.size - 1)
    rep.unsigned_tail = max(0, rep.events - rep.signed_size)
    return rep


def _check_all(lake: str, plans: list[_ChainPlan], pool: Executor | None, workers: int,
               progress: Progress | None) -> list[list[SegmentCheck]]:
    """Check every planned segment of every chain; results per chain in seq order.

    All chains' segments go to the pool at once, largest first, so every core stays busy to
    the end (a chain boundary is no barrier). A segment too big to balance that way (more than
    1/(2 x workers) of all rows, e.g. one chain compacted into a few segments) has its typed
    column check, ~40% of its cost, split off into one job per worker over its row groups.
    Progress is reported as segments complete."""
    sql = typed_check_sql()
    total = sum(info.rows for plan in plans for info in plan.segments)
    jobs: list[tuple[int, int, int, Any, tuple[Any, ...]]] = []  # (weight, chain, segment, function, args)
    split: set[tuple[int, int]] = set()
    for ci, plan in enumerate(plans):
        sizes = sorted(plan.by_size)
        for si, info in enumerate(plan.segments):
            cuts = tuple(s for s in sizes if info.first_seq < s <= info.last_seq)
            args = (lake, info.path, info.first_seq, info.first_prev_hash, cuts, sql)
            if pool is not None and info.rows >= SPLIT_MIN_ROWS and info.rows * 2 * workers > total:
                split.add((ci, si))
                jobs.append((info.rows * 3 // 5, ci, si, check_segment, (*args, True)))
                jobs += [(info.rows * 2 // 5 // workers, ci, si, typed_columns_differ, (lake, info.path, k, workers, sql))
                         for k in range(workers)]
            else:
                jobs.append((info.rows, ci, si, check_segment, args))
    out: list[list[SegmentCheck | None]] = [[None] * len(p.segments) for p in plans]
    differs: set[tuple[int, int]] = set()

    def done(ci: int, si: int, res: SegmentCheck | bool) -> None:
        if isinstance(res, bool):
            if res:
                differs.add((ci, si))
            return
        out[ci][si] = res
        if progress:
            progress(res.next_seq - res.first_seq)

    if pool is None or len(jobs) < 2:
        for _, ci, si, fn, args in jobs:
            done(ci, si, fn(*args))
    else:
        jobs.sort(key=lambda j: j[0], reverse=True)
        futures = {pool.submit(fn, *args): (ci, si) for _, ci, si, fn, args in jobs}
        for fut in as_completed(futures):
            done(*futures[fut], fut.result())
    for ci, si in differs & split:  # rare: check the whole segment again here, to name the bad row
        res = out[ci][si]
        if res is not None and res.problem is None:
            info = plans[ci].segments[si]
            cuts = tuple(s for s in sorted(plans[ci].by_size) if info.first_seq < s <= info.last_seq)
            out[ci][si] = check_segment(lake, info.path, info.first_seq, info.first_prev_hash, cuts, sql)
    return out  # type: ignore[return-value]


def verify_chain(layout: Layout, chain_id: str, pubkey: Any, *, extra_checkpoints: list[Checkpoint] | None = None,
                 progress: Progress | None = None, pool: Executor | None = None) -> ChainReport:
    plan = _plan_chain(layout, chain_id, pubkey, extra_checkpoints)
    return _finish_chain(plan, _check_all(str(layout.lake), [plan], pool, 1, progress)[0])


def _orphans(layout: Layout, live: set[str]) -> list[str]:
    if not layout.events_dir.exists():
        return []
    return sorted(str(p.relative_to(layout.lake)) for p in layout.events_dir.rglob("*.parquet")
                  if str(p.relative_to(layout.lake)) not in live)


def _pool_context() -> multiprocessing.context.BaseContext:
    """A forkserver: workers fork from one clean process that imported this module once (no
    fork of a caller that may run threads, e.g. the dashboard), start in milliseconds and exit
    without interpreter teardown; spawn paid both per worker (~0.5 s of CPU each)."""
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:  # no forkserver on this platform
        return multiprocessing.get_context("spawn")
    ctx.set_forkserver_preload(["ingest.verify", "duckdb"])
    return ctx


def _worker_init() -> None:
    """Keep freed memory in a worker's heap. Each segment allocates and frees buffers of tens
    of MB; glibc would mmap them and give them back, so every segment faulted them in again,
    page by page (~0.3 of ~4.5 us of CPU per row on 1M-row segments). Workers are short-lived."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: serve big blocks from the heap
        libc.mallopt(-1, 1 << 31)  # M_TRIM_THRESHOLD: do not shrink the heap
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


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
    if workers is None:  # a pool costs ~0.5 s of CPU to start (a forkserver importing Arrow): only for big stores
        rows = sum(s.rows for c in chain_ids for s in live_segments(layout, c))
        workers = min(2, os.cpu_count() or 1) if rows >= PARALLEL_MIN_ROWS else 1
    pool = ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_worker_init) if workers > 1 else None
    try:
        plans = [_plan_chain(layout, c, pubkey, extra.get(c)) for c in chain_ids]
        results = _check_all(str(layout.lake), plans, pool, workers, progress)
        reports = [_finish_chain(plan, res) for plan, res in zip(plans, results, strict=True)]
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
